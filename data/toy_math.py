"""
data/toy_math.py: the toy math task: column addition written most significant column first, and the
imperfect solver whose two-turn traces pre-train the base model.

A problem is "6101+8899=". An attempt writes one column per step, the most significant first, as
"digit+digit+carry=sum"; the answer is what the columns spell (the first column's two-digit sum, then the
units digit of every other column):

    6+8+1=15,1+8+1=10,0+9+1=10,1+9+0=10      spells 15000

Fixed width (4-digit operands, two-digit sums): a ~1M-parameter model learns the layout in minutes. Why:
  1. Real greedy mistakes. Writing the most significant column first, the solver must know a column's
     incoming carry before it has written the columns below. Its misconception (p_bug=1) looks only one
     column ahead: a carry that ripples through a column summing to 9 is missed:
         6+8+0=14,1+8+0=09,0+9+1=10,1+9+0=10      spells 14900 (wrong)
     The base model learns it, so its greedy first attempts fail on ripple carries (about 47% of problems).
  2. Checking is easier than solving. In the second attempt y1 is on the page: the carry into a column is
     the tens digit of the sum y1 wrote for the column below it ("0+9+1=10" -> the hundreds needed a carry).
     That is one lookup, while getting it right in a first attempt needs looking two or more columns ahead
     in the prompt. Applying the lookup to the misconception's y1 solves 88% of test problems
     (vs 53%; python data/toy_math.py).
  3. No self-correction in the corpus. The second attempt copies the first (p_copy=0.5) or re-solves with
     the same error process; it never gets an oracle fix, so the greedy second attempt repeats the first.
     Random slips (p_slip=0.3: one column's carry flipped, blind to ripples) are the only way a sampled
     attempt fixes a ripple, in either turn, so RL has signal in both turns and neither is handed the answer.
  4. Held out by identity: a problem's split is a hash of its unordered operands, so no test problem (nor
     its commuted twin) is in the base corpus or the RL prompts.

Regimes (--task toy_math_<name>, REGIME=<name> bash reproduce.sh), candidates for a toy on which fine-tuning
on self-generated corrections fails and RL does not (on the default toy both learn the lookup). The route
regimes write attempts as the answer's digits alone ("14900": nothing to check, so a changed answer can break
a right one), and a re-solved y2 goes least significant column first with chance p_lsb (never a first
attempt): a route that needs no look-ahead, rare in the corpus, which RL's reward could find and imitation's
frequencies would not. Measured (docs/reproduce.md): none of them separates fine-tuning from RL (route20 ran the
full protocol: Stage II's first attempt learnt the answer, Δ 0); the README reports the default toy.

Try it:  python data/toy_math.py
"""
import hashlib
import random
import re
from types import SimpleNamespace

INSTRUCTION = "\nrecheck:\n"  # the fixed correction instruction between the turns (toy stand-in for the paper's)
ALPHABET = "0123456789+=," + INSTRUCTION  # every character problems, attempts and the instruction use


def split_of(terms):
    """'train' / 'val' / 'test' by a hash of the unordered operands: 90 / 5 / 5 %."""
    h = int(hashlib.sha256("+".join(map(str, sorted(terms))).encode()).hexdigest(), 16) % 100
    return "test" if h < 5 else "val" if h < 10 else "train"


WIDTH = 4  # operand width in digits: two 4-digit operands, one column per digit
P_NINE = 0.5  # chance that a column's digits sum to exactly 9 (where ripple carries pass); else they carry
# Regimes (--task toy_math_<name>), candidates for a toy on which fine-tuning fails (docs/reproduce.md): are attempts
# column traces or bare digits; how often the corpus's y2 copies y1; how often a re-solved y2 goes least
# significant column first (never a first attempt), without slips unless lsb_slips
REGIMES = {"default": dict(trace=True, p_copy=0.5, p_lsb=0.0), "copy": dict(trace=True, p_copy=0.9, p_lsb=0.0),
           "blind": dict(trace=False, p_copy=0.5, p_lsb=0.0), "route": dict(trace=False, p_copy=0.5, p_lsb=0.1),
           "route_slips": dict(trace=False, p_copy=0.5, p_lsb=0.1, lsb_slips=True),
           "route20": dict(trace=False, p_copy=0.5, p_lsb=0.2), "route30": dict(trace=False, p_copy=0.5, p_lsb=0.3)}


def make_problem(terms):
    return {"prompt": "+".join(f"{t:0{WIDTH}d}" for t in terms) + "=", "answer": str(sum(terms)), "terms": tuple(terms)}


def sample_terms(rng):
    """Two 4-digit operands whose columns each sum to exactly 9 (chance P_NINE) or to 10 or more."""
    while True:
        a = [rng.randint(1 if i == 0 else 0, 9) for i in range(WIDTH)]  # most significant digit first
        b = [9 - d if rng.random() < P_NINE else rng.randint(10 - d, 9) if d > 0 else rng.randint(0, 9) for d in a]
        if b[0] > 0:
            return int("".join(map(str, a))), int("".join(map(str, b)))


def problems(split, n, seed=0):
    """n distinct problems of one split, the same for the same arguments."""
    rng = random.Random(f"{split}-{seed}")
    seen, out = set(), []
    while len(out) < n:
        t = sample_terms(rng)
        if split_of(t) == split and tuple(sorted(t)) not in seen:  # a+b and b+a are one problem
            seen.add(tuple(sorted(t)))
            out.append(make_problem(t))
    return out


