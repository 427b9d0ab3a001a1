#!/usr/bin/env bash
# reproduce.sh: the paper's comparison on the toy math task, from one command: every method x 3 seeds, all from
# one base model and on one sample budget, evaluated greedily on the held-out test split, then the report
# (Markdown table beside the paper's numbers, the findings, PNG plots) in $OUT/REPORT.md.
#
# Methods (paper Tables 2 and 4; what each one is: README "Reproducing the paper"):
#   base          the base model; with the correction instruction it is Self-Refine (prompting only)
#   star, star_plus, pair_sft     the fine-tuning baselines (baselines.py)
#   mtrl          multi-turn RL: Stage II's objective from the base model, no Stage I, no bonus (--alpha 0)
#   single        without multi-turn training: single-turn RL, Eq. 2 (score.py --stage single)
#   nostage1      without Stage I: Stage II with the bonus, from the base model
#   noshape       without reward shaping: Stage I, then Stage II with --alpha 0
#   star_stage2   STaR instead of REINFORCE in Stage II (baselines.py)
#   stage1, score SCoRe's Stage I and Stage II (train_small.sh's recipe)
# Budget, the same for every trained method: 200 RL steps x 32 prompts x k 4 = 25,600 two-turn episodes
# (51,200 sampled attempts); SCoRe spends 100 steps in each stage. The fine-tuning baselines sample 51,200
# attempts (STaR: 25,600 episodes over 3 iterations; Pair-SFT: 51,200 first attempts) and fine-tune for 200
# steps of 64 traces; star_stage2 replaces Stage II's 100 steps: 25,600 attempts, 100 steps. Single-turn RL
# samples 200 steps x 32 prompts x k 4 first attempts: the same episodes and updates, half the attempts.
# Checkpoints: every RL run and every STaR iteration is scored on 500 validation problems (every 25 steps)
# and keeps its best validation acc@t2 (score.py departure 3); the test split is read only by the final eval.
#
# Variables: OUT (default out_repro), SEEDS (default "0 1 2"), JOBS (parallel jobs, default 2 = the cores),
# QUICK=1 (a plumbing check in about a minute: every step count and problem count cut ~25-fold; numbers meaningless).
# Every job runs on one thread, so the figures do not depend on JOBS (float order does depend on threads).
# Needs matplotlib for the plots (installed here if missing; the table is written without it).
set -euo pipefail
cd "$(dirname "$0")"
OUT="${OUT:-out_repro}"; SEEDS="${SEEDS:-0 1 2}"; JOBS="${JOBS:-2}"
PY="${PYTHON:-python3}"
# step counts: base, RL steps per stage (SCoRe's two stages; the one-stage methods get 2x), sampled attempts,
# fine-tuning steps, validation and test problems
B=300; S=100; A=51200; F=200; V=500; T=1000; TS=500
[ "${QUICK:-0}" = 1 ] && { B=20; S=4; A=512; F=6; V=40; T=60; TS=20; }
export OMP_NUM_THREADS=1 PY OUT B S A F V T TS
if ! "$PY" -c "import torch, numpy, tiktoken, tqdm, safetensors" 2>/dev/null; then
  "$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q torch==2.13.0
  "$PY" -m pip install -q -r requirements.txt
fi
"$PY" -c "import matplotlib" 2>/dev/null || "$PY" -m pip install -q matplotlib || echo "reproduce.sh: no matplotlib, no plots"
start=$(date +%s)
mkdir -p "$OUT"
rm -f "$OUT"/seed*/metrics.jsonl "$OUT/metrics.jsonl"

# 1. the base model, once (train_small.sh's recipe, on 2 threads: nothing else runs yet): every method and seed
#    starts from it
OMP_NUM_THREADS=2 "$PY" score.py --stage base --seed 0 --out "$OUT" --steps $B --batch 128 --lr 3e-3 --warmup $((B / 10)) --n_val $V

# 2. the methods: three chains per seed (a chain's runs depend on each other), JOBS chains at a time, the
#    longest chains first
chain() {  # chain <a|b|c> <seed>
  local d="$OUT/seed$2" rl=(--seed "$2" --out "$OUT/seed$2" --batch 32 --k 4 --temperature 1.0 --eval_every $((S / 4)) --n_val $V)
  local base="$OUT/base.pt" bl=(--seed "$2" --out "$OUT/seed$2" --n_val $V)
  mkdir -p "$d"
  case "$1" in
    a) "$PY" score.py --stage stage1 --init "$base" "${rl[@]}" --steps $S --lr 2e-4 --beta2 1.0
       "$PY" score.py --stage stage2 --init "$d/stage1.pt" "${rl[@]}" --steps $S --lr 1e-4 --name score
       "$PY" score.py --stage stage2 --init "$d/stage1.pt" "${rl[@]}" --steps $S --lr 1e-4 --alpha 0 --name noshape
       "$PY" baselines.py --method star_stage2 --init "$d/stage1.pt" "${bl[@]}" --attempts $((A / 2)) --sft_steps $((F / 2)) ;;
    b) "$PY" score.py --stage stage2 --init "$base" "${rl[@]}" --steps $((2 * S)) --lr 1e-4 --alpha 0 --name mtrl
       "$PY" score.py --stage stage2 --init "$base" "${rl[@]}" --steps $((2 * S)) --lr 1e-4 --name nostage1 ;;
    c) "$PY" score.py --stage single --init "$base" "${rl[@]}" --steps $((2 * S)) --lr 1e-4
       "$PY" baselines.py --method star --init "$base" "${bl[@]}" --attempts $A --sft_steps $F
       "$PY" baselines.py --method star_plus --init "$base" "${bl[@]}" --attempts $A --sft_steps $F
       "$PY" baselines.py --method pair_sft --init "$base" "${bl[@]}" --attempts $A --sft_steps $F ;;
  esac > "$OUT/seed$2/chain_$1.log" 2>&1
  echo "reproduce.sh: chain $1 of seed $2 done at $(( $(date +%s) - start )) s"
}
export -f chain; export start
for c in c b a; do for s in $SEEDS; do echo "$c $s"; done; done | xargs -P "$JOBS" -L 1 bash -c 'set -euo pipefail; chain $0 $1'

# 3. held-out test evaluation per seed: the table (+ Fig. 5: every model correcting the base model's first
#    attempts) and the inference-scaling study (section 6.3, budgets 2..16, temperature 0.7, 500 problems)
evaluate() {  # evaluate <table|scaling> <seed>
  local models=base,stage1,score,noshape,nostage1,mtrl,single,star,star_plus,star_stage2,pair_sft
  cp -f "$OUT/base.pt" "$OUT/seed$2/base.pt"
  if [ "$1" = table ]; then
    "$PY" score.py --stage eval --seed "$2" --out "$OUT/seed$2" --evaluate "$models" --fixed_y1 base --n_test $T
  else
    "$PY" score.py --stage eval --seed "$2" --out "$OUT/seed$2" --evaluate base,score --scaling 16 --n_test $TS
  fi > "$OUT/seed$2/eval_$1.log" 2>&1
}
export -f evaluate
for s in $SEEDS; do echo "table $s"; echo "scaling $s"; done | xargs -P "$JOBS" -L 1 bash -c 'set -euo pipefail; evaluate $0 $1'

# 4. the report
"$PY" report.py --repro "$OUT" $(for s in $SEEDS; do echo "$OUT/seed$s"; done)
echo "reproduce.sh: done in $(( $(date +%s) - start )) s; report in $OUT/REPORT.md"
