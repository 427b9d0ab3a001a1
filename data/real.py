"""data/real.py: score.py's real tasks (optional: the toy path never imports math-verify or these files).

  math    RL on MATH train (PRM800K's 12k problems outside MATH500), eval on MATH500, graded by rewards.math_reward
  gsm8k   GSM8K train -> GSM8K test, the same prompts and grader
  mbpp    RL on sanitized MBPP with the standard 3-shot prompt (task ids 2-4 as the shots, never trained on),
          eval on HumanEval, graded in the sandbox
  words   generated one-step word problems ("Tom has 7 apples. He buys 5 more apples. ..."), a task a 135M model
          partly solves (docs/real-model.md: chosen on validation); MATH's prompt and grader. Its split is a hash
          of the problem text (test 30%, val 10%, train 60%), so no text is in two splits.
"val" is the 5% of the training file picked by a hash of each problem's text. Prompts are the paper's
(Appendix C); for an instruct checkpoint the problem and the instruction are user turns rendered by its own chat
template (tokenizer.HFTokenizer), so the sequence is the template's [user x, assistant y1, user p, assistant y2];
a checkpoint without a chat template gets plain text (HumanEval: the bare function).
Departure (ours; the paper gives the wording, not the layout): the math user turn is the instruction, a blank
line, "Problem:", the problem; MBPP's shots and question share one user turn; HumanEval's is "Complete the
following Python function." and the prompt in a ```python fence; the program graded is the reply's last ```
block (rewards.extract_code). Not checked against the paper's numbers.

Loaders return plain dicts and name the file, line and missing field on bad input (MATH: answer, else the
solution's last \\boxed{}; GSM8K: the number after "####"). Get the files (all: MATH500, GSM8K test, HumanEval,
sanitized MBPP; train: MATH train, GSM8K train; --from: copy a local mirror such as ../shared/realdata):
    python data/real.py --out data/raw [--dataset all|train|<name>] [--from DIR]
"""
import argparse, gzip, hashlib, json, os, random, shutil, sys, urllib.request  # noqa: E401
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run as a script, too
from rewards import extract_answer, extract_code, humaneval_reward, math_reward, mbpp_reward  # noqa: E402

MATH_PROMPT = ("You are a math expert. When you respond, respond only with the Solution of the final Problem, thinking "
               "step by step. At the end of the Solution, when you give your final answer, write it in the form "
               '"Final Answer: The final answer is $answer$. I hope it is correct."')
MATH_INSTRUCTION = ("There might be an error in the solution above because of lack of understanding of the question. "
                    "Please correct the error, if any, and rewrite the solution. Only output the final solution! At "
                    "the end of the Solution, when you give your final answer, write it in the form "
                    '"Final Answer: The final answer is $answer$. I hope it is correct."')
CODE_INSTRUCTION = ("There might be an error in the code above because of lack of understanding of the question. "
                    "Please correct the error, if any, and rewrite the solution. Only output the final correct "
                    "Python program!")
MBPP_SHOTS = (2, 3, 4)  # task ids of the standard 3-shot MBPP prompt; never trained on
FILES = {"math": ("math/train.jsonl", "math500/test.jsonl"), "gsm8k": ("gsm8k/train.jsonl", "gsm8k/test.jsonl"),
         "mbpp": ("mbpp/sanitized-mbpp.json", "humaneval/HumanEval.jsonl.gz")}  # task -> (train, test) under --data
RAW = "https://raw.githubusercontent.com/"
SOURCES = {  # dataset -> (path under --out, official URL, expected records)
    "math500": ("math500/test.jsonl", RAW + "openai/prm800k/main/prm800k/math_splits/test.jsonl", 500),
    "gsm8k": ("gsm8k/test.jsonl", RAW + "openai/grade-school-math/master/grade_school_math/data/test.jsonl", 1319),
    "humaneval": ("humaneval/HumanEval.jsonl.gz", RAW + "openai/human-eval/master/data/HumanEval.jsonl.gz", 164),
    "mbpp": ("mbpp/sanitized-mbpp.json", RAW + "google-research/google-research/master/mbpp/sanitized-mbpp.json", 427),
    "math_train": ("math/train.jsonl", RAW + "openai/prm800k/main/prm800k/math_splits/train.jsonl", 12000),
    "gsm8k_train": ("gsm8k/train.jsonl", RAW + "openai/grade-school-math/master/grade_school_math/data/train.jsonl", 7473),
}


