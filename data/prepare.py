"""data/prepare.py: fetch the real evaluation sets into one folder, from their official URLs or, offline,
from a local copy, then check each file with data/loaders.py and print what was written.

    OUT/math500/test.jsonl            openai/prm800k math_splits/test.jsonl (MATH500)
    OUT/gsm8k/test.jsonl              openai/grade-school-math test split
    OUT/humaneval/HumanEval.jsonl.gz  openai/human-eval
    OUT/mbpp/sanitized-mbpp.json      google-research/mbpp, sanitized

Run:  python data/prepare.py --out data/raw [--dataset all|math500|gsm8k|humaneval|mbpp] [--from DIR]
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


def prepare(out, datasets, src=None):
    for name in datasets:
        rel, url, load, expected = SOURCES[name]
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
    ap = argparse.ArgumentParser(description="fetch MATH500, GSM8K, HumanEval and MBPP (sanitized)")
    ap.add_argument("--out", required=True, help="folder to write into, e.g. data/raw")
    ap.add_argument("--dataset", default="all", choices=["all", *SOURCES])
    ap.add_argument("--from", dest="src", help="copy from this local folder instead of downloading")
    a = ap.parse_args()
    prepare(a.out, list(SOURCES) if a.dataset == "all" else [a.dataset], a.src)
