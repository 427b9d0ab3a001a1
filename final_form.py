"""final_form.py: rewards.math_equal's final-form rule. Optional reading: the rule is stated in rewards.py
(departure 3); this is its string-level mechanism, which needs no sympy.

math-verify credits any expression of the reference's value, so an answer copied from the problem (`99^2+99+1`
for 9901, `\\dbinom{31}{28}` for 4495) earns credit. PRM800K's grader refuses such answers; so does
`final_form(pred, ref)`, before math-verify is asked. The rule and math-verify must read one answer: the rule
drops only what math-verify drops too (units, `\\$`, `\\%`, degrees, thousands separators, spacing between
non-digits, `\\left`, a leading `x =`), then reads all the rest as tokens (`reading`); it is False when:
  0. the answer has what the rule cannot read: `$`, `\\(`, text-mode math or a `\\text{}` of more than words,
     spacing or a space between two digits (`1\\;8`, `1 8`), a non-ASCII character, a command it does not know
     (`\\over`, `\\cfrac`, `\\boxed`, `\\leqslant`, `\\mathrm`, ...), unless the reference has that very token;
  1. the reference is an integer (not a percentage) and the answer is not one (`5.0` is one);
  2. the answer is not simplified, unless the reference is not either: a fraction of integers not reduced
     (`\\frac{6}{4}`), the square root of an integer with a square factor (`\\sqrt{242}`, `\\frac{3}{\\sqrt{27}}`);
  3. the answer has more operations than the reference: + and binary -, a sign on a sign (`-(-x)`), *, ^, !,
     |, each function (\\sqrt, \\binom, \\log, \\sin, \\cdot, \\times, \\lfloor, ...), a number in brackets
     times another (`(3)(5)`, `3(5)`), and a fraction or / of more than integers, roots of integers, \\pi and
     letters (`\\frac{6}{{4}}`, `\\frac{19.8}{0.2}`, `(x+1)/2`). A fraction of integers is a number,
     `\\frac{\\sqrt{3}}{2}` and `\\sqrt{2}/2` forms, as are \\pm and juxtaposition (2\\sqrt{3}, 3k, (x-1)(x+1)); a
     list counts its busiest item (-\\sqrt{2}, \\sqrt{2} against \\pm\\sqrt{2});
  4. the answer is a relation (=, <, \\le, \\ne, \\approx, ...: any other relation is an unknown token) and the
     reference is not: `0 < p < 15` is not 15. A leading `x =` or `x \\in` is no relation: `x = 3` equals 3;
  5. its base subscripts (`204_5`, `4210_{5}`) differ from the reference's: math-verify ignores them.
"""
import math, re  # noqa: E401

FUNCS = r"\\(?:sqrt|[dt]?binom|log|ln|exp|sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan|sum|prod|int|lfloor" \
        r"|lceil|cdot|times|div)(?![A-Za-z])"
KNOWN = r"\\(?:[dt]?frac|pi|infty|pm|mp|[lg]eq?|[lg]t|neq?|approx|sim|equiv|in|cup|cap|setminus|emptyset" \
        r"|varnothing|rfloor|rceil|begin|end|alpha|beta|gamma|delta|theta|phi|lambda|mu|omega|sigma|tau|rho)" \
        r"(?![A-Za-z])|" + FUNCS
READ = r"\d+\.?\d*|\.\d+|[A-Za-z]|[-+*/^!()\[\]{},.|=<>&_]|\\[{}]|\\\\|" + KNOWN  # the tokens the rule knows
TOKEN = r"\s+|" + READ + r"|\\[A-Za-z]+|\\?."  # and one it does not know
RELATION = r"=|<|>|\\[lg]eq?(?![A-Za-z])|\\neq?(?![A-Za-z])|\\[lg]t(?![A-Za-z])|\\approx|\\sim|\\equiv"
FRACTION = (r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(-?\d+)\s*\}|\\[dt]?frac\s*(\d)\s*(\d)"  # \frac{a}{b}, \frac12
            r"|(?<![\w.^}])(\d+)\s*/\s*(\d+)(?![\w.^])")  # a/b
