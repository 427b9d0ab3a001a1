#!/usr/bin/env bash
# train_small.sh: the whole SCoRe story on a toy task, from scratch, on a CPU in minutes:
#   base model (imperfect-solver corpus) -> Stage I (Eq. 3) -> Stage II (Eq. 4) -> greedy test-set table.
# Writes out_small/: checkpoints ({base,stage1,score}.pt, *_last.pt), metrics.jsonl, results.json, train_small.png
# (and a hidden .train_small.lock, this script's one-writer lock).
# Variables: SEED (default 0), OUT (default out_small), DEVICE (default: autodetect), TASK (toy_math | toy_code).
# Installs the requirements if torch/tiktoken/tqdm/numpy/safetensors are missing.
set -euo pipefail
cd "$(dirname "$0")"
SEED="${SEED:-0}"; OUT="${OUT:-out_small}"; DEVICE="${DEVICE:-}"; TASK="${TASK:-toy_math}"
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch, numpy, tiktoken, tqdm, safetensors" 2>/dev/null; then
  "$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q torch==2.13.0
  "$PY" -m pip install -q -r requirements.txt
fi
common=(--task "$TASK" --seed "$SEED" --out "$OUT" ${DEVICE:+--device "$DEVICE"})
# toy code: programs + trace are longer than sums; a 2-layer base and a 50-step Stage II at lr 2.5e-5 keep it
# within 10 minutes; Stage II at 1e-4 lost Stage I's correction on validation, so there Stage I's model (step 0)
# stays a candidate (--val_start; docs/reproduce.md's screen)
ctx=(); s2=(--steps 100 --lr 1e-4)
if [ "$TASK" = toy_code ]; then
  ctx=(--block_size 160 --n_layer 2); s2=(--steps 50 --lr 2.5e-5 --val_start); common+=(--max_new 48)
fi
mkdir -p "$OUT"
exec 9>>"$OUT/.train_small.lock"  # held while this script (or a run it started) lives: one writer per OUT
"$PY" runs.py 9 train_small.sh "$OUT"  # refuses if another script or run writes into OUT, before the rm below
start=$(date +%s); phases=""
stage() {  # one score.py stage, timed: the per-phase times are printed at the end (docs/speed.md)
  local t=$(date +%s); "$PY" score.py --stage "$@"; phases+="$1 $(( $(date +%s) - t )) s, "
}
rm -f "$OUT/metrics.jsonl"
stage base   "${common[@]}" --steps 300 --batch 128 --lr 3e-3 --warmup 30 "${ctx[@]}"
# Toy departures from the paper's defaults (score.py keeps the paper's values as its defaults), chosen on the
# validation split; see score.py's docstring:
#   --lr 2e-4 --steps 100   Stage I: a tiny model and a minutes budget, not 5e-6 and thousands of steps (departure 1)
#   --beta2 1.0             Stage I: holds the greedy first attempt at the base model (departure 4)
#   stage2 --lr 1e-4        Stage II starts where Stage I already corrects; 2e-4 there lost more of acc@t2
#                           (validation, seed 0, 500 problems: t2 80.6% vs 84.4% at 1e-4 after 100 steps)
rl=(--batch 32 --k 4 --steps 100 --temperature 1.0)
stage stage1 "${common[@]}" --init "$OUT/base.pt"   "${rl[@]}" --lr 2e-4 --beta2 1.0
#   stage2 --eval_every 25  keep the Stage II step with the best validation acc@t2 (departure 3)
stage stage2 "${common[@]}" --init "$OUT/stage1.pt" "${rl[@]}" "${s2[@]}" --eval_every 25 --n_val 500
stage eval   "${common[@]}" --evaluate base,stage1,score
# the picture: report.py --plot (matplotlib, installed here if missing; a few seconds)
"$PY" -c "import matplotlib" 2>/dev/null || "$PY" -m pip install -q matplotlib || true
"$PY" report.py --plot "$OUT" || echo "train_small.sh: no plot (matplotlib is missing)"
echo "train_small.sh: done in $(( $(date +%s) - start )) s (${phases%, }). The table: above, and $OUT/results.json" \
  "(python report.py $OUT prints it again); the plot: $OUT/train_small.png"
