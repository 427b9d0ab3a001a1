"""final_form.py: rewards.math_equal's final-form rule. Optional reading: the rule is stated in rewards.py
(departure 3); this is its string-level mechanism, which needs no sympy.

math-verify credits any expression of the reference's value, so an answer copied from the problem (`99^2+99+1`
for 9901, `\\dbinom{31}{28}` for 4495) earns credit. PRM800K's grader refuses such answers; so does
`final_form(pred, ref)`, before math-verify is asked. It is False when:
  1. the reference is an integer (not a percentage) and the answer is not one (digits, after units, `\\$`, `\\%`,
     degrees, thousands separators and a leading `x =` go; `5.0` is one);
  2. the answer is not simplified, unless the reference is not either: a fraction of integers not reduced
     (`\\frac{6}{4}`), the square root of an integer with a square factor (`\\sqrt{242}`, `\\frac{3}{\\sqrt{27}}`);
  3. the answer has more operations than the reference: + and binary -, *, ^, !, \\cdot, \\times, \\div, and
     each \\sqrt, \\binom, \\log, \\sin, ... A fraction is a form, not an operation (\\frac{\\sqrt{10}}{5} is
     as final as \\sqrt{\\frac{2}{5}}), nor is juxtaposition (2\\sqrt{3}, 3k) or \\pm; a list counts its busiest
     item (-\\sqrt{2}, \\sqrt{2} against \\pm\\sqrt{2});
  4. the answer is a relation (=, <, \\le, \\ne, ...) and the reference is not: `0 < p < 15` is not 15. A leading
     `x =` or `x \\in` (one variable, in each item of a list) is no relation: `x = 3` equals 3.
"""
import math, re  # noqa: E401

FUNCS = r"\\(?:sqrt|[dt]?binom|choose|log|ln|exp|sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan|sum|prod" \
        r"|int|lfloor|lceil|cdot|times|div)(?![A-Za-z])"
RELATION = r"=|<|>|\\[lg]eq?(?![A-Za-z])|\\neq?(?![A-Za-z])|\\[lg]t(?![A-Za-z])|\\approx|\\sim|\\equiv"
FRACTION = (r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(-?\d+)\s*\}|\\[dt]?frac\s*(\d)\s*(\d)"  # \frac{a}{b}, \frac12
            r"|(?<![\w.^}])(\d+)\s*/\s*(\d+)(?![\w.^])")  # a/b


def _plain(s):
    """s without what carries no value: units, `\\$`, `\\%`, degrees, spacing, thousands separators, `x =`."""
    s = re.sub(r"\\(?:text|textbf|mbox|mathrm)\s*\{[^{}]*\}(?:\s*\^\s*\{?\d\}?)?", " ", s)  # 4\text{ cm}^2
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\%|%|\\\$|\$|\\[,!;: ]|\\left|\\right|\\displaystyle", "", s)
    s = re.sub(r"(?<=\d)\{,\}(?=\d{3})|(?<=\d),(?=\d{3}(?!\d))", "", s)  # 1{,}000, 1,000
    return re.sub(r"(^|,)\s*(?:[A-Za-z]|\\[a-z]+)(?:_\{?\w+\}?)?\s*(?:=|\\in(?![A-Za-z]))", r"\1", s.strip()).strip()


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
        binary = re.findall(r"(?<=[\w)}\].!])\s*[-+]", item)  # a - or + after an operand; a leading - is a sign
        counts.append(len(binary) + len(re.findall(r"[*^!]", item)) + len(re.findall(FUNCS, item)))
    return max(counts)


def final_form(pred, ref):
    """Whether answer `pred` is in the final form reference `ref` asks for (the module docstring's rules)."""
    p, r = _plain(pred), _plain(ref)
    if "%" not in ref and re.fullmatch(r"-?\d+(\.0*)?", r) and not re.fullmatch(r"-?\d+(\.0*)?", p):
        return False  # 1.
    if _unsimplified(p) and not _unsimplified(r):
        return False  # 2.
    if re.search(RELATION, p) and not re.search(RELATION, r):
        return False  # 4.
    return operations(p) <= operations(r)  # 3.