SPACING = r"\\[,;: ]|~|\\q?quad(?![A-Za-z])"  # a space, as math-verify reads it (`\!` is none)
TERM = r"\s*-?(?:\d+(?![\d.])\s*)?(?:\\sqrt\s*\{\s*\d+\s*\}|\\sqrt\s*\d|\\pi(?![A-Za-z])|[A-Za-z])?\s*"  # 2\sqrt{3}
SIMPLE_FRACTION = r"\\[dt]?frac(?:\s*\{" + TERM + r"\}|\s*\d|\s*[A-Za-z]|\s*\\pi(?![A-Za-z])){2}"  # \frac{\sqrt{3}}2
PRODUCT = r"\(\s*-?[\d.]+\s*\)\s*[\d(]|[\d)]\s*\(\s*-?[\d.]+\s*\)"  # (3)(5), 3(5): a number in brackets, times
SLASH = r"\.\d*\s*/|/\s*-?\d*\.|[)\]]\s*/|/\s*[({\[]"  # a / of a decimal or a bracket (\sqrt{2}/2 is a form)
SIGNS = r"(?:^|(?<=[^\w)}\].!|\s]))\s*[-+]\s*\(?\s*[-+]"  # -(-x), --x: a sign on a sign (not x + (-2))
BASE = r"(?<![\\A-Za-z])[0-9A-Z]+_\s*\{?\s*(\w+)\s*\}?"  # 204_5, 4210_{5}; not \log_2 or x_1


def _plain(s):
    """s without what carries no value: units, `\\$`, `\\%`, degrees, spacing, thousands separators, `x =`."""
    s = re.sub(r"\\(?:text|textbf|mbox|mathrm)\s*\{[A-Za-z\s()]*\}(?:\s*\^\s*\{?\d\}?)?", " ", s)  # 4\text{ cm}^2
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\%|%|\\\$|\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\displaystyle", "", s)
    s = re.sub(r"(\\\\)|(\\!)|" + SPACING, lambda m: m[1] or ("" if m[2] else " "), s)  # 1\;8: 1 8 (rule 0)
    s = re.sub(r"(?<=\d)\{,\}(?=\d{3})|(?<=\d),(?=\d{3}(?!\d))", "", s)  # 1{,}000, 1,000
    return re.sub(r"(^|,)\s*(?:[A-Za-z]|\\[a-z]+)(?:_\{?\w+\}?)?\s*(?:=|\\in(?![A-Za-z]))", r"\1", s.strip()).strip()


def reading(s):
    """The tokens the rule reads in answer s, after _plain (a token it does not know stays, to be refused)."""
    return [t for t in re.findall(TOKEN, _plain(s), re.S) if not t.isspace()]


def unreadable(s):
    """The tokens of s the rule cannot read (rule 0)."""
    return set(re.findall(r"\d\s+(?=\d)", _plain(s))) | {t for t in reading(s) if not re.fullmatch(READ, t)}


def _fractions(s):
    """(numerator, denominator) of each fraction of integers in s."""
    return [tuple(int(x) for x in m.groups() if x is not None) for m in re.finditer(FRACTION, s)]


def _unsimplified(s):
    """Whether s has a fraction of integers not reduced, or the square root of an integer with a square factor."""
    roots = [int(m) for m in re.findall(r"\\sqrt\s*\{\s*(\d{1,12})\s*\}|\\sqrt\s*(\d)", s) for m in m if m]
    return any(math.gcd(a, b) != 1 for a, b in _fractions(s)) or any(
        n % (k * k) == 0 for n in roots for k in range(2, math.isqrt(min(n, 10 ** 6)) + 1))


def operations(s):
    """The operations left to carry out in answer s (rule 3); in a list, in its busiest item."""
    counts = [0]
    for item in re.sub(FRACTION, " 1 ", _plain(s)).split(","):  # a fraction of integers is a number
        binary = re.findall(r"(?<=[\w)}\].!|])\s*[-+]", item)  # a - or + after an operand; a leading - is a sign
        fracs = len(re.findall(r"\\[dt]?frac(?![A-Za-z])", item)) - len(re.findall(SIMPLE_FRACTION, item))
        ops = re.findall(PRODUCT + "|" + SLASH + r"|[*^!|]|" + FUNCS, item) + re.findall(SIGNS, item)
        counts.append(len(binary) + len(ops) + fracs)
    return max(counts)


def final_form(pred, ref):
    """Whether answer `pred` is in the final form reference `ref` asks for (the module docstring's rules)."""
    p, r = _plain(pred), _plain(ref)
    if not unreadable(pred) <= unreadable(ref):
        return False  # 0.
    if "%" not in ref and re.fullmatch(r"-?\d+(\.0*)?", r) and not re.fullmatch(r"-?\d+(\.0*)?", p):
        return False  # 1.
    if _unsimplified(p) and not _unsimplified(r):
        return False  # 2.
    if re.search(RELATION, p) and not re.search(RELATION, r):
        return False  # 4.
    if sorted(re.findall(BASE, p)) != sorted(re.findall(BASE, r)):
        return False  # 5.
    return operations(p) <= operations(r)  # 3.
