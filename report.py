"""
report.py: results tables, mean ± sd over seeds, from the results.json files the eval stage writes.

  python report.py out_seed0 out_seed1 out_seed2
      train_small.sh's table: one Markdown row per evaluated model (base, stage1, score): acc@t1, acc@t2, Δ, Δi→c,
      Δc→i, the rate at which y2's answer differs from y1's, in points (sample sd over seeds, n-1), the per-seed Δs.
  python report.py --repro out_repro out_repro/seed0 out_repro/seed1 out_repro/seed2
      reproduce.sh's report, written to out_repro/REPORT.md: the methods in the paper's format with the paper's MATH
      numbers beside ours (Tables 2 and 4), the findings F1-F7 with the rule each verdict follows, and (with
      matplotlib) the plots: Fig. 6 training curves, Fig. 4 edit-distance histograms, Fig. 5 distribution shift,
      section 6.3 inference scaling.
"""
import json, os, pathlib, statistics, sys  # noqa: E401

COLUMNS = {"acc_t1": "acc@t1", "acc_t2": "acc@t2", "delta": "Δ(t1,t2)", "delta_i_to_c": "Δi→c",  # results.json key -> title
           "delta_c_to_i": "Δc→i", "changed": "y2 answer changed"}
NAMES = {"base": "base", "stage1": "Stage I", "score": "SCoRe (Stage II)"}

# reproduce.sh's methods: name -> (row title, the paper's MATH500 t1 / t2 / Δ / Δi→c / Δc→i, Tables 2 and 4)
PAPER = {"base": ("Self-Refine (base + instruction)", (52.8, 51.8, -1.0, 3.2, 4.2)),
         "star": ("STaR on D_STaR", (55.4, 41.2, -14.2, 5.4, 19.6)), "star_plus": ("STaR on D+_STaR", (53.6, 54.0, 0.4, 2.6, 2.2)),
         "pair_sft": ("Pair-SFT on D_SFT", (52.4, 54.2, 1.8, 5.4, 3.6)),
         "mtrl": ("Multi-turn RL (Stage II, no Stage I, no bonus)", None), "stage1": ("SCoRe Stage I only", None),
         "score": ("SCoRe", (60.0, 64.4, 4.4, 5.8, 1.4))}
ABLATIONS = {"score": ("SCoRe", (60.0, 64.4, 4.4)), "single": ("w/o multi-turn training (single-turn RL)", (61.8, 59.4, -2.4)),
             "nostage1": ("w/o Stage I", (59.2, 61.4, 2.2)), "noshape": ("w/o reward shaping", (60.0, 62.6, 2.6)),
             "star_stage2": ("STaR instead of REINFORCE in Stage II", (56.2, 58.4, 2.2))}
SFT = ("star", "star_plus", "pair_sft")