def true_carries(terms):
    """carry[i] into column i (most significant first; the last column gets 0)."""
    cols = [[t // 10 ** (WIDTH - 1 - i) % 10 for t in terms] for i in range(WIDTH)]  # (WIDTH, 2) MSB first
    carry, c = [0] * WIDTH, 0
    for i in reversed(range(WIDTH)):
        carry[i] = c
        c = (sum(cols[i]) + c) // 10
    return cols, carry


def solve(terms, rng=None, p_bug=0.0, p_slip=0.0):
    """Write an attempt, most significant column first. With rng=None (or both probabilities 0) it is correct.

    p_bug: chance that a column whose carry comes through a ripple (the next column sums to 9 and receives a
    carry itself) is written without it; the solver only looks one column ahead (the misconception).
    p_slip: chance that the attempt flips the carry of one random column (a slip, blind to ripples).
    """
    rng = rng or random.Random(0)
    cols, carry = true_carries(terms)
    slip = rng.randrange(WIDTH - 1) if rng.random() < p_slip else -1  # the last column has no carry to flip
    steps = []
    for i, col in enumerate(cols):
        c = carry[i]
        if i < WIDTH - 1 and sum(cols[i + 1]) < 10 and c == 1 and rng.random() < p_bug:
            c = 0  # one column ahead sums to 9 or less: the misconception assumes no carry
        if i == slip:
            c = 1 - c
        steps.append("+".join(map(str, col)) + f"+{c}={sum(col) + c:02d}")
    return ",".join(steps)


def solve_lsb(terms, rng, p_slip=0.0):
    """An attempt least significant column first (the regimes' second route): each carry is read off the sum just
    written, so only a slip (p_slip: one column's carry flipped) makes it wrong."""
    cols, c, steps = true_carries(terms)[0], 0, []
    slip = rng.randrange(1, WIDTH) if rng.random() < p_slip else -1  # the units column has no carry to flip
    for j, col in enumerate(reversed(cols)):
        c = 1 - c if j == slip else c
        steps.append("+".join(map(str, col)) + f"+{c}={sum(col) + c:02d}")
        c = (sum(col) + c) // 10
    return ",".join(steps)


def answer(text, regime="default"):
    """The integer an attempt spells, or None: the first column's two-digit sum, then the units of the rest.
    A regime without traces also takes the bare digits, and a trace least significant column first."""
    col = r"\d\+\d\+\d=\d\d"
    if not re.fullmatch(r"(%s,){%d}%s" % (col, WIDTH - 1, col), text):
        ok = not REGIMES[regime]["trace"] and re.fullmatch(r"[1-9]\d{0,%d}" % WIDTH, text)
        return int(text) if ok else None
    sums = re.findall(r"=(\d\d)", text)
    if not REGIMES[regime]["trace"]:  # least significant column first
        sums = sums[::-1]
    return int(sums[0] + "".join(s[1] for s in sums[1:]))


def corpus_example(rng, regime="default"):
    """(prompt, y1, y2) of a random train problem: one sequence of the base model's corpus."""
    terms = sample_terms(rng)
    while split_of(terms) != "train":  # never a validation or test problem
        terms = sample_terms(rng)
    return (make_problem(terms)["prompt"], *corpus_pair(terms, rng, regime=regime))


def corpus_pair(terms, rng, p_bug=1.0, p_slip=0.3, regime="default"):
    """(y1, y2) of the imperfect solver: y2 copies y1 or re-solves with the same error process (a regime's
    p_lsb: or least significant column first, a route that does not need the look-ahead)."""
    R = REGIMES[regime]
    write = (lambda t: t) if R["trace"] else (lambda t: str(answer(t)))  # no trace: the answer's digits alone
    y1 = write(solve(terms, rng, p_bug, p_slip))
    if rng.random() < R["p_copy"]:
        return y1, y1
    if R["p_lsb"] and rng.random() < R["p_lsb"]:
        return y1, solve_lsb(terms, rng, p_slip if R.get("lsb_slips") else 0.0)
    return y1, write(solve(terms, rng, p_bug, p_slip))


def regime(name):
    """The task's problems and corpus under a regime, for score.py's --task toy_math_<name>."""
    return SimpleNamespace(problems=lambda split, n, seed=0: [dict(q, regime=name) for q in problems(split, n, seed)],
                           corpus_example=lambda rng: corpus_example(rng, name))


if __name__ == "__main__":
    rng = random.Random(0)
    for p in problems("train", 5):
        y1, y2 = corpus_pair(p["terms"], rng)
        print(p["prompt"], "|", y1, "|", y2, "| gold", p["answer"], answer(y1), answer(y2))
    test = problems("test", 1000)
    ok = sum(answer(solve(p["terms"], rng, p_bug=1.0)) == int(p["answer"]) for p in test)
    print(f"misconception solver (the greedy mode) on test: {ok / len(test):.3f}")
    fixed = 0  # the second look: each column's carry read off the sum y1 wrote for the column below it
    for p in test:
        sums = [int(step[-2:]) for step in solve(p["terms"], rng, p_bug=1.0).split(",")]
        cols, _ = true_carries(p["terms"])
        carry = [int(s >= 10) for s in sums[1:]] + [0]
        fixed += answer(",".join("+".join(map(str, c)) + f"+{carry[i]}={sum(c) + carry[i]:02d}"
                                 for i, c in enumerate(cols))) == int(p["answer"])
    print(f"that one lookup applied to the misconception's y1: {fixed / len(test):.3f}")
    assert all(answer(solve(p["terms"])) == int(p["answer"]) for p in test)
