"""data/toy_code.py: the toy code task: write a one-line Python function from a few input/output examples.

    prompt    "f(2)=7;f(5)=16;f(0)=1;f(-3)=-8;\\n"       (n_shown examples of an integer function)
    solution  "def f(x):return x*3+1"                  (the canonical program; any correct program scores)
    tests     [(-7, -20), (1, 4), ...]                 (n_tests hidden inputs, none of them shown)

Graded by rewards.toy_code_reward: the program must be one plain `def f(x)`; the sandbox sends back f's
values on the hidden inputs as JSON and the caller compares them with the expected integers. Small enough
for a ~1-5M parameter character-level GPT to solve partly: the linear family is pattern completion of two
numbers; harder families need more.

Difficulty `level` (families of f, x in DOMAIN = -9..9):
  0: x*a+b                  a in +-1..9, b in -19..19
  1: + x*x*a+b (a in +-1..3), abs(x*a+b) (a in 1..9)
  2: + x%m+b (m in 2..9), max(x,c), min(x,c) (c in -9..9)
A problem's identity is its function (its values on all of DOMAIN: max(x,-9) and x*1+0 are one problem).
make_splits deals the shuffled distinct functions out to test, val, then train: no test or val function
appears in train; train items repeat functions with fresh shown/hidden inputs.
Limitations: 1. splits are per (seed, level); a level-0 test function may be a train function at level 2.
2. a few shown examples may not pin the function down (e.g. x%m with 4 points); the hidden tests decide.

The imperfect solver (the base model's corpus, score.py --task toy_code, whose prompts show f(0) and f(1)
first): its misconception is that every function is linear. It fits x*a+b through those two examples, which is
right on the linear family and wrong on the quadratic and abs families of level 1 (TOY_LEVEL), except that
with p_know=0.2 it writes the canonical program, so a sampled attempt sometimes gets a non-linear function
right (RL's signal). The second attempt copies the first (p_copy=0.5) or re-solves the same way; it never
gets an oracle fix. Splits for score.py: make_splits(seed=0, n_val=100, n_test=300, level=1).

Try it:  python data/toy_code.py
"""
import functools
import random
import re

DOMAIN = range(-9, 10)
ALPHABET = "\n #%()*+,-0123456789:;=abdefimnrstux"  # every character of prompts and programs (sorted)


def _functions(level):
    """Canonical expressions of the distinct functions of a level, in a fixed order."""
    exprs = [f"x*{a}{b:+d}" for a in range(-9, 10) if a for b in range(-19, 20)]
    if level >= 1:
        exprs += [f"x*x*{a}{b:+d}" for a in range(-3, 4) if a for b in range(-19, 20)]
        exprs += [f"abs(x*{a}{b:+d})" for a in range(1, 10) for b in range(-19, 20)]
    if level >= 2:
        exprs += [f"x%{m}{b:+d}" for m in range(2, 10) for b in range(-19, 20)]
        exprs += [f"{g}(x,{c})" for g in ("max", "min") for c in range(-9, 10)]
    return _distinct(exprs)


def _distinct(exprs):
    seen, out = set(), []
    for e in exprs:
        fn = eval("lambda x:" + e)  # our own expressions, not model output
        key = tuple(fn(x) for x in DOMAIN)
        if key not in seen:  # the first parameterisation of a function is its canonical one
            seen.add(key)
            out.append((e, dict(zip(DOMAIN, key))))
    return out


def make_problem(expr, values, rng, n_shown=4, n_tests=6, anchored=False):
    """anchored: show f(0) and f(1) first (score.py's toy code task), so a linear guess is two lookups."""
    xs = rng.sample(list(DOMAIN), n_shown + n_tests)
    if anchored:
        A = MIX["anchors"]
        n_shown = MIX["n_shown"]
        xs = A + rng.sample([x for x in DOMAIN if x not in A], n_shown + n_tests - len(A))
    return {"prompt": "".join(f"f({x})={values[x]};" for x in xs[:n_shown]) + "\n",
            "solution": "def f(x):return " + expr, "tests": [(x, values[x]) for x in xs[n_shown:]], "id": expr}


def make_splits(seed=0, n_train=5000, n_val=100, n_test=100, level=0, n_shown=4, n_tests=6):
    """{"train", "val", "test"}: lists of {prompt, solution, tests, id (the canonical expression)}."""
    fns = _functions(level)
    if n_val + n_test >= len(fns):
        raise ValueError(f"level {level} has {len(fns)} functions: too few for n_val + n_test = {n_val + n_test}")
    random.Random(f"toy-code-{seed}-{level}").shuffle(fns)
    test, val, train = fns[:n_test], fns[n_test:n_test + n_val], fns[n_test + n_val:]
    rng = random.Random(f"toy-code-items-{seed}-{level}")
    return {"test": [make_problem(e, v, rng, n_shown, n_tests) for e, v in test],
            "val": [make_problem(e, v, rng, n_shown, n_tests) for e, v in val],
            "train": [make_problem(*rng.choice(train), rng, n_shown, n_tests) for _ in range(n_train)]}


