"""
course/make.py: a student copy of the project, generated from the solution (the project itself), so that the
two never drift. Optional machinery for teaching: a reader of the paper may skip the whole course/ folder.

  python course/make.py --out DIR [--exercises 1,3]   a copy whose exercise code becomes NotImplementedError
  python course/make.py --solve DIR                   puts the solution's code back into DIR (the inverse)
  python course/make.py --out DIR --plant-bug         a full copy with one silent bug (course/INSTRUCTOR.md)

A copy never holds INSTRUCTOR_ONLY's files (the tools, the bug's answer, test_score.py).

Each exercise is a region of one function of score.py, found with `ast` by the function's name and spliced by
line numbers (ast.unparse would drop the comments); score.py itself carries no markers. The region is the
function's body (after its docstring), or the statements from the one starting with `start` up to the one
starting with `stop`. In the copy, the region's full-line comments (the equations they name) stay, a note
states the conventions the grading tests rely on, and the code becomes `raise NotImplementedError("Exercise
N: ...")`. The statements around the region stay, so the names the region must define are in view.
"""
import argparse
import ast
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace as Ex

ROOT = Path(__file__).resolve().parent.parent
FILE = "score.py"  # every exercise lives in score.py
EXERCISES = {
    1: Ex(name="sample_two_turns", start="N, T = ", stop="return dict(", title="tokens and masks",
          note=["Build tokens (N, T): each row [x, y1, (forced eot), p, y2, (forced eot)] from column 0, right-padded",
                "with tok.pad_id to T, the longest row. m1 / m2 (N, T) float: 1.0 exactly on the tokens of y1 / y2",
                "that were sampled (a sampled end-of-turn included, a forced one not), 0 elsewhere. logp (N, T):",
                "lp1 / lp2 at those same positions, 0 elsewhere. y1 given (lp1 is None): m1 stays 0; second=False",
                "(lp2 is None): m2 stays 0. The masks come from the turns' lengths, never from logp != 0: a",
                "near-certain token's float32 log-prob can be exactly 0.0. Graded exactly, with a scripted model."]),
    2: Ex(name="rloo", start=None, stop=None, title="the leave-one-out baseline",
          note=["c (N,) holds k samples per prompt, grouped: rows i*k .. i*k+k-1 belong to prompt i. Return",
                "c_i - mean of the other k-1 samples of its group, (N,), same dtype. Graded to 1e-12 in float64."]),
    3: Ex(name="turn_credits", start=None, stop=None, title="per-turn credit, Eq. 2-4",
          note=["Return (c1, c2), the (N,) credits of y1 and y2 for stage 'single' (Eq. 2), 'stage1' (Eq. 3) or",
                "anything else (Stage II, Eq. 4); kl1, kl2 are each turn's k1 KL estimate, already computed. gamma = 0:",
                "a turn is credited with its own reward only. Stage I: y1 carries the beta2 KL alone (no r(y1), no",
                "beta1 term), y2 its reward and the beta1 KL. 'single' has no second turn: c2 = 0, in r2's dtype and",
                "on its device (tensor operations only: on a GPU they are CUDA tensors). Graded to 1e-12 in float64."]),
    4: Ex(name="rl_update", start="m1, m2 = ", stop="opt.zero_grad(", title="REINFORCE with the k1 KL",
          note=["lp (N, T) is above, with gradients, under autocast(args.device) as in sft_step (bf16 on a CUDA GPU, a",
                "no-op on a CPU). args: score.py's flags; this code reads args.stage ('single', 'stage1' or 'stage2'),",
                "args.k, args.alpha, args.beta1, args.beta2. Define kl1, kl2 (N,): the k1 estimate, the sum over the",
                "turn's masked tokens of (log pi - log ref), from lp.detach(): a reward, so it carries no gradient",
                "(not from s['logp']: the tests' s holds tokens, m1 and m2 only). Then c1, c2 =",
                "turn_credits(args.stage, r1, r2, kl1, kl2, args.alpha, args.beta1, args.beta2), a1 = rloo(c1, args.k),",
                "a2 = rloo(c2, args.k) (Stage II, args.stage == 'stage2': on c2 + args.alpha * r1, as the comment says),",
                "and loss = minus the objective: sum over a turn's tokens of advantage x lp, mean over the N rows. The",
                "tests replace rloo and turn_credits by values recorded for exactly these calls. A worked example",
                "(k = 2, from the masks to each token's loss weight): course/README.md."]),
    5: Ex(name="evaluate", start="n = len(problems)", stop="return {**row", title="the metrics",
          note=["From r1, r2 (0/1 rewards of each problem's y1, y2), changed and ratios, define row: acc_t1, acc_t2,",
                "delta = acc_t2 - acc_t1, delta_i_to_c (share of problems with y1 wrong and y2 right), delta_c_to_i",
                "(y1 right, y2 wrong), changed and edit_ratio (means of the lists), n, and fix_rate (Fig. 5: i->c",
                "over the share of wrong first attempts; 1e-9 in place of a zero denominator). Shares of all n, in",
                "[0, 1], not percent. Graded to 1e-12 on scripted attempts."]),
}
# never copied (course/INSTRUCTOR.md): the instructor's tools and notes, and the project's own test suite and CI
# (test_score.py checks the exercise functions against hand-written answers)
INSTRUCTOR_ONLY = {"course/make.py", "course/check.py", "course/record.py", "course/variants.py",
                   "course/INSTRUCTOR.md", "test_score.py", ".ci/run"}
# the silent bug of --plant-bug (course/INSTRUCTOR.md): one line of score.py, replaced once
BUG = ("kl1 = ((lp.detach() - ref_lp) * m1).sum(1)", "kl1 = ((ref_lp - lp.detach()) * m1).sum(1)")


