"""
report.py: results tables, mean ± sd over seeds, from the results.json files the eval stage writes.

  python report.py out_seed0 out_seed1 out_seed2
      train_small.sh's table: one Markdown row per evaluated model (base, stage1, score): acc@t1, acc@t2, Δ, Δi→c,
      Δc→i, the rate at which y2's answer differs from y1's, in points (sample sd over seeds, n-1), the per-seed Δs.
  python report.py --plot out_small
      train_small.sh's picture, out_small/train_small.png (with matplotlib): acc@t1 and acc@t2 on the test set for base,
      Stage I and SCoRe, beside the sampled rewards r1, r2 over the RL steps (Stage I, then Stage II).
  python report.py --repro out_repro out_repro/seed0 out_repro/seed1 out_repro/seed2
      reproduce.sh's report, out_repro/REPORT.md: the methods beside the paper's MATH numbers (Tables 2 and 4), F1-F7
      with each verdict's rule, plots (with matplotlib): Fig. 6 curves, Fig. 4 edit ratios, Fig. 5 shift, section 6.3.
  python report.py --judge figures/REPORT.md
      F1-F7 by today's rules on an existing REPORT.md's numbers (table cells, F3's and F7's numbers); a no-edit share
      without an sd takes that of "y2 answer changed" (an unedited y2 keeps its answer: the two nearly add to 100).
"""
import json, os, pathlib, re, statistics, sys  # noqa: E401

COLUMNS = {"acc_t1": "acc@t1", "acc_t2": "acc@t2", "delta": "Δ(t1,t2)", "delta_i_to_c": "Δi→c",  # results.json key -> title
           "delta_c_to_i": "Δc→i", "changed": "y2 answer changed"}

# reproduce.sh's methods: name -> (row title, the paper's MATH500 t1 / t2 / Δ / Δi→c / Δc→i, Tables 2 and 4)
PAPER = {"base": ("Base (base model + correction instruction)", (52.6, 41.4, -11.2, 4.6, 15.8)),
         "self_refine": ("Self-Refine: not applicable, it revises with the model's own written feedback on y1; the toy "
                         "model writes none, and the instruction alone is the Base row", (52.8, 51.8, -1.0, 3.2, 4.2)),
         "star": ("STaR on D_STaR", (55.4, 41.2, -14.2, 5.4, 19.6)), "star_plus": ("STaR on D+_STaR", (53.6, 54.0, 0.4, 2.6, 2.2)),
         "pair_sft": ("Pair-SFT on D_SFT", (52.4, 54.2, 1.8, 5.4, 3.6)),
         "pair_sft_plus": ("Pair-SFT on D+_SFT", (55.0, 55.0, 0.0, 0.0, 0.0)),
         "mtrl": ("Multi-turn RL (Stage II, no Stage I, no bonus)", None), "stage1": ("SCoRe Stage I only", None),
         "score": ("SCoRe", (60.0, 64.4, 4.4, 5.8, 1.4))}
ABLATIONS = {"score": ("SCoRe", (60.0, 64.4, 4.4)), "single": ("w/o multi-turn training (single-turn RL)", (61.8, 59.4, -2.4)),
             "nostage1": ("w/o Stage I", (59.2, 61.4, 2.2)), "noshape": ("w/o reward shaping", (60.0, 62.6, 2.6)),
             "star_stage2": ("STaR instead of REINFORCE in Stage II", (56.2, 58.4, 2.2))}
SFT = ("star", "star_plus", "pair_sft", "pair_sft_plus")
RULE = ("Verdicts: a comparison a > b holds when a − b exceeds sd(a) + sd(b), the seeds' spread (a stated constant has "
        "sd 0; a ≥ b also holds at equality), fails when b − a exceeds it, and is within noise otherwise. A finding is "
        "reproduced when all its comparisons hold, not reproduced when any fails, and within noise otherwise.")


