#!/usr/bin/env bash
# dev/screen.sh REGIME: issue 19's cheap screen of one toy_math regime (data/toy_math.py REGIMES) on seed 0 at half
# reproduce.sh's RL and fine-tuning budget: the base model, SCoRe (Stage I, Stage II) and the four fine-tuning
# baselines, each scored greedily on 500 *validation* problems (dev/screen.py); the test split is never read.
# REUSE_BASE=1 keeps an existing $OUT/base.pt. Writes $OUT/screen.json and prints the table. Two jobs at a time, one thread each. Time: ~10 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
R="$1"; OUT="${OUT:-out_screen/$R}"; PY="${PYTHON:-python3}"; SEED="${SEED:-0}"
T=toy_math; [ "$R" != default ] && T="toy_math_$R"
B=300; S=${S:-40}; A=${A:-20480}; F=${F:-80}; V=200  # S A F: override for a full-budget screen
export OMP_NUM_THREADS=1 B S A F V
mkdir -p "$OUT"; rm -f "$OUT/metrics.jsonl"
c=(--task "$T" --seed "$SEED" --out "$OUT")
rl=("${c[@]}" --batch 32 --k 4 --temperature 1.0 --eval_every $((S / 4)) --n_val $V)
start=$(date +%s)
if [ "${REUSE_BASE:-0}" = 1 ] && [ -f "$OUT/base.pt" ]; then echo "screen $R: reusing $OUT/base.pt"; else
  "$PY" score.py --stage base "${c[@]}" --steps $B --batch 128 --lr 3e-3 --warmup $((B / 10)) --n_val $V > "$OUT/base.log" 2>&1
  echo "screen $R: base done at $(( $(date +%s) - start )) s"; fi
run() {
  case "$1" in
    score) "$PY" score.py --stage stage1 --init "$OUT/base.pt" "${rl[@]}" --steps $S --lr 2e-4 --beta2 1.0 &&
           "$PY" score.py --stage stage2 --init "$OUT/stage1.pt" "${rl[@]}" --steps $S --lr 1e-4 --name score ;;
    *) "$PY" baselines.py --method "$1" --init "$OUT/base.pt" "${c[@]}" --n_val $V --attempts $A --sft_steps $F ;;
  esac > "$OUT/$1.log" 2>&1 && echo "screen $R: $1 done at $(( $(date +%s) - start )) s"
}
export -f run; export PY OUT start R; export c_s="${c[*]}" rl_s="${rl[*]}"
for m in score star star_plus pair_sft pair_sft_plus; do echo "$m"; done |
  xargs -P 2 -I{} bash -c 'c=($c_s); rl=($rl_s); run {}'
"$PY" dev/screen.py --task "$T" --out "$OUT" --names base,stage1,score,star,star_plus,pair_sft,pair_sft_plus
echo "screen $R: done in $(( $(date +%s) - start )) s"
