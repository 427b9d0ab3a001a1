"""
report.py: the README's results table, mean ± sd over seeds, from the results.json files train_small.sh writes.

Each argument is an output folder of one seed (`SEED=s OUT=out_seed$s bash train_small.sh`). Prints one
Markdown row per evaluated model (base, stage1, score): acc@t1, acc@t2, delta, delta i->c, delta c->i, the
rate at which y2's answer differs from y1's, in points (sample sd over seeds, n-1), and the per-seed deltas.

Run:  python report.py out_seed0 out_seed1 out_seed2
"""
import json
import os
import statistics
import sys

COLUMNS = [("acc_t1", "acc@t1"), ("acc_t2", "acc@t2"), ("delta", "Δ(t1,t2)"), ("delta_i_to_c", "Δi→c"),
           ("delta_c_to_i", "Δc→i"), ("changed", "y2 answer changed")]
NAMES = {"base": "base", "stage1": "Stage I", "score": "SCoRe (Stage II)"}


def mean_sd(values, signed=False):
    m, sd = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:+.1f} ± {sd:.1f}" if signed else f"{m:.1f} ± {sd:.1f}"


def main(dirs):
    if not dirs:
        sys.exit(__doc__)
    runs = []
    for d in dirs:
        path = os.path.join(d, "results.json")
        if not os.path.exists(path):
            sys.exit(f"report.py: {path} not found (run train_small.sh with OUT={d} first)")
        with open(path) as f:
            runs.append({row["model"]: row for row in json.load(f)})
    models = [m for m in runs[0] if all(m in r for r in runs)]
    print(f"| model | {' | '.join(title for _, title in COLUMNS)} | Δ per seed |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for m in models:
        cells = [mean_sd([100 * r[m][key] for r in runs], signed=key == "delta") for key, _ in COLUMNS]
        per_seed = " / ".join(f"{100 * r[m]['delta']:+.1f}" for r in runs)
        print(f"| {NAMES.get(m, m)} | {' | '.join(cells)} | {per_seed} |")
    print(f"\n{len(runs)} seeds, {runs[0][models[0]]['n']} held-out test problems each, greedy; points (%), mean ± sd")


if __name__ == "__main__":
    main(sys.argv[1:])