def mean_sd(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0  # sample sd (n-1); 0 for one seed


def fmt(ms, signed=False):
    return f"{ms[0]:+.1f} ± {ms[1]:.1f}" if signed else f"{ms[0]:.1f} ± {ms[1]:.1f}"


def stats(runs):
    """{(model, key): (mean, sd)} in points over seeds, every metric; no_edit: the share of y2 identical to y1."""
    ms = [m for m in runs[0] if all(m in r for r in runs)]
    return {**{(m, "no_edit"): mean_sd([100 * r[m]["edit_ratios"].count(0) / len(r[m]["edit_ratios"]) for r in runs]) for m in ms},
            **{(m, k): mean_sd([100 * r[m][k] for r in runs]) for m in ms for k, x in runs[0][m].items()
               if isinstance(x, float) and all(k in r[m] for r in runs)}}


def per_seed(runs, model):
    return " / ".join(f"{100 * r[model]['delta']:+.1f}" for r in runs)


def vs(a, b, ge=False):
    """Compare (mean, sd) a with b: 1 if a > b (a >= b with ge) by more than sd(a) + sd(b), -1 if b > a by more, else 0."""
    return 1 if (d := a[0] - b[0]) > (m := a[1] + b[1]) or (ge and d >= m) else -1 if -d > m else 0


def table(header, rows):
    return [f"| {' | '.join(header)} |", "|---" * len(header) + "|"] + [f"| {' | '.join(cs)} |" for cs in rows]


def load(dirs, name="results.json"):
    if missing := [d for d in dirs if not os.path.exists(os.path.join(d, name))]:
        sys.exit(f"report.py: {missing[0]}/{name} not found (run train_small.sh / reproduce.sh with that output first)")
    return [{row["model"]: row for row in json.loads(pathlib.Path(d, name).read_text())} for d in dirs]


def small_table(dirs):
    runs = load(dirs)
    T, models = stats(runs), [m for m in runs[0] if all(m in r for r in runs)]
    print("\n".join(table(["model"] + list(COLUMNS.values()) + ["Δ per seed"], [
        [{"stage1": "Stage I", "score": "SCoRe (Stage II)"}.get(m, m)] + [fmt(T[m, k], k == "delta") for k in COLUMNS]
        + [per_seed(runs, m)] for m in models]) + [
        "", f"{len(runs)} seeds, {runs[0][models[0]]['n']} held-out test problems each, greedy; points (%), mean ± sd"]))


def findings(T, top):
    """F1-F7 as Markdown lines (verdict, claim, rule, numbers); T: stats(); top: SCoRe's scaling (K, parallel, sequential)."""
    (b, bt1, bt2), (sd, c2i), (own, fixed), (m1, m2, md) = ([T[m, k] for k in ks.split()] for m, ks in (
        ("base", "delta acc_t1 acc_t2"), ("score", "delta delta_c_to_i"), ("pair_sft", "fix_rate fix_rate_fixed"),
        ("mtrl", "acc_t1 acc_t2 delta")))
    ne = {m: T[m, "no_edit"] for m in SFT + ("base", "score") if (m, "no_edit") in T}  # an older report: no D+ Pair-SFT
    deltas = {m: T[m, "delta"] for m in ("base", *SFT, "mtrl") if (m, "delta") in T}  # Table 2's methods, multi-turn RL
    abl = {m: T[m, "delta"] for m in ABLATIONS}
    out = [("F1", "the base model does not self-correct (rule: Δ ≤ 0)", vs((0, 0), b, True), f"base Δ {fmt(b, True)}"),
           ("F2", "SFT methods collapse to few edits: they leave y1 unedited more often than SCoRe (rule: every SFT method's "
            "no-edit share above SCoRe's)", min(vs(ne[m], ne["score"]) for m in SFT if m in ne),
            ", ".join(f"{m} {fmt(ne[m])}%" for m in ne) + " of second attempts identical to the first"),
           ("F3", "Pair-SFT corrects the base model's first attempts better than its own (distribution shift; rule: the "
            "correction rate on the base's y1 above that on its own y1)", vs(fixed, own),
            f"Pair-SFT fixes {fmt(fixed)}% of the base model's wrong first attempts, {fmt(own)}% of its own"),
           ("F4", "multi-turn RL improves both attempts but not Δ (rule: its t1 and t2 above the base's, its Δ below SCoRe's)",
            min(vs(m1, bt1), vs(m2, bt2), vs(sd, md)), f"multi-turn RL t1 {fmt(m1)} / t2 {fmt(m2)} / Δ {fmt(md, True)} vs "
            f"base {fmt(bt1)} / {fmt(bt2)}; SCoRe Δ {fmt(sd, True)}"),
           ("F5", "SCoRe has the largest Δ of the methods, with a small Δc→i (rule: Δ above every Table 2 method's and "
            "multi-turn RL's, Δc→i ≤ 2)", min([vs(sd, d) for d in deltas.values()] + [vs((2, 0), c2i, True)]),
            f"SCoRe Δ {fmt(sd, True)}, Δc→i {fmt(c2i)}; others: " + ", ".join(f"{m} {fmt(d, True)}" for m, d in deltas.items())),
           ("F6", "the ablations: every component helps (rule: SCoRe's Δ above every ablation's, single-turn RL's below "
            "every other; paper: SCoRe 4.4 > no shaping 2.6 > no Stage I 2.2 = STaR-Stage II 2.2 > single −2.4)",
            min([vs(abl["score"], x) for m, x in abl.items() if m != "score"] + [vs(x, abl["single"]) for m, x in abl.items()
                 if m != "single"]), " > ".join(f"{m} {fmt(abl[m], True)}" for m in sorted(abl, key=lambda m: -abl[m][0])))]
    if top:  # (K, parallel, sequential)
        out.append(("F7", f"sequential + parallel beats parallel at an equal budget (rule: SCoRe at K = {top[0]}, sequential "
                    f"above parallel)", vs(top[2], top[1]), f"SCoRe, K = {top[0]}: majority of {top[0]} first attempts "
                    f"{fmt(top[1])}%, majority of {top[0] // 2} self-corrected attempts {fmt(top[2])}%"))
    return [f"- **{fid} {('not reproduced', 'within noise', 'reproduced')[v + 1]}**: {claim}. {numbers}."
            for fid, claim, v, numbers in out]


def judge(path):
    """F1-F7 by today's rules from the numbers in an existing REPORT.md (see the module docstring)."""
    text, T, header = pathlib.Path(path).read_text(), {}, []
    titles = {t: m for m, (t, _) in {**PAPER, **ABLATIONS}.items()} | {"Self-Refine (base + instruction)": "base"}
    keys = {t: k for k, t in COLUMNS.items()} | {"no edit": "no_edit"}
    for cs in [[c.strip() for c in ln.strip("| ").split("|")] for ln in text.splitlines() if ln.startswith("|")]:
        header = cs if cs[0] in ("method", "model") else header
        for h, c in zip(header, cs):
            if cs[0] in titles and h in keys and (x := re.fullmatch(r"([-+]?[\d.]+)(?: ± ([\d.]+))?", c)):
                T[titles[cs[0]], keys[h]] = (float(x[1]), float(x[2]) if x[2] else T[titles[cs[0]], "changed"][1])
    f = {ln[4:6]: [(float(a), float(b)) for a, b in re.findall(r"([\d.]+) ± ([\d.]+)%", ln)] for ln in text.splitlines()
         if ln.startswith("- **F")}  # F3: Pair-SFT's fix rates on the base's y1, on its own; F7: parallel, sequential
    T["pair_sft", "fix_rate_fixed"], T["pair_sft", "fix_rate"] = f["F3"]
    print("\n".join([RULE, ""] + findings(T, (K := re.search(r"SCoRe, K = (\d+):", text)) and (int(K[1]), *f["F7"]))))


def plots(out_dir, runs, T, curves, scal):
    import matplotlib.pyplot as plt
    plt.switch_backend("Agg")
    figs = {}  # file name -> figure
    # Fig. 6: validation accuracy over training steps, SCoRe (Stage I then Stage II) vs multi-turn RL
    figs["fig6_curves.png"], axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, layout="tight")
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
    figs["fig4_edit_hist.png"], axes = plt.subplots(1, 7, figsize=(17, 3), sharey=True, layout="tight")
    for ax, m in zip(axes, ("base",) + SFT + ("mtrl", "score")):  # ratios lie in [0, 1]: an empty y2 gives 1
        ax.hist([x for r in runs for x in r[m]["edit_ratios"]], bins=20, range=(0, 1), color="tab:purple")
        ax.set_title(PAPER[m][0].split(" (")[0], fontsize=9)
        ax.set_xlabel("edit distance ratio")
    axes[0].set_ylabel(f"test problems ({len(runs)} seeds)")
    # Fig. 5: correction rate on the base model's first attempts vs on the model's own
    models = ("pair_sft", "pair_sft_plus", "star", "star_plus", "mtrl", "score")
    figs["fig5_shift.png"], ax = plt.subplots(figsize=(7, 3.5), layout="tight")
    for j, (key, label) in enumerate((("fix_rate_fixed", "base model's first attempts"), ("fix_rate", "its own first attempts"))):
        ms = [T[m, key] for m in models]
        ax.bar([i + 0.38 * j for i in range(len(models))], [x[0] for x in ms], 0.38, yerr=[x[1] for x in ms], label=label)
    ax.set(xticks=[i + 0.19 for i in range(len(models))], xticklabels=models, ylabel="wrong first attempts fixed by y2, %")
    ax.legend()
    if scal:  # section 6.3: accuracy at an equal sample budget
        figs["scaling.png"], ax = plt.subplots(figsize=(6, 3.5), layout="tight")
        for m, color in [x for x in (("score", "tab:red"), ("mtrl", "tab:green"), ("base", "tab:gray")) if x[0] in scal[0]]:
            for k, ls in (("parallel", "--"), ("sequential", "-")):  # one point per budget, the mean over seeds
                ax.plot([x["budget"] for x in scal[0][m]["scaling"]], [statistics.mean(100 * x[k] for x in xs) for xs in
                        zip(*(r[m]["scaling"] for r in scal))], ls, color=color, marker="o", label=f"{m}, {k}")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="samples per problem (budget)", ylabel="majority-vote accuracy, %")
        ax.legend(fontsize=7)
    for name, fig in figs.items():
        fig.savefig(os.path.join(out_dir, name), dpi=90)
    plt.close("all")
    return list(figs)


