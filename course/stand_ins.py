"""
course/stand_ins.py: what the public grading tests (test_exercises.py) and the instructor's check (check.py)
share: a comparison with a message, a scripted stand-in policy for the sampler, this course's own rloo and
turn_credits (so that rl_update is graded alone), a log-prob stand-in, scripted attempts for evaluate.
"""
from types import SimpleNamespace

import torch

import score
from data import toy_math
from tokenizer import CharTokenizer

F64 = torch.float64

def close(got, want, tol, why):
    got = torch.as_tensor(got, dtype=F64)
    want = torch.as_tensor(want, dtype=F64)
    assert got.shape == want.shape, f"{why}\nexpected shape {tuple(want.shape)}, got {tuple(got.shape)}"
    gap = float((got - want).abs().max()) if got.numel() else 0.0
    assert gap <= tol, f"{why}\nexpected {want.tolist()}\ngot      {got.tolist()}\n(largest gap {gap:.3g} > {tol})"



TOK = CharTokenizer("?abcdefgh")  # <pad> 0, <eot> 1, '?' 2, a 3, b 4, c 5, d 6, e 7, f 8, g 9, h 10
P, E = 0, 1


class Scripted(torch.nn.Module):
    """A stand-in policy that 'samples' given turns: call j of generate() continues row i with turns[j][i] (then
    <pad> after an <eot>, as model.generate does), with the log-prob -(j + 1) - i / 4 - t / 16 at token t."""

    def __init__(self, *turns):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.turns, self.seen = list(turns), []

    @staticmethod
    def lp(j, i, t):
        return -(j + 1) - i / 4 - t / 16  # exact in float32

    def generate(self, idx, max_new, temperature=1.0, valid=None, eos_id=None, pad_id=None, generator=None,
                 logprobs=False):
        j = len(self.seen)
        rows = self.turns[j]
        self.seen.append([r[v].tolist() for r, v in zip(idx, valid)])  # the contexts it was asked to continue
        assert all(len(r) == max_new or E in r for r in rows), "a scripted turn without <eot> must be max_new long"
        n = max(len(r) for r in rows)
        out, lp = torch.full((len(rows), n), pad_id, dtype=torch.long), torch.zeros(len(rows), n)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r)
            lp[i, :len(r)] = torch.tensor([self.lp(j, i, t) for t in range(len(r))])
        return torch.cat([idx, out], 1), (lp if logprobs else None)


def lp_row(j, i, at, n, T):
    """a row of zeros with Scripted's log-probs of call j, row i, tokens 0..n-1 placed from column `at`"""
    row = [0.0] * T
    for t in range(n):
        row[at + t] = Scripted.lp(j, i, t)
    return row



def loo(c, k):  # the leave-one-out baseline, written out
    g = [c[i:i + k].tolist() for i in range(0, len(c), k)]
    return torch.tensor([x - (sum(grp) - x) / (k - 1) for grp in g for x in grp], dtype=c.dtype)


def credits(stage, r1, r2, kl1, kl2, alpha, beta1, beta2):  # Eq. 2-4 with gamma = 0
    if stage == "single":
        return r1 - beta1 * kl1, 0 * r2
    if stage == "stage1":
        return -beta2 * kl1, r2 - beta1 * kl2
    return r1 - beta1 * kl1, r2 + alpha * (r2 - r1) - beta1 * kl2



def rl_args(stage, k, alpha=10.0, beta1=0.01, beta2=0.1):
    args = score.p.parse_args(["--stage", stage, "--k", str(k), "--alpha", str(alpha), "--beta1", str(beta1),
                               "--beta2", str(beta2)])
    args.device = torch.device("cpu")
    return args


class LogProbs(torch.nn.Module):  # log p(token t | tokens < t) is its own parameter w[i, t-1]
    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w.clone())

    def forward(self, idx, targets=None):
        return self.w  # (N, T-1)



def scripted_eval(monkeypatch, attempts, batch=500):
    """evaluate() on toy problems whose y1 / y2 texts are attempts[i] = (y1, y2)"""
    probs = toy_math.problems("test", len(attempts))
    by_prompt = {q["prompt"]: a for q, a in zip(probs, attempts)}
    tok = CharTokenizer(toy_math.ALPHABET)

    def sampler(model, tok_, prompts, instruction, max_new, temperature, generator, y1=None, second=True):
        pairs = [by_prompt[tok.decode(x)] for x in prompts]
        return dict(y1=[a for a, _ in pairs], y2=[b for _, b in pairs], y1_tok=[tok.encode(a) for a, _ in pairs])

    monkeypatch.setattr(score, "sample_two_turns", sampler)
    return score.evaluate(torch.nn.Linear(1, 1), tok, SimpleNamespace(instruction=toy_math.INSTRUCTION), probs, 40,
                          batch=batch), probs


def attempts_of(kinds, probs):
    """kinds: per problem 'RR', 'WR', ... (right / wrong / other-wrong / empty attempt for y1 then y2)"""
    def text(q, c):
        t = q["terms"]
        return {"R": toy_math.solve(t), "W": toy_math.solve((t[0] + 1, t[1])), "X": toy_math.solve((t[0] + 2, t[1])),
                "-": ""}[c]
    return [(text(q, a), text(q, b)) for q, (a, b) in zip(probs, kinds)]
