"""
course/variants.py: the instructor's proof that the student copy holds no answers and that the public tests
catch the wrong code students write (issue 35). Instructor only: make.py never copies it.

  python course/variants.py [--only NAME,...] [--keep DIR]

1. Wrong variants: each is applied to a fresh student copy (make.py --out, then --solve: a student's complete
   and correct work), its exercise's public tests run there (pytest course -k exN), and at least one must fail
   with a message holding the words that name the cause. The unchanged copy must pass every public test.
2. No answers in the copy: every function of every module of a fresh copy except score.py (top-level functions,
   methods, and the methods of stand_ins.Recorded.load()) whose signature takes rloo's (c, k) or
   turn_credits's 8 arguments is compared with the solution's on random inputs as course/check.py does (k = 2..16,
   30 random credit cases); none may agree. The solution's own rloo and turn_credits are the control: they
   must agree. The audit runs in a subprocess inside the copy, so the copy's imports see the copy's score.py.
3. The bug copy (make.py --plant-bug) holds no file with BUG's original line, and no instructor-only file.
Prints one line per check; exit status 1 if any fails.
"""
import argparse
import ast
import contextlib
import importlib.util
import io
import inspect
import random
import signal
import subprocess
import sys
import tempfile
import types
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace as V

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from make import BUG, INSTRUCTOR_ONLY  # noqa: E402
# name, exercise, [(the solution's text, the wrong text)], words a failure message must hold
VARIANTS = [
    V(name="kl-not-detached", n=4, edits=[("(lp.detach() - ref_lp) * m1", "(lp - ref_lp) * m1"),
                                          ("(lp.detach() - ref_lp) * m2", "(lp - ref_lp) * m2")],
      words=["requires grad", "reward"]),
    V(name="kl-from-sampler-logp", n=4, edits=[("(lp.detach() - ref_lp) * m1", "(s['logp'] - ref_lp) * m1"),
                                               ("(lp.detach() - ref_lp) * m2", "(s['logp'] - ref_lp) * m2")],
      words=["not from the sampler's logp"]),
    V(name="masks-from-logp", n=1, edits=[("    return dict(tokens=tokens.to(dev)",
                                           "    m1, m2 = m1 * (logp != 0), m2 * (logp != 0)\n"
                                           "    return dict(tokens=tokens.to(dev)")],
      words=["log-prob of exactly 0.0", "never from logp != 0"]),
    V(name="single-c2-torch-zeros", n=3, edits=[("torch.zeros_like(r2)", "torch.zeros(r1.shape)")],
      words=["float32 on cpu", "torch.zeros(shape)"]),
    V(name="stage1-beta1-on-y1", n=3, edits=[("return -beta2 * kl1, r2 - beta1 * kl2",
                                              "return -(beta1 + beta2) * kl1, r2 - beta1 * kl2")],
      words=["no beta1 KL"]),
    V(name="stage2-y2-baseline-without-alpha-r1", n=4,
      edits=[("rloo(c2 + args.alpha * r1, args.k) if", "rloo(c2, args.k) if")], words=["without + args.alpha * r1"]),
    V(name="planted-bug", n=4, edits=[BUG], words=["kl1: the closest recorded call has"]),  # --plant-bug's line
]


def run(*args, cwd=ROOT, timeout=600):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={"PYTHONDONTWRITEBYTECODE": "1", **__import__("os").environ})


def copy(out, *flags):
    r = run(HERE / "make.py", "--out", out, *flags)
    assert r.returncode == 0, r.stderr
    return Path(out)


def grade(where, *select):
    """pytest course in a copy: {test: (outcome, message)} and the wall time"""
    import time
    t0 = time.time()
    r = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "course", *select, "--junitxml", "grades.xml", cwd=where)
    cases = ET.parse(Path(where) / "grades.xml").getroot().iter("testcase")
    out = {c.get("name"): next(((e.tag, (e.get("message") or "") + "\n" + (e.text or "")) for e in c
                                if e.tag in ("failure", "error")), ("passed", "")) for c in cases}
    assert out, r.stdout + r.stderr
    return out, time.time() - t0


