"""data/loaders.py: the real evaluation sets, read from their public files into lists of plain dicts.

  load_math(path)       MATH / MATH500 jsonl: problem, solution, answer (if a record has no answer: the
                        content of the last \\boxed{} in its solution)
  load_gsm8k(path)      GSM8K jsonl: question, answer (a worked solution ending "#### n"). Returned as
                        {problem, question, solution (the original answer text), answer (n, commas removed)}
                        so that math records of both sets have `problem` and `answer`.
  load_humaneval(path)  HumanEval .jsonl or .jsonl.gz: task_id, prompt, canonical_solution, test, entry_point
  load_mbpp(path)       sanitized MBPP .json (one list): task_id, prompt, code, test_imports, test_list

Errors are explicit: FileNotFoundError naming the path; ValueError naming the file, the line (jsonl) or
record index (json) and the missing field. Get the files with `python data/prepare.py --out data/raw`.
"""
import gzip
import json
import os


def _records(path):
    """(location, record) pairs of a .jsonl, .jsonl.gz or .json (a list) file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such data file: {path} (see data/prepare.py)")
    with (gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")) as f:
        if path.endswith(".json"):
            data = json.load(f)
            if not isinstance(data, list):
                raise ValueError(f"{path}: expected a JSON list of records")
            return [(f"{path}: record {i}", r) for i, r in enumerate(data)]
        out = []
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append((f"{path}:{n}", json.loads(line)))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not JSON ({e})") from None
        return out


def _need(where, rec, fields):
    for k in fields:
        if not isinstance(rec, dict) or k not in rec:
            raise ValueError(f"{where}: missing field {k!r}")
    return rec


def _last_boxed(text):
    """The content of the last \\boxed{...} in text (nested braces), or None."""
    i = text.rfind("\\boxed{")
    if i < 0:
        return None
    depth = 0
    for j in range(i + 6, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 7:j]
    return None


def load_math(path):
    out = []
    for where, r in _records(path):
        _need(where, r, ["problem", "solution"])
        if r.get("answer") is None:
            r["answer"] = _last_boxed(r["solution"])
            if r["answer"] is None:
                raise ValueError(f"{where}: missing field 'answer' and no \\boxed{{}} in 'solution'")
        out.append(r)
    return out


def load_gsm8k(path):
    out = []
    for where, r in _records(path):
        _need(where, r, ["question", "answer"])
        if "####" not in r["answer"]:
            raise ValueError(f"{where}: field 'answer' has no '#### n' line")
        gold = r["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        out.append({"problem": r["question"], "question": r["question"], "solution": r["answer"], "answer": gold})
    return out


def load_humaneval(path):
    return [_need(w, r, ["task_id", "prompt", "canonical_solution", "test", "entry_point"]) for w, r in _records(path)]


def load_mbpp(path):
    return [_need(w, r, ["task_id", "prompt", "code", "test_imports", "test_list"]) for w, r in _records(path)]