def mean_sd(values):
    """(mean, sample sd) of values; sd 0 for a single seed."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(ms, signed=False):
    return f"{ms[0]:+.1f} ± {ms[1]:.1f}" if signed else f"{ms[0]:.1f} ± {ms[1]:.1f}"


def stat(runs, model, key):
    """(mean, sd) in points over seeds of one metric of one model."""
    return mean_sd([100 * r[model][key] for r in runs])


def cells(runs, model, keys):
    return [fmt(stat(runs, model, k), k == "delta") for k in keys]


def per_seed(runs, model):
    return " / ".join(f"{100 * r[model]['delta']:+.1f}" for r in runs)


def no_edit(runs, model):
    """Mean over seeds of the share of second attempts identical to the first (edit ratio 0), %."""
    return statistics.mean(100 * r[model]["edit_ratios"].count(0) / len(r[model]["edit_ratios"]) for r in runs)


def table(header, rows):
    """Markdown lines: the header row, the rule, one line per row (lists of cells)."""
    return [f"| {' | '.join(header)} |", "|---" * len(header) + "|"] + [f"| {' | '.join(cs)} |" for cs in rows]


def load(dirs, name="results.json"):
    paths = [os.path.join(d, name) for d in dirs]
    for path in paths:
        if not os.path.exists(path):
            sys.exit(f"report.py: {path} not found (run train_small.sh / reproduce.sh with that output first)")
    return [{row["model"]: row for row in json.loads(pathlib.Path(path).read_text())} for path in paths]


def small_table(dirs):
    runs = load(dirs)
    models = [m for m in runs[0] if all(m in r for r in runs)]
    print("\n".join(table(["model"] + list(COLUMNS.values()) + ["Δ per seed"],
                          [[NAMES.get(m, m)] + cells(runs, m, COLUMNS) + [per_seed(runs, m)] for m in models])))
    print(f"\n{len(runs)} seeds, {runs[0][models[0]]['n']} held-out test problems each, greedy; points (%), mean ± sd")


def findings(runs, scal):
    """Each of the paper's findings: (id, claim, verdict, the numbers); verdicts follow the stated rules."""
    S = lambda m, k: stat(runs, m, k)  # noqa: E731
    b, sd, c2i, own, fixed = (S(m, k) for m, k in (("base", "delta"), ("score", "delta"), ("score", "delta_c_to_i"),
                                                   ("pair_sft", "fix_rate"), ("pair_sft", "fix_rate_fixed")))
    m1, m2, md, bt1, bt2 = S("mtrl", "acc_t1"), S("mtrl", "acc_t2"), S("mtrl", "delta"), S("base", "acc_t1"), S("base", "acc_t2")
    ne = {m: no_edit(runs, m) for m in SFT + ("base", "score")}
    deltas = {m: S(m, "delta")[0] for m in ("base", "star", "star_plus", "pair_sft", "mtrl")}  # Table 2's methods
    abl = {m: S(m, "delta")[0] for m in ABLATIONS}
    order = sorted(abl, key=lambda m: -abl[m])
    out = [("F1", "the base model does not self-correct: Δ ≤ 0", b[0] <= 0 and all(r["base"]["delta"] <= 0 for r in runs),
            f"base Δ {fmt(b, True)} (per seed {per_seed(runs, 'base')}; one base model, so the seeds repeat one greedy "
            "evaluation)"),
           ("F2", "SFT methods collapse to few edits: they leave y1 unedited more often than SCoRe (rule: every SFT "
            "method's no-edit share above SCoRe's)", all(ne[m] > ne["score"] for m in SFT),
            ", ".join(f"{m} {ne[m]:.1f}%" for m in ne) + " of second attempts identical to the first"),
           ("F3", "Pair-SFT corrects the base model's first attempts better than its own (distribution shift; rule: the "
            "correction rate on the base's y1 above that on its own y1 by more than the two sds together)",
            fixed[0] - own[0] > fixed[1] + own[1],
            f"Pair-SFT fixes {fmt(fixed)}% of the base model's wrong first attempts, {fmt(own)}% of its own"),
           ("F4", "multi-turn RL improves both attempts but not Δ (rule: t1 and t2 above the base, Δ below SCoRe's by "
            "more than the two sds together)", m1[0] > bt1[0] and m2[0] > bt2[0] and md[0] < sd[0] - (md[1] + sd[1]),
            f"multi-turn RL t1 {fmt(m1)} / t2 {fmt(m2)} / Δ {fmt(md, True)} vs base {fmt(bt1)} / {fmt(bt2)}; SCoRe Δ "
            f"{fmt(sd, True)}"),
           ("F5", "SCoRe has the largest Δ of the methods, with a small Δc→i (rule: above every Table 2 method and "
            "multi-turn RL, Δc→i ≤ 2)", all(sd[0] > d for d in deltas.values()) and c2i[0] <= 2.0,
            f"SCoRe Δ {fmt(sd, True)}, Δc→i {fmt(c2i)}; others: " + ", ".join(f"{m} {d:+.1f}" for m, d in deltas.items())),
           ("F6", "the ablations: every component helps (rule: SCoRe's Δ above every ablation's, and single-turn RL's the "
            "lowest; paper: SCoRe 4.4 > no shaping 2.6 > no Stage I 2.2 = STaR-Stage II 2.2 > single −2.4)",
            order[0] == "score" and order[-1] == "single", " > ".join(f"{m} {abl[m]:+.1f}" for m in order))]
    if scal:
        top = max(x["budget"] for x in scal[0]["score"]["scaling"])
        par, seq = ([100 * next(x[k] for x in r["score"]["scaling"] if x["budget"] == top) for r in scal]
                    for k in ("parallel", "sequential"))
        out.append(("F7", f"sequential + parallel beats parallel at an equal budget (rule: SCoRe at K = {top}, mean)",
                    statistics.mean(seq) > statistics.mean(par),
                    f"SCoRe, K = {top}: majority of {top} first attempts {fmt(mean_sd(par))}%, majority of {top // 2} "
                    f"self-corrected attempts {fmt(mean_sd(seq))}%"))
    return out