def check_variants(tmp, only):
    ok = True
    hw = copy(tmp / "hw")
    assert "5 exercise(s) put back" in run(HERE / "make.py", "--solve", hw).stdout
    solved = (hw / "score.py").read_text()
    grades, wall = grade(hw)
    bad = {t: o for t, (o, _) in grades.items() if o != "passed"}
    print(f"solution in a fresh copy: {len(grades) - len(bad)}/{len(grades)} public tests passed ({wall:.1f} s)")
    ok &= not bad
    for v in VARIANTS:
        if only and v.name not in only:
            continue
        text = solved
        for old, new in v.edits:
            assert text.count(old) == 1, f"{v.name}: score.py no longer holds {old!r} exactly once; update VARIANTS"
            text = text.replace(old, new)
        (hw / "score.py").write_text(text)
        grades, wall = grade(hw, "-k", f"ex{v.n}")
        failed = {t: m for t, (o, m) in grades.items() if o != "passed"}
        named = [t for t, m in failed.items() if all(w in m for w in v.words)]
        first = next(iter(failed.values()), "").strip().split("\n")[0][:300]
        print(f"variant {v.name} (exercise {v.n}): {len(failed)}/{len(grades)} tests fail, "
              f"{len(named)} naming the cause {v.words} ({wall:.1f} s): {', '.join(named) or 'NONE'}\n    {first}")
        ok &= bool(named)
        (hw / "score.py").write_text(solved)
    return ok


def check_copies(tmp):
    hw, bug = copy(tmp / "answers"), copy(tmp / "bug", "--plant-bug")
    ok = True
    for where in (hw, bug):
        leaked = sorted(f for f in INSTRUCTOR_ONLY if (where / f).exists())
        print(f"{where.name} copy: instructor-only files present: {leaked or 'none'}")
        ok &= not leaked
    holding = [str(p.relative_to(bug)) for p in bug.rglob("*") if p.is_file() and BUG[0] in
               p.read_text(errors="replace")]
    print(f"bug copy: files holding the original line {BUG[0]!r}: {holding or 'none'}")
    r = run(HERE / "variants.py", "--audit", hw, cwd=hw)
    print(r.stdout.rstrip() + ("" if r.returncode == 0 else "\n" + r.stderr[-2000:]))
    return ok and not holding and r.returncode == 0


def definitions(path, name):
    """a module that fails at import (e.g. it parses sys.argv): its imports, functions and classes alone"""
    tree = ast.parse(path.read_text())
    tree.body = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))]
    module = types.ModuleType(name)
    module.__file__ = str(path)
    exec(compile(tree, str(path), "exec"), module.__dict__)  # noqa: S102  the copy's own code
    return module