def message(n):
    e = EXERCISES[n]
    return f"Exercise {n}: {e.name} ({e.title}); see course/README.md"


def function(tree, name):
    found = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == name]
    if len(found) != 1:
        raise SystemExit(f"course/make.py: {FILE} has {len(found)} top-level functions named {name}; expected 1")
    return found[0]


def region(lines, fn, e):
    """(first, last) 1-based lines of exercise e's code in function fn, and the index of its first statement."""
    body = fn.body[1:] if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant) else fn.body
    text = [lines[s.lineno - 1].strip() for s in body]
    i = 0 if e.start is None else next((j for j, t in enumerate(text) if t.startswith(e.start)), None)
    j = len(body) if e.stop is None else next((j for j, t in enumerate(text) if t.startswith(e.stop)), None)
    if i is None or j is None or j <= i:
        raise SystemExit(f"course/make.py: {FILE}'s {e.name} no longer has the statements {e.start!r} .. {e.stop!r}"
                         " that exercise bounds name; update EXERCISES")
    return body[i].lineno, body[j - 1].end_lineno


def blank(src, numbers):
    """score.py's text with the chosen exercises' code replaced by their stubs."""
    tree, lines = ast.parse(src), src.splitlines(keepends=True)
    spans = sorted((region(lines, function(tree, EXERCISES[n].name), EXERCISES[n]), n) for n in numbers)
    for (first, last), n in reversed(spans):  # bottom up, so earlier line numbers stay valid
        indent = lines[first - 1][:len(lines[first - 1]) - len(lines[first - 1].lstrip())]
        kept = [indent + ln.strip() + "\n" for ln in lines[first - 1:last] if ln.strip().startswith("#")]
        note = [indent + "# " + ln + "\n" for ln in [f"Exercise {n} (course/README.md):"] + EXERCISES[n].note]
        lines[first - 1:last] = kept + note + [f"{indent}raise NotImplementedError(\"{message(n)}\")\n"]
    return "".join(lines)


def solve(src, solution):
    """Put the solution's code back: each stub (the lines after the statement before its raise, through the
    raise) becomes the solution's lines after the same statement, through the region's end."""
    tree, lines = ast.parse(src), src.splitlines(keepends=True)
    sol_tree, sol_lines = ast.parse(solution), solution.splitlines(keepends=True)
    stubs = []
    for n, e in EXERCISES.items():
        fn = function(tree, e.name)
        at = [k for k, s in enumerate(fn.body) if isinstance(s, ast.Raise) and message(n) in ast.unparse(s)]
        if not at:
            continue
        k = at[0]
        before = fn.body[k - 1].end_lineno if k else fn.lineno  # the stub starts on the line after this one
        sol_fn = function(sol_tree, e.name)
        first, last = region(sol_lines, sol_fn, e)
        prev = [s for s in sol_fn.body if s.end_lineno < first]
        sol_before = prev[-1].end_lineno if prev else sol_fn.lineno
        stubs.append((before, fn.body[k].end_lineno, sol_lines[sol_before:last]))
    for before, end, code in sorted(stubs, reverse=True):
        lines[before:end] = code
    return "".join(lines), len(stubs)


def files(root):
    """The project's files: git's tracked and untracked-not-ignored ones, else a walk without outputs."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.split("\n")
        return [f for f in out if f and (root / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", "__pycache__", ".pytest_cache", "venv", ".venv"}
        return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not skip & set(p.parts)
                and not any(part.startswith("out") for part in p.relative_to(root).parts[:1])]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--out", help="directory to write the student copy to (must not exist)")
    ap.add_argument("--exercises", default=",".join(map(str, EXERCISES)), help="comma-separated numbers")
    ap.add_argument("--plant-bug", action="store_true", help="no exercises: a full copy with one silent bug")
    ap.add_argument("--solve", metavar="DIR", help="put the solution's code back into the copy DIR")
    a = ap.parse_args(argv)
    solution = (ROOT / FILE).read_text()
    if a.solve:
        path = Path(a.solve) / FILE
        text, n = solve(path.read_text(), solution)
        path.write_text(text)
        print(f"course/make.py: {n} exercise(s) put back into {path}")
        return
    if not a.out:
        ap.error("--out DIR or --solve DIR is needed")
    numbers = [] if a.plant_bug else sorted({int(x) for x in a.exercises.split(",") if x.strip()})
    if any(n not in EXERCISES for n in numbers):
        ap.error(f"--exercises {a.exercises}: the exercises are {', '.join(map(str, EXERCISES))}")
    out = Path(a.out)
    if out.exists():
        ap.error(f"--out {out} exists; choose a new directory")
    text = blank(solution, numbers)
    if a.plant_bug:
        if solution.count(BUG[0]) != 1:
            raise SystemExit(f"course/make.py: {FILE} no longer holds the line {BUG[0]!r} exactly once; update BUG")
        text = solution.replace(BUG[0], BUG[1])
    for f in sorted(set(files(ROOT)) - INSTRUCTOR_ONLY):
        (out / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, out / f)
    (out / FILE).write_text(text)
    if a.plant_bug:
        print(f"course/make.py: wrote {out} with one planted silent bug; find it from the metrics of: cd {out} && "
              "OMP_NUM_THREADS=1 SEED=0 bash train_small.sh")
    else:
        print(f"course/make.py: wrote {out} with exercises {', '.join(map(str, numbers))}; grade one with: cd {out} "
              f"&& python -m pytest course -k ex{numbers[0] if numbers else 1}")


if __name__ == "__main__":
    main(sys.argv[1:])