def _records(path, fields):
    """Records of a .jsonl(.gz) or .json (a list) file, each checked to have `fields`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such data file: {path} (see python data/real.py --help)")
    with (gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8")) as f:
        if path.endswith(".json"):
            data = json.load(f)
            if not isinstance(data, list):
                raise ValueError(f"{path}: expected a JSON list of records")
            recs = [(f"{path}: record {i}", r) for i, r in enumerate(data)]
        else:
            recs = []
            for n, line in enumerate(f, 1):
                try:
                    recs += [(f"{path}:{n}", json.loads(line))] if line.strip() else []
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not JSON ({e})") from None
    for where, r in recs:
        missing = [k for k in fields if not isinstance(r, dict) or k not in r]
        if missing:
            raise ValueError(f"{where}: missing field {missing[0]!r}")
    return recs


def load_math(path):
    out = []
    for where, r in _records(path, ["problem", "solution"]):
        if r.get("answer") is None:
            r["answer"] = extract_answer(r["solution"][r["solution"].rfind("\\boxed{"):]) if "\\boxed{" in r["solution"] else None
            if r["answer"] is None:
                raise ValueError(f"{where}: missing field 'answer' and no \\boxed{{}} in 'solution'")
        out.append(r)
    return out


def load_gsm8k(path):
    out = []
    for where, r in _records(path, ["question", "answer"]):
        if "####" not in r["answer"]:
            raise ValueError(f"{where}: field 'answer' has no '#### n' line")
        gold = r["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        out.append({"problem": r["question"], "question": r["question"], "solution": r["answer"], "answer": gold})
    return out


def load_humaneval(path):
    return [r for _, r in _records(path, ["task_id", "prompt", "canonical_solution", "test", "entry_point"])]


def load_mbpp(path):
    return [r for _, r in _records(path, ["task_id", "prompt", "code", "test_imports", "test_list"])]


LOADERS = {"math500": load_math, "math_train": load_math, "gsm8k": load_gsm8k, "gsm8k_train": load_gsm8k,
           "humaneval": load_humaneval, "mbpp": load_mbpp}


def mbpp_user(r, answer=None):
    """The standard MBPP prompt of one problem; with answer, a solved shot ([BEGIN] code [DONE])."""
    text = (f"You are an expert Python programmer, and here is your task: {r['prompt']} Your code should pass "
            f"these tests:\n\n" + "\n".join(r["test_list"]) + "\n")
    return text + (f"[BEGIN]\n{answer}\n[DONE]\n\n" if answer is not None else "")


NAMES = ["Tom", "Ana", "Sam", "Mia", "Ben", "Lea", "Max", "Zoe"]
THINGS = ["apples", "books", "coins", "pens", "cards", "stamps"]
WORDS = {  # family -> (operations, smallest and largest operand); "add" was chosen on validation
    "add": ("+", 2, 9), "add2": ("+", 10, 49), "mixed": ("+-*", 2, 12)}


def word_problems(split, n, family="add", seed=0):
    """Up to n generated word problems of a split: every (name, thing, a, op, b) of the family whose text hashes into
    the split, shuffled (train: by seed; val and test: one fixed order)."""
    ops, lo, hi = WORDS[family]
    say = {"+": "{n} has {a} {t}. {p} buys {b} more {t}. How many {t} does {n} have now?",
           "-": "{n} has {a} {t}. {p} gives away {b} {t}. How many {t} does {n} have now?",
           "*": "{n} has {a} boxes with {b} {t} in each box. How many {t} does {n} have?"}
    out = []
    for i, name in enumerate(NAMES):
        for t in THINGS:
            for a in range(lo, hi + 1):
                for b in range(lo, hi + 1):
                    for op in ops:
                        if op == "-" and b >= a:
                            continue
                        text = say[op].format(n=name, p="She" if i % 2 else "He", a=a, b=b, t=t)
                        h = int(hashlib.sha256(text.encode()).hexdigest(), 16) % 100
                        if {"test": h < 30, "val": 30 <= h < 40, "train": h >= 40}[split]:
                            out.append({"problem": text, "answer": str({"+": a + b, "-": a - b, "*": a * b}[op])})
    random.Random(seed if split == "train" else 0).shuffle(out)
    return out[:n]


def problems(task, train_file, test_file, split, n, seed=0):
    """Up to n problems of a split in file order, each with `user` (the first turn before any chat format) and
    `grader`. test = the test file; val / train = 5% / 95% of the train file by a hash of the problem text."""
    if task == "words":
        return [{**r, "user": f"{MATH_PROMPT}\n\nProblem:\n{r['problem']}", "grader": "math"}
                for r in word_problems(split, n, seed=seed)]
    load = {"math": load_math, "gsm8k": load_gsm8k, "mbpp": load_mbpp}[task]
    if split == "test" and task == "mbpp":  # the paper trains on MBPP and evaluates on HumanEval
        return [{**r, "user": f"Complete the following Python function.\n\n```python\n{r['prompt']}```",
                 "plain": r["prompt"], "grader": "humaneval"} for r in load_humaneval(test_file)][:n]
    recs = load(test_file if split == "test" else train_file)
    if split != "test":
        key = "prompt" if task == "mbpp" else "problem"
        recs = [r for r in recs if (int(hashlib.sha256(r[key].encode()).hexdigest(), 16) % 100 < 5) == (split == "val")
                and r.get("task_id") not in MBPP_SHOTS]
    if task == "mbpp":
        shots = "".join(mbpp_user(r, r["code"]) for r in load_mbpp(train_file) if r["task_id"] in MBPP_SHOTS)
        return [{**r, "user": shots + mbpp_user(r), "grader": "mbpp"} for r in recs][:n]
    return [{**r, "user": f"{MATH_PROMPT}\n\nProblem:\n{r['problem']}", "grader": "math"} for r in recs][:n]


def task(args):
    """score.py's task object for --task math | gsm8k | mbpp; the files its stage needs must exist."""
    train_file, test_file = (os.path.join(args.data, f) for f in FILES.get(args.task, ("", "")))
    train_file, test_file = args.train_file or train_file, args.test_file or test_file
    for f in {"stage1": [train_file], "stage2": [train_file], "single": [train_file], "eval": [test_file]}.get(
            args.stage, []) if args.task != "words" else []:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"--task {args.task}: no data file {f} (python data/real.py --out {args.data}, "
                                    f"or --train_file / --test_file)")
    module = SimpleNamespace(problems=lambda split, n, seed=0: problems(args.task, train_file, test_file, split, n,
                                                                         seed))
    return SimpleNamespace(module=module, instruction=MATH_INSTRUCTION if args.task in ("math", "gsm8k", "words")
                           else CODE_INSTRUCTION, alphabet="", chat=True)


