"""
course/check.py: the instructor's check. The solution is public, so the public tests' cases are known; this
re-runs each student function against the solution (this checkout's score.py) on fresh random seeds and
shapes, so that special-casing the public cases does not pass. Optional teaching machinery (course/README.md).

  python course/check.py STUDENT_DIR [--exercises 2,4] [--seed S]

It loads STUDENT_DIR/score.py beside this checkout's other files (model.py, data/, ...), and grades each
exercise alone: in rl_update the solution's rloo and turn_credits stand in, in evaluate a scripted sampler.
Instructor only: make.py never copies it (nor make.py, record.py, variants.py, INSTRUCTOR.md, test_score.py).
Tolerances: exact for the sampler's tensors, 1e-12 for credits, advantages and metrics, 1e-10 for gradients
(float64). Exit status 1 if any exercise fails; the seed is printed, so a failure can be replayed.
"""
import argparse
import importlib.util
import os
import random
import sys
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
import torch  # noqa: E402

import score as solution  # noqa: E402
from data import toy_math  # noqa: E402
from make import EXERCISES  # noqa: E402
from stand_ins import TOK, LogProbs, Scripted, attempts_of, rl_args  # noqa: E402
from tokenizer import CharTokenizer  # noqa: E402

F64 = torch.float64


class Mismatch(Exception):
    pass


def same(got, want, tol, what):
    if isinstance(want, torch.Tensor):
        got = torch.as_tensor(got)
        ok = got.shape == want.shape and (torch.equal(got, want) if tol == 0 else
                                         bool(((got.to(F64) - want.to(F64)).abs() <= tol).all()))
    else:
        ok = got == want if tol == 0 else abs(got - want) <= tol
    if not ok:
        raise Mismatch(f"{what}: expected {want.tolist() if isinstance(want, torch.Tensor) else want}, "
                       f"got {got.tolist() if isinstance(got, torch.Tensor) else got}")


def ex1(student, rng):
    for _ in range(40):
        B, max_new, E = rng.randint(1, 8), rng.randint(1, 6), TOK.eos_id

        def turn():  # per row: ends with a sampled <eot>, or runs out at max_new tokens
            rows = [[rng.randint(2, 10) for _ in range(rng.randint(1, max_new))] for _ in range(B)]
            for r in rows:
                if len(r) < max_new:
                    r.append(E)
                elif rng.random() < 0.3:
                    r[-1] = E
            return rows
        prompts = [[rng.randint(2, 10) for _ in range(rng.randint(1, 6))] for _ in range(B)]
        instruction = "?" * rng.randint(1, 4)
        given = turn() if rng.random() < 0.3 else None
        second = given is not None or rng.random() < 0.8
        turns = ([] if given else [turn()]) + ([turn()] if second else [])
        case = f"B {B}, max_new {max_new}, y1 given {given is not None}, second {second}"
        zero = {(j, i, t) for j in range(2) for i in range(B) for t in range(max_new) if rng.random() < 0.1}  # lp 0.0
        want = solution.sample_two_turns(Scripted(*turns, zero=zero), TOK, prompts, instruction, max_new, 1.0, None,
                                         given, second)
        got = student.sample_two_turns(Scripted(*turns, zero=zero), TOK, prompts, instruction, max_new, 1.0, None,
                                       given, second)
        for key in ("tokens", "m1", "m2", "logp"):
            same(got[key], want[key], 0, f"{case}: {key}")
        for key in ("y1", "y2"):
            same(got[key], want[key], 0, f"{case}: {key}")


def ex2(student, rng):
    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    for k in range(2, 17):
        B = rng.randint(1, 6)
        for c in (torch.randn(B * k, generator=g, dtype=F64), torch.randint(0, 2, (B * k,), generator=g).to(F64)):
            same(student.rloo(c, k), solution.rloo(c, k), 1e-12, f"rloo with k {k}, {B} prompts, c {c.tolist()}")


def ex3(student, rng):
    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    for _ in range(30):
        N = rng.randint(1, 12)
        r1, r2 = (torch.randint(0, 2, (N,), generator=g).to(F64) for _ in range(2))
        kl1, kl2 = (torch.randn(N, generator=g, dtype=F64) for _ in range(2))
        stage = rng.choice(["single", "stage1", "stage2"])
        hp = dict(alpha=rng.choice([0.0, 1.0, rng.uniform(0, 20)]), beta1=rng.uniform(0, 1), beta2=rng.uniform(0, 2))
        want = solution.turn_credits(stage, r1, r2, kl1, kl2, **hp)
        got = student.turn_credits(stage, r1, r2, kl1, kl2, **hp)
        for i in range(2):
            same(got[i], want[i], 1e-12, f"turn_credits({stage!r}, {hp}), c{i + 1}")


