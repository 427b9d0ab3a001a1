#!/usr/bin/env bash
# reproduce.sh: the paper's comparison on the toy math task, from one command: every method x 3 seeds, seed s
# from its own base model s, on one sample budget, evaluated greedily on the held-out test split, then the report
# (Markdown table beside the paper's numbers, the findings, PNG plots) in $OUT/REPORT.md.
#
# Methods (paper Tables 2 and 4; what each one is: docs/reproduce.md):
#   base          the base model (train_small.sh's recipe, --seed s), with the correction instruction: the paper's Base
#   star, star_plus, pair_sft, pair_sft_plus     the fine-tuning baselines (baselines.py; D and D+ each)
#   mtrl          multi-turn RL: Stage II's objective from the base model, no Stage I, no bonus (--alpha 0)
#   single        without multi-turn training: single-turn RL, Eq. 2 (score.py --stage single)
#   nostage1      without Stage I: Stage II with the bonus, from the base model
#   noshape       without reward shaping: Stage I, then Stage II with --alpha 0
#   star_stage2   STaR instead of REINFORCE in Stage II (baselines.py)
#   stage1, score SCoRe's Stage I and Stage II (train_small.sh's settings, 80 steps per stage)
# Budget, the same for every trained method: 160 RL steps x 32 prompts x k 4 = 20,480 two-turn episodes
# (40,960 sampled attempts); SCoRe spends 80 steps in each stage. The fine-tuning baselines sample 40,960
# attempts (STaR: 20,480 episodes over 3 iterations; Pair-SFT: 40,960 first attempts) and fine-tune for 160
# steps of 64 traces; star_stage2 replaces Stage II's 80 steps: 20,480 attempts, 80 steps. Single-turn RL
# samples 160 steps x 32 prompts x k 4 first attempts: the same episodes and updates, half the attempts.
# (train_small.sh runs 100 steps per stage; 80 kept the last run within an hour on a 2-core CPU.)
# Time: the last full run took 57:45 with one shared base model (2 threads, 141 s); the per-seed base models add
# about 3 x 140 core-seconds and pair_sft_plus about 3 x 160, so expect about 63 minutes on 2 cores.
# Checkpoints: every RL run and every STaR iteration is scored on 300 validation problems (RL: 4 times per
# stage) and keeps its best validation acc@t2 (score.py departure 3); the test split is read only by the evals.
#
# Variables: REGIME (a toy_math regime, data/toy_math.py REGIMES; default: the default toy), OUT (default out_repro,
# with a REGIME out_repro_<regime>), SEEDS (default "0 1 2"), JOBS (parallel jobs, default 2 = the cores),
# QUICK=1 (a plumbing check in about 6 minutes: every step count and problem count cut ~20-fold; numbers meaningless).
# Every job (the base models too) runs on one thread, so the figures do not depend on JOBS (float order does
# depend on threads).
# Needs matplotlib for the plots (installed here if missing; the table is written without it).
set -euo pipefail
cd "$(dirname "$0")"
REGIME="${REGIME:-default}"; TASK=toy_math; [ "$REGIME" != default ] && TASK="toy_math_$REGIME"
OUT="${OUT:-out_repro${TASK#toy_math}}"; SEEDS="${SEEDS:-0 1 2}"; JOBS="${JOBS:-2}"
PY="${PYTHON:-python3}"
# step counts: base, RL steps per stage (SCoRe's two stages; the one-stage methods get 2x), sampled attempts,
# fine-tuning steps, validation problems, test problems, test problems of the scaling study
B=300; S=80; A=40960; F=160; V=300; T=1000; TS=300
[ "${QUICK:-0}" = 1 ] && { B=20; S=4; A=512; F=6; V=40; T=60; TS=20; }
export OMP_NUM_THREADS=1 PY OUT B S A F V T TS TASK
if ! "$PY" -c "import torch, numpy, tiktoken, tqdm, safetensors" 2>/dev/null; then
  "$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q torch==2.13.0
  "$PY" -m pip install -q -r requirements.txt
fi
"$PY" -c "import sys; from data.toy_math import REGIMES as R; r = sys.argv[1]; r in R or sys.exit(
f'reproduce.sh: REGIME={r} is not a regime of data/toy_math.py (one of: {\", \".join(R)})')" "$REGIME"
"$PY" -c "import matplotlib" 2>/dev/null || "$PY" -m pip install -q matplotlib || echo "reproduce.sh: no matplotlib, no plots"
start=$(date +%s)
mkdir -p "$OUT"
exec 9>>"$OUT/.reproduce.lock"  # held while this script (or a job it started) lives: one writer per OUT
"$PY" runs.py 9 reproduce.sh "$OUT" "$OUT"/seed*  # refuses if another script or run writes there, before the rm
rm -f "$OUT"/seed*/metrics.jsonl "$OUT/metrics.jsonl" "$OUT"/seed*/*.done "$OUT"/seed*/*.failed
for s in $SEEDS; do mkdir -p "$OUT/seed$s"; done

