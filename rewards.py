"""rewards.py: the graders SCoRe's RL optimises against. RL finds every hole in a grader, so these aim to be
exact, fast and not foolable by accident; none raises on bad input (it scores 0).

Math. `extract_answer(text)`: the answer stated last, as the paper's "Final Answer: The final answer is $X$. I
hope it is correct.", `\\boxed{X}` (nested braces), GSM8K's `#### X` or the toy tasks' `ans:<integer>`.
`math_equal(pred, ref)`: Hugging Face's math-verify (sympy), `verify(parse(ref), parse(pred))` on `$`-wrapped
answers, imported lazily: only the real math tasks need it (pip install -r requirements-real.txt).
Code. sandbox.py runs what `*_program` build (program, then tests); `extract_code` takes it from a reply.

Departures and limitations:
  1. Before math-verify, a thin space between thousands (1\\,000) goes, and a plain-word unit after a number
     (12 dollars) becomes \\text{ dollars}, which math-verify drops as it drops other units.
  2. math-verify is lenient by design: a pair or open interval equals the list or set of its ends ((1,2) == 1,2),
     lists compare as sets (1,1,2 == 1,2,2), 50\\% equals 50 and 0.5, numbers agree to 6 decimals
     (0.333333 == \\frac{1}{3}); it misses \\frac{1}{i} == -i, \\sin 60^\\circ, 1e3, x > 3 against (3, \\infty).
  3. Final form (final_form.py, as PRM800K's grader), read on the whole string math-verify grades: `$`, text-mode
     math, spacing in a number, unknown commands or non-ASCII, more operations than the reference (99^2+99+1 for
     9901, \\frac{6}{{4}} for 3/2), an unsimplified fraction or root for a simplified one, a non-integer for an
     integer, a relation for a value (0 < p < 15 for 15), another base (204_6 for 204_5) earn 0; `x = 3` equals 3.
     Time limits (5 s, signal.alarm): main thread only. Answers over MAX_ANSWER characters or unbalanced equal nothing.
  4. Code tests run in a process of their own (sandbox.py, tester.py) and get, of the program's names, only
     HumanEval's entry point (the prompt's helpers run again beside them) or those MBPP's asserts use that are not
     builtins (or are reference functions: MBPP/126's sum); every call crosses as plain data, so an object equal to
     all is not. Toy code: one plain `def f(x)`; its values are compared in the caller as JSON (7.0, true != 7).
"""
import ast, builtins, itertools, numbers, re, threading  # noqa: E401
from final_form import final_form
from sandbox import DEFAULT_TIMEOUT, execute, execute_many, run_sandboxed, sandbox_features  # noqa: F401 (faces)

MAX_TEXT, MAX_ANSWER = 1 << 16, 1000  # a longer model output has no answer; a longer answer equals nothing


def extract_answer(text):
    """The answer stated last in `text` (the one at the last position), or None."""
    try:
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            return None
        found = [(m.start(), m.group(1)) for m in re.finditer(r"(?<![A-Za-z0-9_])ans:(-?\d{1,60})(?!\d)", text)]
        if (i := text.lower().rfind("the final answer is")) >= 0:
            rest = text[i + 19:].lstrip()
            if not rest.startswith("$"):
                found.append((i, re.split(r"\.\s*I hope|\n", rest)[0].rstrip(". ")))
            elif m := re.match(r"\$(.*?)(?<!\\)\$", rest, re.S):  # "$X$": X ends at the first unescaped "$"
                found.append((i, m.group(1)))
        for key in ("\\boxed", "\\fbox"):
            if (i := text.rfind(key)) < 0:
                continue
            k = re.compile(r"\s*").match(text, i + len(key)).end()
            if text[k:k + 1] == "{":  # to the matching "}"
                depth = itertools.accumulate({"{": 1, "}": -1}.get(c, 0) for c in text[k:])
                e = next((j for j, d in enumerate(depth) if d == 0), None)
                e is None or found.append((i, text[k + 1:k + e]))
            elif k > i + len(key):  # "\boxed 5"
                found.append((i, re.match(r"[^\s$]*", text[k:]).group()))
        if (i := text.rfind("####")) >= 0:
            found.append((i, text[i + 4:].split("\n")[0]))
        return (max(found)[1].strip() if found else "") or None
    except Exception:
        return None


def _answer(x):
    """x as `$...$` for math-verify's parse (departure 1), or None if it is no answer."""
    s = str(x).strip() if isinstance(x, (str, numbers.Real)) and not isinstance(x, bool) else ""
    if not s or len(s) > MAX_ANSWER or s.count("{") != s.count("}") or re.search("[\0-\x08\x0e-\x1f\ud800-\udfff]", s):
        return None  # garbage, which math-verify would still compare verbatim ("{{{" == "{{{")
    s = re.sub(r"(?<=\d)\\,(?=\d{3}(?!\d))", "", s)  # 1\,000
    return "$" + re.sub(r"(?<=\d)\s+([A-Za-z]{3,}(?:\s+[A-Za-z]+)*)\.?$", r"\\text{ \1}", s) + "$"  # 12 dollars