INSTRUCTION = "\nrecheck:\n"  # the same fixed correction instruction as the toy math task
TOY_LEVEL = 1  # score.py's toy code task: linear, quadratic and abs functions
MIX = dict(anchors=[0, 1], n_shown=4, level=1, abs=True, a_max=9, b_max=19, trace=True, p_know=0.2, p_copy=0.5)  # screening knobs


def _task_functions():
    if MIX["level"] != "lq":
        return [(e, v) for e, v in _functions(MIX["level"]) if MIX["abs"] or not e.startswith("abs")]
    A, B = MIX["a_max"], MIX["b_max"]
    return _distinct([f"x*{q}{a}{b:+d}" for q in ("", "x*") for a in range(-A, A + 1) if a for b in range(-B, B + 1)])


@functools.lru_cache(maxsize=1)
def _held_out():
    """score.py's test (300) and val (100) functions, by make_splits' rule (seed 0)."""
    fns = _task_functions()
    random.Random("toy-code-0-1").shuffle(fns)
    return {"test": [e for e, _ in fns[:300]], "val": [e for e, _ in fns[300:400]]}


@functools.lru_cache(maxsize=1)
def _score_splits():
    """score.py's problems, each shown with f(0) and f(1) first; train draws from the other functions."""
    rng = random.Random("toy-code-anchored-0")
    values = dict(_task_functions())
    out = {k: [make_problem(e, values[e], rng, anchored=True) for e in v] for k, v in _held_out().items()}
    out["train"] = [make_problem(*rng.choice(_train_functions()), rng, anchored=True) for _ in range(20000)]
    return out


def problems(split, n, seed=0):
    """score.py's interface: up to n problems of one split (test and val are fixed: split seed 0)."""
    items = _score_splits()[split]
    rng = random.Random(f"toy-code-order-{split}-{seed}")
    items = rng.sample(items, min(n, len(items))) if split == "train" else items[:n]
    return [{**q, "grader": "toy_code"} for q in items]


def shown(problem):
    return [tuple(map(int, e[2:].split(")="))) for e in problem["prompt"].strip().strip(";").split(";")]


def write(expr, problem):
    """An attempt: the program, then (MIX trace) what it gives on the shown inputs after the first two."""
    fn = eval("lambda x:" + expr)  # our own expressions, not model output
    trace = " #" + " ".join(f"f({x})={fn(x)}" for x, _ in shown(problem)[2:]) if MIX["trace"] else ""
    return "def f(x):return " + expr + trace


def solve(problem, rng, p_know=None):
    """An attempt: the canonical program with chance p_know, else the linear fit through two shown points."""
    if rng.random() < (MIX["p_know"] if p_know is None else p_know):
        return write(problem["id"], problem)
    (x1, y1), (x2, y2) = shown(problem)[:2]
    a = round((y2 - y1) / (x2 - x1))
    return write(f"x*{a}{y1 - a * x1:+d}", problem)


def corpus_example(rng, p_copy=None):
    """(prompt, y1, y2) of a random train problem: y2 copies y1 or re-solves with the same misconception."""
    q = make_problem(*_train_functions()[rng.randrange(len(_train_functions()))], rng, anchored=True)
    y1 = solve(q, rng)
    return q["prompt"], y1, y1 if rng.random() < (MIX["p_copy"] if p_copy is None else p_copy) else solve(q, rng)


def check_and_fix(problem, y1):
    """The second look: if y1's trace disagrees with a shown value, the same fit one degree up (x*x*a+b)."""
    vals = dict(shown(problem))
    wrong = any(vals.get(int(x)) != int(y) for x, y in re.findall(r"f\((-?\d+)\)=(-?\d+)", y1.split("#")[-1]))
    return y1.replace("return x*", "return x*x*", 1) if wrong else y1


@functools.lru_cache(maxsize=1)
def _train_functions():
    """The train functions of score.py's split, (expr, values), to draw fresh corpus examples from."""
    test_val = set(_held_out()["test"] + _held_out()["val"])
    return [(e, v) for e, v in _task_functions() if e not in test_val]


if __name__ == "__main__":
    for level in range(3):
        s = make_splits(level=level)
        print(f"level {level}: {len(_functions(level))} functions; e.g. {s['test'][0]['prompt'].strip()} "
              f"-> {s['test'][0]['solution']}  hidden {s['test'][0]['tests']}")
    import os, sys  # noqa: E401
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from rewards import toy_code_rewards
    test = problems("test", 300)
    y1 = [solve(q, random.Random(1), p_know=0.0) for q in test]
    ok = toy_code_rewards(test, y1)
    print(f"score.py's toy code task: the linear misconception solves {sum(ok) / len(ok):.3f} of test functions")
    ok = toy_code_rewards(test, [check_and_fix(q, y) for q, y in zip(test, y1)])
    print(f"the check-and-fix rule on its first attempts: {sum(ok) / len(ok):.3f}")
