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

INSTRUCTION = "\nrecheck:\n"  # the fixed correction instruction between the turns (toy stand-in for the paper's)
ALPHABET = "0123456789+=,ans:" + INSTRUCTION  # every character problems, attempts and the instruction use


def split_of(terms):
    """'train' / 'val' / 'test' by a hash of the unordered operands: 90 / 5 / 5 %."""
    h = int(hashlib.sha256("+".join(map(str, sorted(terms))).encode()).hexdigest(), 16) % 100
    return "test" if h < 5 else "val" if h < 10 else "train"


WIDTH = 4  # operand width in digits; problems use 3-4 digit operands by default


def make_problem(terms):
    return {"prompt": "+".join(f"{t:0{WIDTH}d}" for t in terms) + "=", "answer": str(sum(terms)), "terms": tuple(terms)}


def sample_terms(rng, digits=(3, 4), n_terms=2):
    return tuple(rng.randint(10 ** (d - 1), 10 ** d - 1) for d in (rng.randint(*digits) for _ in range(n_terms)))


def problems(split, n, seed=0, digits=(3, 4), n_terms=2):
    """n distinct problems of one split, the same for the same arguments."""
    rng = random.Random(f"{split}-{seed}-{digits}-{n_terms}")
    seen, out = set(), []
    while len(out) < n:
        t = sample_terms(rng, digits, n_terms)
        if split_of(t) == split and tuple(sorted(t)) not in seen:  # a+b and b+a are one problem
            seen.add(tuple(sorted(t)))
            out.append(make_problem(t))
    return out


def solve(terms, rng=None, p_bug=0.0, p_slip=0.0):
    """Write an attempt. With rng=None (or both probabilities 0) it is the correct solution.

    p_bug: chance that a column which received a carry and makes one drops its outgoing carry (the
    misconception). p_slip: chance that the attempt has one column sum off by one (a random slip).
    """
    rng = rng or random.Random(0)
    cols = [[t // 10 ** i % 10 for t in terms] for i in range(WIDTH)]  # least significant column first
    slip_col = rng.randrange(len(cols)) if rng.random() < p_slip else -1
    carry, steps, digits = 0, [], []
    for i, col in enumerate(cols):
        s = sum(col) + carry
        if i == slip_col:
            s = s + 1 if s == 0 or rng.random() < 0.5 else s - 1
        steps.append("+".join(map(str, col)) + f"+{carry}={s:02d}")
        digits.append(str(s % 10))
        chained = carry > 0 and s >= 10
        carry = 0 if chained and rng.random() < p_bug else s // 10
    digits.append(str(carry))
    return ",".join(steps) + ",ans:" + "".join(reversed(digits))


def corpus_pair(terms, rng, p_bug=0.75, p_slip=0.02, p_copy=0.0):
    """(y1, y2) of the imperfect solver: y2 copies y1 or re-solves with the same error process."""
    y1 = solve(terms, rng, p_bug, p_slip)
    y2 = y1 if rng.random() < p_copy else solve(terms, rng, p_bug, p_slip)
    return y1, y2


if __name__ == "__main__":
    rng = random.Random(0)
    for p in problems("train", 5):
        y1, y2 = corpus_pair(p["terms"], rng)
        print(p["prompt"], "|", y1, "|", y2, "| gold", p["answer"])
    test = problems("test", 1000)
    ok = sum(int(solve(p["terms"], rng, p_bug=1.0).split(":")[-1]) == int(p["answer"]) for p in test)
    print(f"always-buggy solver (the greedy mode) on test: {ok / len(test):.3f}")