def plots(out_dir, runs, curves, scal):
    import matplotlib.pyplot as plt
    plt.switch_backend("Agg")
    figs = {}  # file name -> figure
    # Fig. 6: validation accuracy over training steps, SCoRe (Stage I then Stage II) vs multi-turn RL
    figs["fig6_curves.png"], axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    s1 = max(row["step"] for row in curves[0] if row["name"] == "stage1")  # Stage II's steps follow Stage I's
    for ax, (title, parts) in zip(axes, [("SCoRe: Stage I, then Stage II", ["stage1", "score"]),
                                         ("multi-turn RL (no Stage I, no bonus)", ["mtrl"])]):
        for key, color in (("val_acc_t1", "tab:blue"), ("val_acc_t2", "tab:red")):
            for i, c in enumerate(curves):
                pts = [(row["step"] + (s1 if name == "score" else 0), 100 * row[key]) for name in parts for row in c
                       if row["name"] == name and key in row]
                ax.plot(*zip(*pts), color=color, alpha=0.8, lw=1.2, label=key[4:].replace("acc_", "acc@") if i == 0 else None)
        ax.set(title=title, xlabel="RL step")
        ax.legend()
    axes[0].axvline(s1, color="gray", ls=":", lw=1)
    axes[0].set_ylabel("greedy validation accuracy, % (one line per seed)")
    # Fig. 4: edit-distance ratios between y1 and y2, pooled over seeds
    figs["fig4_edit_hist.png"], axes = plt.subplots(1, 6, figsize=(15, 3), sharey=True)
    for ax, m in zip(axes, ("base", "star", "star_plus", "pair_sft", "mtrl", "score")):
        ax.hist([x for r in runs for x in r[m]["edit_ratios"]], bins=20, range=(0, 0.5), color="tab:purple")
        ax.set_title(PAPER[m][0].split(" (")[0], fontsize=9)
        ax.set_xlabel("edit distance ratio")
    axes[0].set_ylabel("test problems (3 seeds)")
    # Fig. 5: correction rate on the base model's first attempts vs on the model's own
    models = ("pair_sft", "star", "star_plus", "mtrl", "score")
    figs["fig5_shift.png"], ax = plt.subplots(figsize=(7, 3.5))
    for j, (key, label) in enumerate((("fix_rate_fixed", "base model's first attempts"), ("fix_rate", "its own first attempts"))):
        ms = [stat(runs, m, key) for m in models]
        ax.bar([i + 0.38 * j for i in range(len(models))], [x[0] for x in ms], 0.38, yerr=[x[1] for x in ms], label=label)
    ax.set_xticks([i + 0.19 for i in range(len(models))], models)
    ax.set_ylabel("wrong first attempts fixed by y2, %")
    ax.legend()
    if scal:  # section 6.3: accuracy at an equal sample budget
        figs["scaling.png"], ax = plt.subplots(figsize=(6, 3.5))
        for m, color in [x for x in (("score", "tab:red"), ("mtrl", "tab:green"), ("base", "tab:gray")) if x[0] in scal[0]]:
            for k, ls in (("parallel", "--"), ("sequential", "-")):  # one point per budget, the mean over seeds
                ax.plot([x["budget"] for x in scal[0][m]["scaling"]], [statistics.mean(100 * x[k] for x in xs) for xs in
                        zip(*(r[m]["scaling"] for r in scal))], ls, color=color, marker="o", label=f"{m}, {k}")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="samples per problem (budget)", ylabel="majority-vote accuracy, %")
        ax.legend(fontsize=7)
    for name, fig in figs.items():
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, name), dpi=90)
    plt.close("all")
    return list(figs)