# 1. every base model, training run and held-out test evaluation is one job; JOBS jobs run at a time, in the
#    order of the queue below. Seed s's base model (train_small.sh's recipe, --seed s) is $OUT/seed$s/base.pt;
#    every other job of seed s starts from it, so every sd covers the whole pipeline. A job that needs another's
#    checkpoint waits for its <name>.done marker (every job is queued after the jobs it needs, so a waiting
#    job's prerequisite is already running: no deadlock).
#    Evaluations: the table per seed (+ Fig. 5: every model correcting the base model's first attempts) and the
#    inference-scaling study (section 6.3, budgets 2..16, temperature 0.7).
job() {  # job <name> <seed>
  local d="$OUT/seed$2" t0 need=()
  local rl=(--task "$TASK" --seed "$2" --out "$d" --batch 32 --k 4 --temperature 1.0 --eval_every $((S / 4)) --n_val $V)
  local bl=(--task "$TASK" --seed "$2" --out "$d" --n_val $V) base="$d/base.pt"
  case "$1" in
    base) ;;
    score|noshape|star_stage2) need=(base stage1) ;;
    scaling) need=(base score) ;;
    table) need=(base stage1 score noshape nostage1 mtrl single star star_plus star_stage2 pair_sft pair_sft_plus) ;;
    *) need=(base) ;;
  esac
  for n in "${need[@]}"; do
    until [ -f "$d/$n.done" ]; do
      [ -f "$d/$n.failed" ] && { echo "reproduce.sh: $1 of seed $2 needs $n, which failed"; exit 1; }
      sleep 2
    done
  done
  t0=$(date +%s)
  if ! case "$1" in
    base)     "$PY" score.py --stage base --task "$TASK" --seed "$2" --out "$d" --steps $B --batch 128 --lr 3e-3 --warmup $((B / 10)) --n_val $V ;;
    stage1)   "$PY" score.py --stage stage1 --init "$base" "${rl[@]}" --steps $S --lr 2e-4 --beta2 1.0 ;;
    score)    "$PY" score.py --stage stage2 --init "$d/stage1.pt" "${rl[@]}" --steps $S --lr 1e-4 --name score ;;
    noshape)  "$PY" score.py --stage stage2 --init "$d/stage1.pt" "${rl[@]}" --steps $S --lr 1e-4 --alpha 0 --name noshape ;;
    mtrl)     "$PY" score.py --stage stage2 --init "$base" "${rl[@]}" --steps $((2 * S)) --lr 1e-4 --alpha 0 --name mtrl ;;
    nostage1) "$PY" score.py --stage stage2 --init "$base" "${rl[@]}" --steps $((2 * S)) --lr 1e-4 --name nostage1 ;;
    single)   "$PY" score.py --stage single --init "$base" "${rl[@]}" --steps $((2 * S)) --lr 1e-4 ;;
    star|star_plus|pair_sft|pair_sft_plus) "$PY" baselines.py --method "$1" --init "$base" "${bl[@]}" --attempts $A --sft_steps $F ;;
    star_stage2) "$PY" baselines.py --method star_stage2 --init "$d/stage1.pt" "${bl[@]}" --attempts $((A / 2)) --sft_steps $((F / 2)) ;;
    table)    "$PY" score.py --stage eval --task "$TASK" --seed "$2" --out "$d" --fixed_y1 base --n_test $T \
                --evaluate base,stage1,score,noshape,nostage1,mtrl,single,star,star_plus,star_stage2,pair_sft,pair_sft_plus ;;
    scaling)  "$PY" score.py --stage eval --task "$TASK" --seed "$2" --out "$d" --evaluate base,score --scaling 16 --n_test $TS ;;
  esac > "$d/$1.log" 2>&1; then
    touch "$d/$1.failed"; echo "reproduce.sh: $1 of seed $2 FAILED, see $d/$1.log"; exit 1
  fi
  touch "$d/$1.done"
  echo "reproduce.sh: $1 of seed $2 took $(( $(date +%s) - t0 )) s, done at $(( $(date +%s) - start )) s"
}
export -f job; export start
# the queue: prerequisites first, then the longest jobs, the short ones last to fill in
for j in base stage1 mtrl nostage1 score noshape star star_plus pair_sft pair_sft_plus single star_stage2 table scaling; do
  for s in $SEEDS; do echo "$j $s"; done
done | xargs -P "$JOBS" -L 1 bash -c 'set -euo pipefail; job $0 $1'

# 2. the report
"$PY" report.py --repro "$OUT" $(for s in $SEEDS; do echo "$OUT/seed$s"; done)
echo "reproduce.sh: done in $(( $(date +%s) - start )) s; report in $OUT/REPORT.md"
