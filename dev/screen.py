"""dev/screen.py: greedy two-turn metrics of checkpoints on validation problems (issue 19's regime screen; the
test split is never read). A reader may skip it: it is research bookkeeping around score.evaluate.
Run:  python dev/screen.py --task toy_math_route --out out_screen/route --names base,score,star"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from runs import load_model  # noqa: E402
from score import evaluate, toy_task  # noqa: E402
from tokenizer import from_description  # noqa: E402

p = argparse.ArgumentParser(description="greedy validation metrics of checkpoints")
p.add_argument("--task", default="toy_math", help="toy_math or toy_math_<regime>")
p.add_argument("--out", required=True, help="folder holding <name>.pt")
p.add_argument("--names", required=True, help="comma-separated checkpoint names")
p.add_argument("--n", type=int, default=500, help="validation problems")
p.add_argument("--seed", type=int, default=1, help="which validation problems (runs choose checkpoints on seed's)")
args = p.parse_args()
task = toy_task(args.task)
val = task.module.problems("val", args.n, seed=args.seed)
rows = {}
print(f"{'model':<14}{'t1':>7}{'t2':>7}{'delta':>7}{'i->c':>7}{'c->i':>7}{'noedit':>8}{'fix':>7}")
for name in args.names.split(","):
    model, state = load_model(os.path.join(args.out, name + ".pt"))
    r = evaluate(model, from_description(state["tokenizer"]), task, val, 40, detail=True)
    r["no_edit"] = sum(x == 0 for x in r.pop("edit_ratios")) / len(val)
    r.pop("y1_tok")
    rows[name] = r
    print(f"{name:<14}" + "".join(f"{100 * r[k]:>7.1f}" for k in ("acc_t1", "acc_t2", "delta", "delta_i_to_c",
                                                                  "delta_c_to_i")) +
          f"{100 * r['no_edit']:>8.1f}{100 * r['fix_rate']:>7.1f}")
json.dump(rows, open(os.path.join(args.out, "screen.json"), "w"), indent=1)