def for_tokenizer(task, tok):
    """The task as this tokenizer's model sees it: prompts and instruction as chat turns in the checkpoint's
    format, or plain text for a tokenizer without one (HumanEval: the bare function prompt)."""
    if not task.chat:
        return task
    first = getattr(tok, "chat_prompt", lambda user: user)
    follow = getattr(tok, "chat_followup", lambda user: f"\n\n{user}\n\n")
    plain = getattr(tok, "template", None) is None

    def probs(split, n, seed=0):
        return [{**q, "prompt": q["plain"] if plain and "plain" in q else first(q["user"])}
                for q in task.module.problems(split, n, seed)]

    return SimpleNamespace(module=SimpleNamespace(problems=probs), instruction=follow(task.instruction),
                           alphabet=task.alphabet, chat=False)


def final_answer(text, problem):
    """What an attempt answers (to tell whether y2 changed y1's answer): the program, or the math answer."""
    return extract_code(text) if problem["grader"] in ("mbpp", "humaneval") else extract_answer(text)


def reward(text, problem):
    if problem["grader"] == "math":
        return math_reward(text, problem["answer"])
    code = extract_code(text)
    if problem["grader"] == "mbpp":
        return mbpp_reward(problem, code)
    # HumanEval: a whole function (chat models) redefines the prompt's stub, keeping its imports; else a body
    return humaneval_reward(problem, "\n" + code if f"def {problem['entry_point']}(" in code else code)


def prepare(out, datasets, src=None):
    for name in datasets:
        rel, url, expected = SOURCES[name]
        dst = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if src and not os.path.isfile(os.path.join(src, rel)):
            raise SystemExit(f"{name}: {os.path.join(src, rel)} not found in --from {src}")
        try:
            with (open(os.path.join(src, rel), "rb") if src else urllib.request.urlopen(url, timeout=60)) as r, \
                    open(dst + ".part", "wb") as f:
                shutil.copyfileobj(r, f)
            os.replace(dst + ".part", dst)  # never leave a truncated file under the real name
        except OSError as e:
            raise SystemExit(f"{name}: could not fetch {url} ({e}). Offline? Copy a local mirror with --from DIR "
                             f"(DIR/{rel})") from None
        n = len(LOADERS[name](dst))
        print(f"wrote {dst}: {n} records" + ("" if n == expected else f" (expected {expected})"))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="fetch MATH500, GSM8K, HumanEval, MBPP (sanitized); or training sets")
    ap.add_argument("--out", required=True, help="folder to write into, e.g. data/raw")
    ap.add_argument("--dataset", default="all", choices=["all", "train", *SOURCES], help="what to fetch")
    ap.add_argument("--from", dest="src", help="copy from this local folder instead of downloading")
    a = ap.parse_args()
    train = ["math_train", "gsm8k_train"]
    prepare(a.out, {"all": [s for s in SOURCES if s not in train], "train": train}.get(a.dataset, [a.dataset]), a.src)