def small_plot(d):
    """train_small.sh's picture: the test table as bars (left), the training rewards over the RL steps (right)."""
    import matplotlib.pyplot as plt
    plt.switch_backend("Agg")
    res, rows = load([d])[0], [json.loads(line) for line in pathlib.Path(d, "metrics.jsonl").read_text().splitlines()]
    models = [m for m in ("base", "stage1", "score") if m in res]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8), layout="tight", gridspec_kw={"width_ratios": [2, 3]})
    for j, (key, color) in enumerate((("acc_t1", "tab:blue"), ("acc_t2", "tab:red"))):
        xs, ys = [i + 0.4 * j - 0.2 for i in range(len(models))], [100 * res[m][key] for m in models]
        ax.bar(xs, ys, 0.4, color=color, label=COLUMNS[key] + (" (first attempt)", " (after the instruction)")[j])
        for x, y in zip(xs, ys):
            ax.text(x, y + 1, f"{y:.0f}", ha="center", fontsize=8)
    ax.set(xticks=range(len(models)), xticklabels=[{"stage1": "Stage I", "score": "SCoRe (Stage II)"}.get(m, m)
           for m in models], ylim=(0, 119), ylabel="greedy accuracy, %",
           title=f"test: {res[models[0]]['n']} held-out problems, greedy")
    ax.legend(loc="upper center", ncols=2, fontsize=8)
    s1 = max((r["step"] for r in rows if r["name"] == "stage1"), default=0)  # Stage II's steps follow Stage I's
    for key, color in (("r1", "tab:blue"), ("r2", "tab:red")):
        pts = [(r["step"] + (s1 if r["name"] == "score" else 0), 100 * r[key]) for r in rows if r["name"] in ("stage1", "score")]
        w = 10  # a moving mean over 10 steps: one step is only 128 sampled attempts
        bx.plot([x for x, _ in pts[w - 1:]], [statistics.mean(y for _, y in pts[i - w + 1:i + 1]) for i in range(w - 1, len(pts))],
                color=color, label=f"{key}: y{key[1]}'s reward (mean of 10 steps)")
    bx.axvline(s1, color="gray", ls=":", lw=1)
    bx.text(s1 / 2, 2, "Stage I (Eq. 3)", ha="center", color="gray")
    bx.text(s1 * 1.5, 2, "Stage II (Eq. 4)", ha="center", color="gray")
    bx.set(xlabel="RL step", ylabel="% of sampled attempts correct", ylim=(0, 100), title="training: sampled attempts, temperature 1")
    bx.legend(loc="upper left", fontsize=8)
    fig.savefig(path := os.path.join(d, "train_small.png"), dpi=80)
    print(f"wrote {path}")


