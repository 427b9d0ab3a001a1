"""data/toy_code.py: the toy code task: write a one-line Python function from a few input/output examples.

    prompt    "f(0)=8;f(1)=5;f(-1)=11;\\n"                 (score.py's task: f(0), f(1), f(-1) shown)
    solution  "def f(x):return x*-3+8"                    (the canonical program; any correct program scores)
    tests     [(-7, 29), (4, -4), ...]                    (n_tests hidden inputs, none of them shown)

Graded by rewards.toy_code_reward: the program must be one plain `def f(x)`; the sandbox sends back f's
values on the hidden inputs as JSON and the caller compares them with the expected integers. An attempt may
end in a comment (its trace, below): the grader ignores it, so a written value is never trusted.

Difficulty `level` of make_splits (families of f, x in DOMAIN = -9..9; its tests and sandbox's benchmark):
  0: x*a+b                  a in +-1..9, b in -19..19
  1: + x*x*a+b (a in +-1..3), abs(x*a+b) (a in 1..9)
  2: + x%m+b (m in 2..9), max(x,c), min(x,c) (c in -9..9)
A problem's identity is its function (its values on all of DOMAIN: max(x,-9) and x*1+0 are one problem).
make_splits deals the shuffled distinct functions out to test, val, then train: no test or val function
appears in train; train items repeat functions with fresh shown/hidden inputs.

score.py's task (--task toy_code): the linear and even quadratic functions x*a+b and x*x*a+b (a in +-1..9, b in
-19..19; 1,404), shown at f(0), f(1), f(-1); 300 test, 100 val, the rest train, dealt by function. Why:
  1. A solver that needs no arithmetic. The imperfect solver writes a = f(1) - f(0) unevaluated, copying the
     prompt's numbers: "def f(x):return x*x*(5-8)+8". Its misconception: every function is even, x*x*a+b,
     which is right on half the functions; with p_know=0.2 it writes the function's own family instead.
  2. A second look that helps. An attempt ends in its trace, what its program gives on the third shown input:
     "def f(x):return x*x*(5-8)+8 #f(-1)=5". The trace is a copy (an even program gives f(1) at -1, a right
     one the prompt's f(-1)); the second look compares it with the prompt's f(-1) and, if they differ, drops
     one "x*" (check_and_fix: the misconception's first attempts go from 50% to 100%; python data/toy_code.py).
  3. No self-correction in the corpus: the second attempt copies the first (p_copy=0.5) or re-solves with the
     same misconception; it never gets an oracle fix.
Limitations: 1. make_splits' splits are per (seed, level), and 4 points may not pin x%m down (hidden tests decide).
2. The check is one comparison, and so is noticing in the prompt that f(-1) != f(1): the first
attempt could learn it as easily (the toy math task's first attempt needs a look-ahead instead).
3. Measured on 3 seeds in docs/reproduce.md: the base learns its solver and does not self-correct; SCoRe does.

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
    """anchored: show f(0), f(1), f(-1) (score.py's task), so the solver's fit and its check are copies."""
    xs = rng.sample(list(DOMAIN), n_shown + n_tests)
    if anchored:
        n_shown, xs = 3, [0, 1, -1] + rng.sample([x for x in DOMAIN if x not in (0, 1, -1)], n_tests)
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
TASK = [f"x*{q}{a}{b:+d}" for q in ("", "x*") for a in range(-9, 10) if a for b in range(-19, 20)]  # score.py's


@functools.lru_cache(maxsize=1)
def _score_splits():
    """score.py's problems: 300 test and 100 val functions; train draws from the rest, with fresh hidden inputs."""
    fns = _distinct(TASK)
    random.Random("toy-code-0-1").shuffle(fns)
    rng = random.Random("toy-code-anchored-0")
    out = {k: [make_problem(e, v, rng, anchored=True) for e, v in f] for k, f in (("test", fns[:300]),
                                                                                  ("val", fns[300:400]))}
    out["train"] = [make_problem(*rng.choice(fns[400:]), rng, anchored=True) for _ in range(20000)]
    return out, fns[400:]


def problems(split, n, seed=0):
    """score.py's interface: up to n problems of one split (test and val are fixed: split seed 0)."""
    items = _score_splits()[0][split]
    rng = random.Random(f"toy-code-order-{split}-{seed}")
    items = rng.sample(items, min(n, len(items))) if split == "train" else items[:n]
    return [{**q, "grader": "toy_code"} for q in items]


def shown(problem):  # [(x, f(x))] of the prompt, in its order
    return [tuple(map(int, e[2:].split(")="))) for e in problem["prompt"].strip().strip(";").split(";")]


def solve(problem, rng, p_know=0.2):
    """An attempt: the even fit through f(0), f(1) (or with chance p_know the right family), then its trace."""
    (_, f0), (_, f1), (x3, _) = shown(problem)
    expr = f"x*{'x*' * (problem['id'].startswith('x*x') or rng.random() >= p_know)}({f1}-{f0})+{f0}"
    return f"def f(x):return {expr} #f({x3})={eval('lambda x:' + expr)(x3)}"  # our own expression, not a model's


def corpus_example(rng, p_copy=0.5):
    """(prompt, y1, y2) of a random train problem: y2 copies y1 or re-solves with the same misconception."""
    q = make_problem(*rng.choice(_score_splits()[1]), rng, anchored=True)
    y1 = solve(q, rng)
    return q["prompt"], y1, y1 if rng.random() < p_copy else solve(q, rng)


def check_and_fix(problem, y1):
    """The second look: if y1's trace disagrees with the prompt's f(-1), the function is not even: drop one x*."""
    traced = re.findall(r"#f\(-1\)=(-?\d+)$", y1)
    return y1.replace("x*x*", "x*", 1) if traced and int(traced[0]) != shown(problem)[2][1] else y1


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
    for what, ys in (("the misconception's first attempt", y1),
                     ("the check-and-fix rule on it", [check_and_fix(q, y) for q, y in zip(test, y1)])):
        print(f"score.py's toy code task, {what}: {sum(toy_code_rewards(test, ys)) / len(test):.3f} of test")
