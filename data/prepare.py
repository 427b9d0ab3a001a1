"""data/prepare.py: fetch the real evaluation sets into one folder, from their official URLs or, offline,
from a local copy, then check each file with data/loaders.py and print what was written.

    OUT/math500/test.jsonl            openai/prm800k math_splits/test.jsonl (MATH500)
    OUT/gsm8k/test.jsonl              openai/grade-school-math test split
    OUT/humaneval/HumanEval.jsonl.gz  openai/human-eval
    OUT/mbpp/sanitized-mbpp.json      google-research/mbpp, sanitized
  and the training sets of score.py's real tasks (--dataset train; MBPP trains on the file above):
    OUT/math/train.jsonl              openai/prm800k math_splits/train.jsonl: the 12,000 MATH problems not in
                                      MATH500 (MATH train + the rest of MATH test), the usual MATH500 companion
    OUT/gsm8k/train.jsonl             openai/grade-school-math train split

Run:  python data/prepare.py --out data/raw [--dataset all|train|math500|gsm8k|humaneval|mbpp|math_train|gsm8k_train]
      [--from DIR]      (all: the four evaluation sets; train: the two training sets)
With --from DIR the same relative paths are copied from DIR (e.g. ../shared/realdata) and no network is
used; without it a failed download stops with a message naming --from. Licenses: see each source.
"""
import argparse
import os
import shutil
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run as a script, too
from data import loaders  # noqa: E402

RAW = "https://raw.githubusercontent.com/"
SOURCES = {  # dataset -> (relative path, official URL, loader, expected count)
    "math500": ("math500/test.jsonl", RAW + "openai/prm800k/main/prm800k/math_splits/test.jsonl", loaders.load_math, 500),
    "gsm8k": ("gsm8k/test.jsonl", RAW + "openai/grade-school-math/master/grade_school_math/data/test.jsonl",
              loaders.load_gsm8k, 1319),
    "humaneval": ("humaneval/HumanEval.jsonl.gz", RAW + "openai/human-eval/master/data/HumanEval.jsonl.gz",
                  loaders.load_humaneval, 164),
    "mbpp": ("mbpp/sanitized-mbpp.json", RAW + "google-research/google-research/master/mbpp/sanitized-mbpp.json",
             loaders.load_mbpp, 427),
}
TRAIN_SOURCES = {
    "math_train": ("math/train.jsonl", RAW + "openai/prm800k/main/prm800k/math_splits/train.jsonl",
                   loaders.load_math, 12000),
    "gsm8k_train": ("gsm8k/train.jsonl", RAW + "openai/grade-school-math/master/grade_school_math/data/train.jsonl",
                    loaders.load_gsm8k, 7473),
}


def prepare(out, datasets, src=None):
    for name in datasets:
        rel, url, load, expected = {**SOURCES, **TRAIN_SOURCES}[name]
        dst = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if src:
            if not os.path.isfile(os.path.join(src, rel)):
                raise SystemExit(f"{name}: {os.path.join(src, rel)} not found in --from {src}")
            shutil.copyfile(os.path.join(src, rel), dst)
        else:
            try:
                with urllib.request.urlopen(url, timeout=60) as r, open(dst + ".part", "wb") as f:
                    shutil.copyfileobj(r, f)
                os.replace(dst + ".part", dst)  # never leave a truncated file under the real name
            except OSError as e:
                raise SystemExit(f"{name}: could not download {url} ({e}). Offline? Copy a local mirror "
                                 f"with --from DIR (DIR/{rel})") from None
        n = len(load(dst))
        note = "" if n == expected else f" (expected {expected})"
        print(f"wrote {dst}: {n} records{note}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="fetch MATH500, GSM8K, HumanEval, MBPP (sanitized); or training sets")
    ap.add_argument("--out", required=True, help="folder to write into, e.g. data/raw")
    ap.add_argument("--dataset", default="all", choices=["all", "train", *SOURCES, *TRAIN_SOURCES])
    ap.add_argument("--from", dest="src", help="copy from this local folder instead of downloading")
    a = ap.parse_args()
    prepare(a.out, {"all": list(SOURCES), "train": list(TRAIN_SOURCES)}.get(a.dataset, [a.dataset]), a.src)