def audit(where):
    """In the copy (cwd): every function outside score.py with rloo's or turn_credits's signature, against the
    solution (ROOT/score.py) on random inputs."""
    import torch
    where = Path(where).resolve()
    sys.path[:] = [str(where), str(where / "course")] + [p for p in sys.path if Path(p or ".").resolve() != HERE]
    spec = importlib.util.spec_from_file_location("solution", ROOT / "score.py")
    solution = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(solution)
    warnings.simplefilter("ignore")  # the functions called with odd inputs warn
    sys.argv = [sys.argv[0]]
    F64, rng = torch.float64, random.Random(0)
    g = torch.Generator().manual_seed(0)
    rloo_cases = [(torch.randn(rng.randint(1, 6) * k, generator=g, dtype=F64), k) for k in range(2, 17)]
    credit_cases = []
    for _ in range(30):
        n = rng.randint(1, 12)
        r1, r2 = (torch.randint(0, 2, (n,), generator=g).to(F64) for _ in range(2))
        kl1, kl2 = (torch.randn(n, generator=g, dtype=F64) for _ in range(2))
        credit_cases.append((rng.choice(["single", "stage1", "stage2"]), r1, r2, kl1, kl2, rng.uniform(0, 20),
                             rng.uniform(0, 1), rng.uniform(0, 2)))

    def agrees(fn, ref, cases):
        signal.alarm(10)  # a function that never returns on these inputs does not agree
        try:
            for case in cases:
                got, want = fn(*case), ref(*case)
                for a, b in zip(*(([x] if torch.is_tensor(x) else list(x)) for x in (got, want))):
                    if torch.as_tensor(a).shape != b.shape or (torch.as_tensor(a, dtype=F64) - b).abs().max() > 1e-12:
                        return False
            return True
        except BaseException:  # noqa: BLE001  any failure is a disagreement
            return False
        finally:
            signal.alarm(0)

    def takes(fn, n):
        try:
            inspect.signature(fn).bind(*range(n))
            return True
        except (TypeError, ValueError):
            return False

    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError()))
    found, tried, skipped = [], {2: 0, 8: 0}, []
    files = sorted(p for p in where.rglob("*.py") if p.name != "score.py" or p.parent != where)
    for path in files:
        rel = path.relative_to(where)
        name = ".".join(rel.with_suffix("").parts[1:] if rel.parts[0] == "course" else rel.with_suffix("").parts)
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # e.g. argparse's usage line
                module = importlib.import_module(name)
        except BaseException as e:  # noqa: BLE001
            try:
                module = definitions(path, name)
                skipped.append(f"{rel} ({type(e).__name__} at import: its definitions alone)")
            except BaseException as e2:  # noqa: BLE001
                skipped.append(f"{rel} ({type(e2).__name__}: not tried)")
                continue
        fns = []
        for obj in list(vars(module).values()):
            if inspect.isfunction(obj) and obj.__module__ == module.__name__:
                fns.append((obj.__qualname__, obj))
            elif inspect.isclass(obj) and obj.__module__ == module.__name__:
                fns += [(f"{obj.__qualname__}.{k}", getattr(obj, k)) for k, a in vars(obj).items()
                        if inspect.isfunction(a) or isinstance(a, (staticmethod, classmethod))]
                if hasattr(obj, "load") and isinstance(vars(obj).get("load"), classmethod):
                    inst = obj.load()
                    fns += [(f"{obj.__qualname__}.load().{k}", getattr(inst, k)) for k, a in vars(obj).items()
                            if inspect.isfunction(a)]
        for qual, fn in fns:
            for n, ref, cases in ((2, solution.rloo, rloo_cases), (8, solution.turn_credits, credit_cases)):
                if takes(fn, n):
                    tried[n] += 1
                    if agrees(fn, ref, cases):
                        found.append(f"{rel}:{qual} computes {ref.__name__}")
    controls = [agrees(solution.rloo, solution.rloo, rloo_cases), agrees(solution.turn_credits,
                                                                          solution.turn_credits, credit_cases)]
    print(f"audit of {where.name}: {len(files)} modules, {tried[2]} functions tried as rloo, {tried[8]} as "
          f"turn_credits; agreeing with the solution: {found or 'none'}; control (the solution's own): "
          f"{'agrees' if all(controls) else 'FAILS'}" + (f"; {skipped}" if skipped else ""))
    return 1 if found or not all(controls) else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all, and the copies)")
    ap.add_argument("--keep", help="work in this new directory and keep it (default: a temporary one)")
    ap.add_argument("--audit", metavar="COPY", help=argparse.SUPPRESS)  # the subprocess of check_copies
    a = ap.parse_args(argv)
    if a.audit:
        return audit(a.audit)
    only = {x for x in a.only.split(",") if x}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(a.keep) if a.keep else Path(t)
        tmp.mkdir(parents=True, exist_ok=True)
        ok = check_variants(tmp, only) & (True if only else check_copies(tmp))
    print("course/variants.py: " + ("all checks passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
