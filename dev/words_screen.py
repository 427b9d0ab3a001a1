"""dev/words_screen.py: screen the word-problem families of data/real.py on VALIDATION (never test) with a real
checkpoint: the base model's greedy two-turn metrics per family, to pick the task (docs/real-model.md).
    OMP_NUM_THREADS=1 python dev/words_screen.py --init smollm2 --n 64 --out figures/words/screen.json
"""
import argparse, json, os, sys, time  # noqa: E401
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import score  # noqa: E402
from data import real  # noqa: E402
from runs import load_model  # noqa: E402
from tokenizer import from_description  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--init", required=True, help="Hugging Face directory")
ap.add_argument("--families", default=",".join(real.WORDS), help="comma-separated data/real.py WORDS families")
ap.add_argument("--n", type=int, default=64, help="validation problems per family")
ap.add_argument("--max_new", type=int, default=64, help="max tokens per attempt")
ap.add_argument("--out", default="", help="write the rows as JSON here")
a = ap.parse_args()
model, state = load_model(a.init)
tok = from_description(state["tokenizer"])
rows = []
for fam in a.families.split(","):
    qs = [{**r, "prompt": tok.chat_prompt(f"{real.MATH_PROMPT}\n\nProblem:\n{r['problem']}"), "grader": "math"}
          for r in real.word_problems("val", a.n, fam)]
    task = SimpleNamespace(instruction=tok.chat_followup(real.MATH_INSTRUCTION))
    t = time.time()
    row = score.evaluate(model, tok, task, qs, a.max_new, batch=16)
    rows.append({"family": fam, **row, "seconds": round(time.time() - t)})
    print(json.dumps(rows[-1]), flush=True)
if a.out:
    json.dump(rows, open(a.out, "w"), indent=1)
