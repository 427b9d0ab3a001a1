"""
data/toy_math.py: the toy math task: column addition with a written scratchpad, and the imperfect solver
whose two-turn traces pre-train the base model.

A problem is "0347+0589=" (difficulty knobs: operand digits and number of terms). An attempt writes one
column per step, least significant first, with the carry it uses, then the answer:

    7+9+0=16,4+8+1=13,3+5+1=09,0+0+0=00,ans:00936

Everything is fixed width (operands zero-padded to `width` digits, two-digit column sums, a width+1 digit
answer), so every digit sits at a fixed position: a ~1M-parameter model learns the lookups in a minute,
where variable-width text took it far longer.

Why this task (see data/README.md and ../shared/notes/toy-design.md for the longer story):
  1. Real greedy mistakes. The imperfect solver has a *misconception*, not only noise: when a column received
     a carry and makes a carry itself (two carries chain), it drops the outgoing carry with probability
     p_bug=0.75. A model trained on its traces makes that error in its *mode*, so greedy first attempts fail
     on problems with a chained carry (about 45% of 3-4 digit problems), while sampled attempts still find
     the right carry a quarter of the time: RL has signal.
  2. A second look can help: the dropped carry is visible in the scratchpad ("=13," then a column with
     "+0"), so a second attempt can find the first wrong column.
  3. No self-correction in the corpus: the second attempt re-solves with the same error process (p_copy=0;
     never an oracle fix), so the greedy second attempt is the same mode as the first (delta ~ 0). With
     copies in the corpus (p_copy 0.3-0.6, tried in development) the model learned to copy y1 token by
     token, and sampled second attempts almost never fixed a wrong y1 (1.7% of problems), starving RL.
     Random slips (p_slip=0.02, one column sum off by one) add "correct -> incorrect" revisions.
  4. Held out by identity: a problem's split is a hash of its unordered operands, so no test problem (nor its
     commuted twin) is in the base corpus or the RL prompts.

Try it:  python data/toy_math.py
"""
import hashlib
import random
import re

INSTRUCTION = "\nrecheck:\n"  # the fixed correction instruction between the turns (toy stand-in for the paper's)
ALPHABET = "0123456789+=," + INSTRUCTION  # every character problems, attempts and the instruction use


def split_of(terms):
    """'train' / 'val' / 'test' by a hash of the unordered operands: 90 / 5 / 5 %."""
    h = int(hashlib.sha256("+".join(map(str, sorted(terms))).encode()).hexdigest(), 16) % 100
    return "test" if h < 5 else "val" if h < 10 else "train"


WIDTH = 4  # operand width in digits: two 4-digit operands, one column per digit
P_NINE = 0.5  # chance that a column's digits sum to exactly 9 (where ripple carries pass); else they carry


def make_problem(terms):
    return {"prompt": "+".join(f"{t:0{WIDTH}d}" for t in terms) + "=", "answer": str(sum(terms)), "terms": tuple(terms)}


def sample_terms(rng):
    """Two 4-digit operands whose columns each sum to exactly 9 (chance P_NINE) or to 10 or more, so carries
    ripple through nines often: the misconception's greedy mode is right on about 55% of problems."""
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


def answer(text):
    """The integer an attempt spells, or None: the first column's two-digit sum, then the units of the rest."""
    sums = re.findall(r"=(\d\d)(?:,|$)", text)
    if len(sums) != WIDTH or not re.fullmatch(r"(\d\+\d\+\d=\d\d,){%d}\d\+\d\+\d=\d\d" % (WIDTH - 1), text):
        return None
    return int(sums[0] + "".join(s[1] for s in sums[1:]))


def corpus_pair(terms, rng, p_bug=1.0, p_slip=0.3, p_copy=0.5):
    """(y1, y2) of the imperfect solver: y2 copies y1 or re-solves with the same error process."""
    y1 = solve(terms, rng, p_bug, p_slip)
    y2 = y1 if rng.random() < p_copy else solve(terms, rng, p_bug, p_slip)
    return y1, y2


if __name__ == "__main__":
    rng = random.Random(0)
    for p in problems("train", 5):
        y1, y2 = corpus_pair(p["terms"], rng)
        print(p["prompt"], "|", y1, "|", y2, "| gold", p["answer"], answer(y1), answer(y2))
    test = problems("test", 1000)
    ok = sum(answer(solve(p["terms"], rng, p_bug=1.0)) == int(p["answer"]) for p in test)
    print(f"misconception solver (the greedy mode) on test: {ok / len(test):.3f}")
    assert all(answer(solve(p["terms"])) == int(p["answer"]) for p in test)