def ex4(student, rng):
    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    student.rloo, student.turn_credits = solution.rloo, solution.turn_credits  # graded alone
    for _ in range(20):
        k, B, T = rng.randint(2, 6), rng.randint(1, 3), rng.randint(4, 10)
        N = B * k
        m1, m2 = torch.zeros(N, T, dtype=F64), torch.zeros(N, T, dtype=F64)
        for i in range(N):  # y1 then y2, at random places, never on column 0
            a = rng.randint(1, T - 3)
            b = rng.randint(a + 1, T - 2)
            c = rng.randint(b + 1, T - 1)
            m1[i, a:b], m2[i, c:rng.randint(c + 1, T)] = 1, 1
        w0 = torch.randn(N, T - 1, generator=g, dtype=F64) - 1
        ref = torch.randn(N, T, generator=g, dtype=F64) - 1
        r1, r2 = (torch.randint(0, 2, (N,), generator=g).to(F64) for _ in range(2))
        s = {"tokens": torch.zeros(N, T, dtype=torch.long), "m1": m1, "m2": m2}
        stage = rng.choice(["single", "stage1", "stage2"])
        args = rl_args(stage, k, alpha=rng.uniform(0, 20), beta1=rng.uniform(0, 1), beta2=rng.uniform(0, 2))
        out = []
        for mod in (student, solution):
            model = LogProbs(w0)
            kl1, kl2, norm = mod.rl_update(args, model, torch.optim.SGD(model.parameters(), lr=1.0), s, r1,
                                           r2 if stage != "single" else torch.zeros(N, dtype=F64), ref)
            out.append((kl1, kl2, norm, w0 - model.w.detach()))
        case = f"rl_update {stage}, k {k}, {B} prompts, T {T}"
        for name, got, want in zip(("kl1", "kl2", "gradient norm", "clipped step"), *out):
            same(got, want, 1e-10, f"{case}: {name}")


def ex5(student, rng):
    tok = CharTokenizer(toy_math.ALPHABET)
    for _ in range(10):
        probs = toy_math.problems("test", rng.randint(1, 60), seed=rng.randrange(10 ** 6))
        kinds = ["".join(rng.choice("RWX-") for _ in range(2)) for _ in probs]
        by_prompt = {q["prompt"]: a for q, a in zip(probs, attempts_of(kinds, probs))}

        def sampler(model, tok_, prompts, instruction, max_new, temperature, generator, y1=None, second=True):
            pairs = [by_prompt[tok.decode(x)] for x in prompts]
            return dict(y1=[a for a, _ in pairs], y2=[b for _, b in pairs], y1_tok=[tok.encode(a) for a, _ in pairs])
        batch = rng.randint(1, 64)
        rows, real = [], solution.sample_two_turns
        for mod in (student, solution):
            mod.sample_two_turns = sampler
            try:
                rows.append(mod.evaluate(torch.nn.Linear(1, 1), tok, SimpleNamespace(
                    instruction=toy_math.INSTRUCTION), probs, 40, batch=batch))
            finally:
                solution.sample_two_turns = real
        for key, want in rows[1].items():
            if key not in rows[0]:
                raise Mismatch(f"evaluate on {len(probs)} problems: the row has no {key!r}")
            same(rows[0][key], want, 1e-12, f"evaluate on {len(probs)} problems (batch {batch}): {key}")


def load(student_dir):
    path = Path(student_dir) / "score.py"
    if not path.is_file():
        raise SystemExit(f"course/check.py: {path} does not exist; pass the student's copy of the project")
    spec = importlib.util.spec_from_file_location("student_score", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("student_dir")
    ap.add_argument("--exercises", default=",".join(map(str, EXERCISES)))
    ap.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    a = ap.parse_args(argv)
    seed = int.from_bytes(os.urandom(4), "little") if a.seed is None else a.seed
    print(f"course/check.py: {a.student_dir} against the solution, seed {seed}")
    failed = []
    for n in sorted(int(x) for x in a.exercises.split(",")):
        student = load(a.student_dir)  # a fresh module each time: one exercise's patches never reach another
        try:
            globals()[f"ex{n}"](student, random.Random(f"{seed}-{n}"))
            print(f"  exercise {n} ({EXERCISES[n].name}): passed")
        except Exception as e:  # noqa: BLE001  a student's error of any kind is a failed exercise, reported
            failed.append(n)
            print(f"  exercise {n} ({EXERCISES[n].name}): FAILED: {type(e).__name__}: {e}")
    print("course/check.py: " + (f"exercises {', '.join(map(str, failed))} failed" if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