def math_equal(pred, ref):
    """Whether answer `pred` is equivalent to the reference `ref` (math-verify; see the module docstring)."""
    try:
        from math_verify import parse, verify
    except ImportError as e:
        raise ImportError("math_equal needs math-verify: pip install -r requirements-real.txt") from e
    try:
        t = 5 if threading.current_thread() is threading.main_thread() else None  # signal.alarm: main thread only
        p, r = _answer(pred), _answer(ref)
        return bool(p and r and final_form(p[1:-1], r[1:-1])
                    and verify(parse(r, parsing_timeout=t), parse(p, parsing_timeout=t), timeout_seconds=t))
    except Exception:
        return False


def math_reward(text, ref):
    """1.0 if the answer stated last in `text` equals `ref` (MATH, GSM8K), else 0.0."""
    return float(math_equal(extract_answer(text), ref))


def extract_code(text):
    """A reply's program: its last ``` block (an unclosed one runs to the end), else the text to MBPP's [DONE]."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        return ""
    blocks = re.findall(r"```[^\n`]*\n(.*?)(?:```|\Z)", text, re.S)
    if blocks:
        return blocks[-1]
    text = text.split("[DONE]")[0]
    return text.split("[BEGIN]", 1)[1].lstrip("\n") if text.lstrip().startswith("[BEGIN]") else text


def humaneval_program(problem, completion):
    e, h = problem["entry_point"], ast.parse(problem["prompt"])
    h.body = [n for n in h.body if getattr(n, "name", None) != e]  # the prompt's helpers, for the tests
    return dict(program=problem["prompt"] + completion, tests=[ast.unparse(h), problem["test"], f"check({e})"],
                share=[e])


def mbpp_program(problem, code):
    imports, tests = "\n".join(problem.get("test_imports") or []), "\n".join(problem["test_list"])
    own = set(re.findall(r"^def (\w+)", problem.get("code", ""), re.M))  # the reference's functions
    used = {n.id for n in ast.walk(ast.parse(tests)) if isinstance(n, ast.Name)} - (set(dir(builtins)) - own)
    return {"program": imports + "\n" + code, "tests": [imports, tests], "share": sorted(used)}


def toy_code_program(problem, program):
    """The job grading a toy-code program, or None if it is not one plain `def f(x)` (no decorators, etc.)."""
    try:
        fn = ast.parse(program).body if isinstance(program, str) and len(program) <= 4096 else None
        fn = fn[0] if fn and len(fn) == 1 else None
        if (isinstance(fn, ast.FunctionDef) and fn.name == "f" and not fn.decorator_list and not fn.returns
                and ast.dump(fn.args) == ast.dump(ast.parse("def f(x): pass").body[0].args)
                and not any(isinstance(n, (ast.Global, ast.Nonlocal)) for n in ast.walk(fn))):
            xs, ys = zip(*[(int(x), int(y)) for x, y in problem["tests"]])
            return {"program": program, "tests": f"__result__ = list(map(f, {xs}))", "share": ["f"], "expect": ys}
    except Exception:  # SyntaxError, ValueError (NUL), RecursionError, MemoryError
        return None


def code_rewards(programs, timeout=DEFAULT_TIMEOUT, workers=2):
    """1.0 / 0.0 per program; None (e.g. from toy_code_program) is 0.0 and is not run. Equal jobs run once and
    share the verdict: RL's k samples of a prompt often agree, and a second attempt often repeats the first."""
    jobs = {repr(p): p for p in programs if p is not None}  # the distinct jobs, in order
    ok = dict(zip(jobs, execute_many(list(jobs.values()), timeout, workers)))
    return [float(ok[repr(p)]) if p is not None else 0.0 for p in programs]


def humaneval_reward(problem, completion, timeout=DEFAULT_TIMEOUT):
    return code_rewards([humaneval_program(problem, completion)], timeout, 1)[0]


def mbpp_reward(problem, code, timeout=DEFAULT_TIMEOUT):
    return code_rewards([mbpp_program(problem, code)], timeout, 1)[0]


def toy_code_reward(problem, program, timeout=1.0):
    return code_rewards([toy_code_program(problem, program)], timeout, 1)[0]


def toy_code_rewards(problems, programs, timeout=1.0, workers=2):
    return code_rewards([toy_code_program(p, c) for p, c in zip(problems, programs)], timeout, workers)