def repro_report(out_dir, dirs):
    runs = load(dirs)
    scal = load(dirs, "scaling.json") if all(os.path.exists(os.path.join(d, "scaling.json")) for d in dirs) else []
    curves = [[json.loads(line) for line in pathlib.Path(d, "metrics.jsonl").read_text().splitlines()] for d in dirs]
    paper_cell = lambda paper: " / ".join(f"{x:g}" for x in paper)  # noqa: E731
    L = [f"# Reproduction on the toy math task ({len(runs)} seeds, {runs[0]['base']['n']} held-out test problems, greedy)",
         "", "Ours: mean ± sd over seeds, points (%). Paper: Gemini 1.5 Flash on MATH500 (Tables 2 and 4); a different "
         "model and task, beside ours for the pattern, not the level.", ""]
    L += table(["method"] + list(COLUMNS.values()) + ["no edit", "paper t1 / t2 / Δ / Δi→c / Δc→i"],
               [[name] + cells(runs, m, COLUMNS) + [f"{no_edit(runs, m):.1f}", paper_cell(paper) if paper else "—"]
                for m, (name, paper) in PAPER.items()])
    keys = ("acc_t1", "acc_t2", "delta", "delta_c_to_i")
    L += ["", "Ablations (paper Table 4):", ""] + table(["method"] + [COLUMNS[k] for k in keys] + ["paper t1 / t2 / Δ"], [
        [name] + cells(runs, m, keys) + [paper_cell(paper)] for m, (name, paper) in ABLATIONS.items()])
    L += ["", "Per-seed Δ: " + "; ".join(f"{m} {per_seed(runs, m)}" for m in {**PAPER, **ABLATIONS}), ""]
    if scal:
        sc = scal[0]["score"]["scaling"]
        L += [f"Inference-time scaling (section 6.3; {sc[0].get('n', '?')} test problems, temperature 0.7, majority "
              "vote): accuracy at a budget of K samples, K parallel first attempts vs K/2 first attempts each "
              "self-corrected once.", ""]
        L += table(["model"] + [f"K={x['budget']} parallel / sequential" for x in sc], [[m] + [
            " / ".join(f"{statistics.mean(100 * x[k] for x in xs):.1f}" for k in ("parallel", "sequential"))  # over seeds
            for xs in zip(*(r[m]["scaling"] for r in scal))] for m in ("base", "mtrl", "score") if m in scal[0]]) + [""]
    L += ["## The paper's findings", ""] + [f"- **{fid} {'reproduced' if ok else 'not reproduced'}**: {claim}. {numbers}."
                                            for fid, claim, ok, numbers in findings(runs, scal)]
    try:
        L += [""] + [f"![{f}]({f})" for f in plots(out_dir, runs, curves, scal)]
    except ImportError:
        L += ["", "(no plots: matplotlib is not installed)"]
    pathlib.Path(out_dir, "REPORT.md").write_text(text := "\n".join(L) + "\n")
    print(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--repro"] and len(sys.argv) > 3:
        repro_report(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:] and sys.argv[1] != "--repro":
        small_table(sys.argv[1:])
    else:
        sys.exit(__doc__)
