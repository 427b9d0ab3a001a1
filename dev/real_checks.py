"""dev/real_checks.py: two checks of the real-model path against transformers, on the CPU (docs/real-model.md).
  --samples FILE --hf DIR [--n N]: the greedy first attempts an eval wrote to samples.jsonl (rows of model DIR)
      against transformers' greedy generate on the same prompt text, token for token, up to --max_new tokens.
  --export CKPT.pt: hf.py's export of our checkpoint, loaded by transformers: max |logit diff| on real prompts.
    OMP_NUM_THREADS=1 python dev/real_checks.py --samples out/samples.jsonl --hf smollm2 --n 20
    OMP_NUM_THREADS=1 python dev/real_checks.py --export out/stage1.pt
"""
import argparse, json, os, sys, tempfile  # noqa: E401

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import hf  # noqa: E402
from runs import load_checkpoint  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--samples", default="", help="an eval's samples.jsonl")
ap.add_argument("--hf", default="", help="the HF directory whose rows (model name = this path) are checked")
ap.add_argument("--n", type=int, default=20, help="rows to check")
ap.add_argument("--max_new", type=int, default=64, help="the eval's --max_new")
ap.add_argument("--export", default="", help="our .pt checkpoint to export and compare")
a = ap.parse_args()
if a.samples:
    rows = [r for r in map(json.loads, open(a.samples)) if r["model"] == a.hf][:a.n]
    tok, model = AutoTokenizer.from_pretrained(a.hf), AutoModelForCausalLM.from_pretrained(a.hf).eval()
    same = 0
    for r in rows:
        x = tok(r["prompt"], add_special_tokens=False, return_tensors="pt")
        y = model.generate(**x, max_new_tokens=a.max_new, do_sample=False)[0, x["input_ids"].shape[1]:]
        same += tok.decode(y, skip_special_tokens=True) == r["y1"]
    print(f"greedy y1 equal to transformers' generate: {same}/{len(rows)}")
if a.export:
    ours, _ = load_checkpoint(a.export)
    with tempfile.TemporaryDirectory() as d:
        hf.export(a.export, os.path.join(d, "hf"))
        theirs = AutoModelForCausalLM.from_pretrained(os.path.join(d, "hf")).eval()
        tok = AutoTokenizer.from_pretrained(os.path.join(d, "hf"))
        x = tok(["Tom has 7 apples. He buys 5 more apples.", "What is 1+1?"], return_tensors="pt", padding=True)
        with torch.no_grad():
            diff = (ours.eval()(x["input_ids"]) - theirs(x["input_ids"]).logits).abs()
        print(f"export of {a.export}: transformers logits max |diff| {diff.max().item():.2e} over {diff.numel()} logits")