def repro_report(out_dir, dirs):
    runs = load(dirs)
    scal = load(dirs, "scaling.json") if all(os.path.exists(os.path.join(d, "scaling.json")) for d in dirs) else []
    curves = [[json.loads(line) for line in pathlib.Path(d, "metrics.jsonl").read_text().splitlines()] for d in dirs]
    T, top, paper_cell = stats(runs), None, lambda paper: " / ".join(f"{x:g}" for x in paper) if paper else "—"  # noqa: E731
    task = os.environ.get("TASK", "toy_math")  # reproduce.sh exports it; a regime is named in the title
    L = [f"# Reproduction on the toy math task{task[8:] and ', regime ' + task[9:]} ({len(runs)} seeds, "
         f"{runs[0]['base']['n']} held-out test problems, greedy)",
         "", "Ours: mean ± sd over seeds, points (%). Paper: Gemini 1.5 Flash on MATH500 (Tables 2 and 4); a different "
         "model and task, beside ours for the pattern, not the level.", ""]
    L += table(["method"] + list(COLUMNS.values()) + ["no edit", "paper t1 / t2 / Δ / Δi→c / Δc→i"], [[name] + (
        [fmt(T[m, k], k == "delta") for k in [*COLUMNS, "no_edit"]] if (m, "delta") in T else ["n/a"] * (len(COLUMNS) + 1)) + [
        paper_cell(paper)] for m, (name, paper) in PAPER.items()])
    keys = ("acc_t1", "acc_t2", "delta", "delta_c_to_i")
    L += ["", "Ablations (paper Table 4):", ""] + table(["method"] + [COLUMNS[k] for k in keys] + ["paper t1 / t2 / Δ"], [
        [name] + [fmt(T[m, k], k == "delta") for k in keys] + [paper_cell(paper)] for m, (name, paper) in ABLATIONS.items()])
    L += ["", "Per-seed Δ: " + "; ".join(f"{m} {per_seed(runs, m)}" for m in {**PAPER, **ABLATIONS} if (m, "delta") in T), ""]
    if scal:
        sc = scal[0]["score"]["scaling"]
        L += [f"Inference-time scaling (section 6.3; {sc[0].get('n', '?')} test problems, temperature 0.7, majority vote): "
              "accuracy at a budget of K samples, K parallel first attempts vs K/2 first attempts each self-corrected once.", ""]
        L += table(["model"] + [f"K={x['budget']} parallel / sequential" for x in sc], [[m] + [
            " / ".join(f"{statistics.mean(100 * x[k] for x in xs):.1f}" for k in ("parallel", "sequential"))  # over seeds
            for xs in zip(*(r[m]["scaling"] for r in scal))] for m in ("base", "mtrl", "score") if m in scal[0]]) + [""]
        top = (sc[-1]["budget"], *(mean_sd([100 * r["score"]["scaling"][-1][k] for r in scal])
                                   for k in ("parallel", "sequential")))  # SCoRe at the largest budget, for F7
    L += ["## The paper's findings", "", RULE, ""] + findings(T, top)
    try:
        L += [""] + [f"![{f}]({f})" for f in plots(out_dir, runs, T, curves, scal)]
    except ImportError:
        L += ["", "(no plots: matplotlib is not installed)"]
    pathlib.Path(out_dir, "REPORT.md").write_text(text := "\n".join(L) + "\n")
    print(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--repro"] and len(sys.argv) > 3:
        repro_report(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:2] == ["--plot"] and len(sys.argv) == 3:
        small_plot(sys.argv[2])
    elif sys.argv[1:2] == ["--judge"] and len(sys.argv) == 3:
        judge(sys.argv[2])
    elif sys.argv[1:] and sys.argv[1] not in ("--repro", "--judge", "--plot"):
        small_table(sys.argv[1:])
    else:
        sys.exit(__doc__)
