"""
course/test_exercises.py: the public grading tests of the exercises (course/README.md). Grade one exercise:
python -m pytest course -k ex3. They check each function's face only: exact hand-computed small cases in
float64, masks compared exactly, property checks, and an exact-enumeration gradient; never a whole model's
outputs. Every exercise is graded alone: the functions it calls that are other exercises are replaced by
course/stand_ins.py's: rloo and turn_credits in rl_update by values recorded from the solution (recorded.json),
the sampler in evaluate by scripted attempts.
"""
import itertools

import torch

import score
from data import toy_math
from stand_ins import (E, F64, TOK, Batch, LogProbs, P, Scripted, attempts_of, check_sample, close, lp_row, rl_args,
                       scripted_eval)


# ----------------------------------------------------------------------------------------------------------
# exercise 1: the two-turn sampler's tokens and masks


def test_ex1_two_turns_ragged_prompts_forced_end_of_turn():
    # row 0: x "ab", y1 "cd"+<eot> (sampled), p "??", y2 "eee" ran out (max_new 3): <eot> forced, not trained
    # row 1: x "a", y1 "fgh" ran out: <eot> forced before p; y2 is <eot> alone (sampled: trained)
    m = Scripted([[5, 6, E], [8, 9, 10]], [[7, 7, 7], [E]])
    s = score.sample_two_turns(m, TOK, [[3, 4], [3]], "??", 3, 1.0, None)
    assert m.seen[1] == [[3, 4, 5, 6, E, 2, 2], [3, 8, 9, 10, E, 2, 2]], "turn 2 sees x, y1 (<eot> forced if needed), p"
    T = 11
    check_sample(s, tokens=[[3, 4, 5, 6, E, 2, 2, 7, 7, 7, E], [3, 8, 9, 10, E, 2, 2, E, P, P, P]],
                 m1=[[0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]],
                 m2=[[0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]],
                 logp=[[a + b for a, b in zip(lp_row(0, 0, 2, 3, T), lp_row(1, 0, 7, 3, T))],
                       [a + b for a, b in zip(lp_row(0, 1, 1, 3, T), lp_row(1, 1, 7, 1, T))]])
    assert s["y1"] == ["cd", "fgh"] and s["y2"] == ["eee", ""]


def test_ex1_given_first_attempts_and_single_turn():
    # Fig. 5: y1 given (not sampled): m1 = 0 and logp 0 on it; only y2 is sampled (one generate call)
    m = Scripted([[7, E], [E]])
    s = score.sample_two_turns(m, TOK, [[3], [4, 4]], "?", 2, 1.0, None, y1=[[5, E], [6, 6]])
    check_sample(s, tokens=[[3, 5, E, 2, 7, E, P], [4, 4, 6, 6, E, 2, E]],
                 m1=[[0] * 7] * 2, m2=[[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0, 1]],
                 logp=[lp_row(0, 0, 4, 2, 7), lp_row(0, 1, 6, 1, 7)])
    # second=False (single-turn RL): [x, y1] only, m2 = 0
    m = Scripted([[5, 6], [E]])
    s = score.sample_two_turns(m, TOK, [[3, 3, 3], [4]], "??", 2, 1.0, None, second=False)
    check_sample(s, tokens=[[3, 3, 3, 5, 6, E], [4, E, P, P, P, P]], m1=[[0, 0, 0, 1, 1, 0], [0, 1, 0, 0, 0, 0]],
                 m2=[[0] * 6] * 2, logp=[lp_row(0, 0, 3, 2, 6), lp_row(0, 1, 1, 1, 6)])


def test_ex1_a_sampled_token_whose_log_prob_is_exactly_zero_is_in_its_mask():
    # a near-certain token: float32 log_softmax rounds its log-prob to exactly 0.0. The policy still sampled it, so
    # Eq. 3 and 4's gradient and KL count it: y1's 2nd token and y2's 1st token here
    m = Scripted([[5, 6, E]], [[7, E]], zero={(0, 0, 1), (1, 0, 0)})
    s = score.sample_two_turns(m, TOK, [[3]], "?", 3, 1.0, None)
    want = dict(m1=[[0.0, 1, 1, 1, 0, 0, 0]], m2=[[0.0, 0, 0, 0, 0, 1, 1]])
    for name, col in (("m1", 2), ("m2", 5)):
        assert s[name].tolist() == want[name], (
            f"{name}: the token at column {col} was sampled with a log-prob of exactly 0.0 and must be 1.0 in {name}: "
            "the masks come from the turns' lengths (which tokens the policy chose), never from logp != 0\n"
            f"expected {want[name]}\ngot      {s[name].tolist()}")
    check_sample(s, tokens=[[3, 5, 6, E, 2, 7, E]], m1=want["m1"], m2=want["m2"],
                 logp=[[0, Scripted.lp(0, 0, 0), 0, Scripted.lp(0, 0, 2), 0, 0, Scripted.lp(1, 0, 1)]])


def test_ex1_properties_on_random_turns():
    # any ragged batch: the masks are 0/1 and disjoint, the masked tokens spell y1 / y2, logp lives on the masks
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        B, max_new = 1 + trial % 5, 1 + trial % 4
        draw = lambda: [[int(v) for v in torch.randint(3, 11, (max_new,), generator=g)][:int(torch.randint(
            1, max_new + 1, (1,), generator=g))] for _ in range(B)]
        ends = lambda rows: [r + [E] if len(r) < max_new else r for r in rows]  # short turns end with <eot>
        prompts = [[3] * (1 + i) for i in range(B)]
        s = score.sample_two_turns(Scripted(ends(draw()), ends(draw())), TOK, prompts, "??", max_new, 1.0, None)
        for i in range(B):
            row, m1, m2 = s["tokens"][i].tolist(), s["m1"][i], s["m2"][i]
            assert set((m1 + m2).tolist()) <= {0.0, 1.0}, "m1 and m2 are 0/1 and never both 1"
            assert TOK.decode([t for t, v in zip(row, m1) if v]) == s["y1"][i], "m1 selects exactly y1's tokens"
            assert TOK.decode([t for t, v in zip(row, m2) if v]) == s["y2"][i], "m2 selects exactly y2's tokens"
            assert ((s["logp"][i] != 0) <= ((m1 + m2) > 0)).all(), "logp is 0 off the sampled tokens"


# ----------------------------------------------------------------------------------------------------------
# exercise 2: the leave-one-out baseline


def test_ex2_rloo_hand_computed():
    why = ("RLOO: each sample's advantage is its credit minus the mean credit of the OTHER k-1 samples of its prompt "
           "(the baseline must not depend on the sample itself, or the policy gradient is biased)")
    c = torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1], dtype=F64)  # two prompts, k = 4
    close(score.rloo(c, 4), [1, -1 / 3, -1 / 3, -1 / 3, 0, 0, 0, 0], 1e-12, why + "; k = 4")
    close(score.rloo(torch.tensor([3.0, 1], dtype=F64), 2), [2, -2], 1e-12, why + "; k = 2: c_i - c_j")
    close(score.rloo(torch.tensor([0.0, 3, 6, 1, 1, 4], dtype=F64), 3), [-4.5, 0, 4.5, -1.5, -1.5, 3], 1e-12,
          why + "; k = 3, two prompts: groups are consecutive rows")


def test_ex2_rloo_properties():
    g = torch.Generator().manual_seed(0)
    for k in (2, 3, 5):
        c = torch.randn(4 * k, generator=g, dtype=F64)
        a = score.rloo(c, k)
        assert a.dtype == F64 and a.shape == c.shape, f"rloo returns (N,) in the credits' dtype, got {a.dtype} {tuple(a.shape)}"
        close(a.view(-1, k).sum(1), torch.zeros(4), 1e-12, f"k = {k}: the advantages of one prompt's samples sum to zero")
        shift = torch.arange(4, dtype=F64).repeat_interleave(k) * 7.0  # a constant per prompt
        close(score.rloo(c + shift, k), a, 1e-12, f"k = {k}: adding a constant to every credit of a prompt changes "
              "no advantage (a baseline removes it)")
        bumped = c.clone()
        bumped[0] += 1.0
        close(score.rloo(bumped, k) - a, [1.0] + [-1 / (k - 1)] * (k - 1) + [0.0] * (3 * k), 1e-12,
              f"k = {k}: raising one credit by 1 raises its own advantage by exactly 1 (its baseline leaves it out) "
              "and lowers the others' of the same prompt by 1/(k-1)")


# ----------------------------------------------------------------------------------------------------------
# exercise 3: per-turn credit, Eq. 2-4

R1, R2 = torch.tensor([0.0, 0, 1, 1], dtype=F64), torch.tensor([0.0, 1, 0, 1], dtype=F64)  # i->i, i->c, c->i, c->c
KL1, KL2 = torch.tensor([0.5, 1, 2, 4], dtype=F64), torch.tensor([0.25, 3, 1, 0], dtype=F64)


def test_ex3_turn_credits_hand_computed():
    cases = {
        "single": ("Eq. 2 (single-turn RL): y1 gets r(y1) - beta1 KL1; there is no y2 to credit (0)",
                   [-0.005, -0.01, 0.98, 0.96], [0, 0, 0, 0]),
        "stage1": ("Eq. 3 (Stage I): y1 gets -beta2 KL1 alone (no r(y1), and no beta1 KL: Eq. 2's beta1 KL is y2's); "
                   "y2 gets r(y2) - beta1 KL2", [-0.05, -0.1, -0.2, -0.4], [-0.0025, 0.97, -0.01, 1]),
        "stage2": ("Eq. 4 (Stage II), gamma = 0: y1 gets r(y1) - beta1 KL1; y2 gets r(y2) + alpha (r(y2) - r(y1)) - "
                   "beta1 KL2 (the bonus: +alpha for i->c, -alpha for c->i)",
                   [-0.005, -0.01, 0.98, 0.96], [-0.0025, 10.97, -10.01, 1]),
    }
    for stage, (why, c1, c2) in cases.items():
        got1, got2 = score.turn_credits(stage, R1, R2, KL1, KL2, alpha=10.0, beta1=0.01, beta2=0.1)
        close(got1, c1, 1e-12, f"stage {stage}, y1's credit. {why}")
        close(got2, c2, 1e-12, f"stage {stage}, y2's credit. {why}")


def test_ex3_bonus_and_weights():
    g = torch.Generator().manual_seed(1)
    kl1, kl2 = torch.rand(4, generator=g, dtype=F64), torch.rand(4, generator=g, dtype=F64)
    for alpha in (0.0, 1.0, 10.0):
        _, with_bonus = score.turn_credits("stage2", R1, R2, kl1, kl2, alpha=alpha, beta1=0.3, beta2=0.7)
        _, no_bonus = score.turn_credits("stage2", R1, R2, kl1, kl2, alpha=0.0, beta1=0.3, beta2=0.7)
        close(with_bonus - no_bonus, alpha * (R2 - R1), 1e-12,
              f"alpha = {alpha}: Stage II's bonus adds exactly alpha (r(y2) - r(y1)) to y2's credit")
    c1, c2 = score.turn_credits("stage1", R1, R2, kl1, kl2, alpha=10.0, beta1=0.3, beta2=0.0)
    close(c1, torch.zeros(4), 1e-12, "Stage I with beta2 = 0: y1's credit is -beta2 KL1 = 0. Eq. 3 puts the beta2 KL "
          "alone on y1: no r(y1), and no beta1 KL1 (the beta1 KL is y2's only)")
    c1, c2 = score.turn_credits("stage1", R1, R2, kl1, kl2, alpha=10.0, beta1=0.3, beta2=0.7)
    close(c2, R2 - 0.3 * kl2, 1e-12, "Stage I: y2's credit is r(y2) - beta1 KL2, with no bonus (alpha is Stage II's)")


def test_ex3_credits_keep_the_inputs_dtype_and_device():
    # in training the rewards and KLs are CUDA tensors; here float64 on the CPU and on 'meta' (shapes and dtypes
    # without data, standing in for a GPU: a tensor made on the CPU shows up as device cpu)
    for device in ("cpu", "meta"):
        r1, r2, kl1, kl2 = (v.to(device) for v in (R1, R2, KL1, KL2))
        for stage in ("single", "stage1", "stage2"):
            try:
                out = score.turn_credits(stage, r1, r2, kl1, kl2, alpha=10.0, beta1=0.01, beta2=0.1)
            except NotImplementedError:
                raise
            except Exception as e:  # noqa: BLE001  e.g. .tolist() on a meta tensor
                raise AssertionError(f"stage {stage}: turn_credits on {device} tensors raised {type(e).__name__}: {e}. "
                                     "Use tensor operations only: the credits stay on the inputs' device") from e
            for name, c in zip(("c1", "c2"), out):
                got = f"{c.dtype} on {c.device}" if torch.is_tensor(c) else type(c).__name__
                assert torch.is_tensor(c) and c.dtype == F64 and c.device == r1.device and c.shape == r1.shape, (
                    f"stage {stage}, {name}: expected a (4,) float64 tensor on {device}, the inputs' dtype and device, "
                    f"got {got}. Build it from the inputs (e.g. torch.zeros_like(r2)): torch.zeros(shape) is float32 "
                    "on the CPU, which loses float64's digits here and fails against CUDA tensors on a GPU")


# ----------------------------------------------------------------------------------------------------------
# exercise 4: REINFORCE with the k1 KL (rl_update), graded alone: rloo and turn_credits are recorded values
# (the fixture `alone`, in conftest.py)


def test_ex4_rl_update_hand_built_gradient(alone):
    # one prompt, k = 4, layout [x, y1, y1, p, y2, pad]; d loss / d w[i, t-1] = -(a1_i m1[i,t] + a2_i m2[i,t]) / N
    N, T, k = 4, 6, 4
    m1 = torch.tensor([[0, 1, 1, 0, 0, 0]] * N, dtype=F64)
    m2 = torch.tensor([[0, 0, 0, 0, 1, 0]] * N, dtype=F64)
    s = Batch(tokens=torch.zeros(N, T, dtype=torch.long), m1=m1, m2=m2)
    w0 = -0.5 - 0.1 * torch.arange(N * (T - 1), dtype=F64).view(N, T - 1)
    ref = torch.full((N, T), -1.0, dtype=F64)
    r1, r2 = torch.tensor([1.0, 0, 0, 1], dtype=F64), torch.tensor([1.0, 1, 0, 0], dtype=F64)
    lp = torch.nn.functional.pad(w0, (1, 0))
    kl1, kl2 = ((lp - ref) * m1).sum(1), ((lp - ref) * m2).sum(1)  # k1: sum over the turn of log pi - log ref
    for stage in ("single", "stage1", "stage2"):
        c1, c2 = alone.rec.turn_credits(stage, r1, r2, kl1, kl2, 10.0, 0.01, 0.1)
        if stage == "stage2":
            c2 = c2 + 10.0 * r1  # the bonus's -alpha r(y1) is fixed before y2 is sampled: y2's baseline
        a1, a2 = alone.rec.rloo(c1, k), alone.rec.rloo(c2, k)
        want = -(a1[:, None] * m1 + a2[:, None] * m2)[:, 1:] / N
        model = LogProbs(w0)
        got_kl1, got_kl2, _ = score.rl_update(rl_args(stage, k), model, torch.optim.SGD(model.parameters(), lr=0.0),
                                              s, r1, r2, ref)
        assert not (got_kl1.requires_grad or got_kl2.requires_grad), (
            f"{stage}: kl1 / kl2 require grad: the KL estimate is a reward, detached (from lp.detach())")
        close(got_kl1, kl1, 1e-12, f"{stage}: kl1 is the k1 estimate, the sum over y1's masked tokens of log pi - log ref")
        close(got_kl2, kl2, 1e-12, f"{stage}: kl2 is the k1 estimate over y2's masked tokens")
        close(alone.grads.pop()[0], want, 1e-10, f"{stage}: the gradient of the loss -(1/N) sum_i sum_t (a1_i m1 + "
              "a2_i m2) log pi, N = 4 (a mean over the samples), advantages by RLOO of each turn's credit (Stage II: "
              "y2's on c2 + alpha r(y1)), nothing on p or padding")


def test_ex4_worked_example_of_the_handout(alone):
    # course/README.md's worked example: one prompt, k = 2 samples, layout [x, y1, y1, p, y2, pad]; alpha 10,
    # beta1 0.1, beta2 1. Row 0 corrects a wrong y1 (i->c), row 1 keeps a right one (c->c)
    lp = torch.tensor([[0, -0.5, -1.0, -0.1, -0.2, -3.0], [0, -0.3, -2.0, -0.1, -0.6, -3.0]], dtype=F64)
    ref = torch.tensor([[0, -0.7, -1.2, -0.1, -0.2, -3.0], [0, -0.4, -2.2, -0.1, -0.9, -3.0]], dtype=F64)
    s = Batch(tokens=torch.zeros(2, 6, dtype=torch.long), m1=torch.tensor([[0, 1, 1, 0, 0, 0.0]] * 2, dtype=F64),
              m2=torch.tensor([[0, 0, 0, 0, 1, 0.0]] * 2, dtype=F64))
    r1, r2 = torch.tensor([0.0, 1], dtype=F64), torch.tensor([1.0, 1], dtype=F64)
    weights = {"stage1": (0.05, -0.015), "stage2": (0.505, -0.015)}  # row 0's loss weight on y1's and y2's tokens
    for stage, (w1, w2) in weights.items():
        model = LogProbs(lp[:, 1:])
        kl1, kl2, _ = score.rl_update(rl_args(stage, 2, alpha=10.0, beta1=0.1, beta2=1.0), model,
                                      torch.optim.SGD(model.parameters(), lr=0.0), s, r1, r2, ref)
        close(kl1, [0.4, 0.3], 1e-12, f"{stage}: kl1, the sum over y1's 2 tokens of lp - ref (README's example)")
        close(kl2, [0.0, 0.3], 1e-12, f"{stage}: kl2, over y2's token (README's example)")
        want = [[w1, w1, 0, w2, 0], [-w1, -w1, 0, -w2, 0]]  # d loss / d lp at columns 1..5: -(a1 m1 + a2 m2) / N
        close(alone.grads.pop()[0], want, 1e-12, f"{stage}: the loss's weight on each token's log-prob, "
              "-(a1 m1 + a2 m2) / N (README's worked example, step by step)")


def test_ex4_kl_estimate_expectation(alone):
    # every (y1, y2) of a 3-token vocabulary once, weighted by its probability: E[kl] is the exact KL, >= 0, and
    # 0 when the reference is the policy itself
    V = 3
    g = torch.Generator().manual_seed(0)
    th1, th2 = torch.randn(V, generator=g, dtype=F64).log_softmax(-1), torch.randn(V, V, generator=g, dtype=F64).log_softmax(-1)
    ref1, ref2 = torch.randn(V, generator=g, dtype=F64).log_softmax(-1), torch.randn(V, V, generator=g, dtype=F64).log_softmax(-1)
    y1, y2 = (torch.tensor(v) for v in zip(*itertools.product(range(V), repeat=2)))  # (9,) each
    w = torch.stack([th1[y1], torch.zeros(9, dtype=F64), th2[y1, y2]], 1)  # (9, 3) log-probs of [y1, p, y2]
    s = Batch(tokens=torch.zeros(9, 4, dtype=torch.long), m1=torch.tensor([[0, 1, 0, 0.0]] * 9, dtype=F64),
              m2=torch.tensor([[0, 0, 0, 1.0]] * 9, dtype=F64))
    prob = th1[y1].exp() * th2[y1, y2].exp()
    zero = torch.zeros(9, dtype=F64)
    for r1_, r2_, name in ((ref1, ref2, "a reference"), (th1, th2, "the policy itself as the reference")):
        ref = torch.stack([zero, r1_[y1], zero, r2_[y1, y2]], 1)
        model = LogProbs(w)
        kl1, kl2, _ = score.rl_update(rl_args("stage1", 3), model, torch.optim.SGD(model.parameters(), lr=0.0),
                                      s, zero, zero, ref)
        exact1 = (th1.exp() * (th1 - r1_)).sum()
        exact2 = (th1.exp() * (th2.exp() * (th2 - r2_)).sum(-1)).sum()
        close((prob * kl1).sum(), exact1, 1e-12, f"with {name}: E[kl1] is KL(pi(.|x) || ref(.|x)), >= 0")
        close((prob * kl2).sum(), exact2, 1e-12, f"with {name}: E[kl2] is E_y1 KL(pi(.|x,y1,p) || ref), >= 0")
        assert float(exact1) >= 0 and float(exact2) >= 0


def test_ex4_expected_gradient_by_exact_enumeration(alone):
    # one-token attempts over 3 tokens, a free logit table as the policy.
    # The sum over every group of k = 2 samples of P(group) x rl_update's gradient is its expectation exactly;
    # it must equal autograd of Eq. 2 / 3 / 4 with per-turn credit (gamma = 0) and exact KLs, to 1e-10.
    V, k = 3, 2
    g = torch.Generator().manual_seed(0)
    th1, th2, ref1, ref2 = (torch.randn(*shape, generator=g, dtype=F64).log_softmax(-1) for shape in ((V,), (V, V)) * 2)
    R = torch.tensor([1.0, 0.0, 1.0], dtype=F64)

    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.th1, self.th2 = torch.nn.Parameter(th1.clone()), torch.nn.Parameter(th2.clone())

        def forward(self, idx, targets=None):  # (N, 3): log p(y1 | x), 0 at p (masked), log p(y2 | y1)
            lp1 = self.th1.log_softmax(-1)[targets[:, 0]]
            return torch.stack([lp1, torch.zeros_like(lp1), self.th2.log_softmax(-1)[idx[:, 1], targets[:, 2]]], 1)

    pairs = list(itertools.product(range(V), repeat=2))
    m1, m2 = torch.tensor([0, 1, 0, 0], dtype=F64), torch.tensor([0, 0, 0, 1], dtype=F64)
    for stage in ("single", "stage1", "stage2"):
        model = Table()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        total = [torch.zeros_like(th1), torch.zeros_like(th2)]
        for group in itertools.product(pairs, repeat=k):
            y1, y2 = torch.tensor([a for a, _ in group]), torch.tensor([b for _, b in group])
            s = Batch(tokens=torch.stack([torch.zeros(k, dtype=torch.long), y1, torch.zeros_like(y1), y2], 1),
                      m1=m1.expand(k, 4), m2=m2.expand(k, 4))
            ref = torch.stack([torch.zeros(k, dtype=F64), ref1[y1], torch.zeros(k, dtype=F64), ref2[y1, y2]], 1)
            score.rl_update(rl_args(stage, k, beta1=0.1, beta2=0.5), model, opt, s, R[y1],
                            R[y2] if stage != "single" else torch.zeros(k, dtype=F64), ref)
            prob = (th1.exp()[y1] * th2.exp()[y1, y2]).prod()
            total = [t - prob * gr for t, gr in zip(total, alone.grads.pop())]  # loss = -objective
        a, b = torch.nn.Parameter(th1.clone()), torch.nn.Parameter(th2.clone())
        l1, l2 = a.log_softmax(-1), b.log_softmax(-1)
        kl1, kl2 = (l1.exp() * (l1 - ref1)).sum(), (l2.exp() * (l2 - ref2)).sum(-1)
        w = l1.detach().exp()  # gamma = 0: turn 2's objective sees y1's distribution as fixed
        if stage == "single":
            J = (l1.exp() * R).sum() - 0.1 * kl1
        elif stage == "stage1":
            J = -0.5 * kl1 + (w * ((l2.exp() * R).sum(-1) - 0.1 * kl2)).sum()
        else:
            r2 = R[None, :] + 10.0 * (R[None, :] - R[:, None])  # (y1, y2): r(y2) + alpha (r(y2) - r(y1))
            J = (l1.exp() * R).sum() - 0.1 * kl1 + (w * ((l2.exp() * r2).sum(-1) - 0.1 * kl2)).sum()
        want = torch.autograd.grad(J, [a, b], materialize_grads=True)
        for got, exp, name in zip(total, want, ("theta of y1", "theta of y2")):
            close(got, exp, 1e-10, f"{stage}: rl_update's expected gradient ({name}) must be the gradient of "
                  f"{dict(single='Eq. 2', stage1='Eq. 3', stage2='Eq. 4')[stage]} with per-turn credit (gamma = 0)")


# ----------------------------------------------------------------------------------------------------------
# exercise 5: the metrics of evaluate, on scripted attempts (the sampler is replaced)


def test_ex5_metrics_hand_computed(monkeypatch):
    kinds = ["RR", "RR", "RR", "WR", "-R", "RW", "WW", "--", "WX", "W-"]
    probs = toy_math.problems("test", len(kinds))
    attempts = attempts_of(kinds, probs)
    ratios = [score.edit_distance(a, b) / max(1, len(a) + len(b)) for a, b in attempts]
    want = dict(acc_t1=0.4, acc_t2=0.5, delta=0.1, delta_i_to_c=0.2, delta_c_to_i=0.1, changed=0.5,
                edit_ratio=sum(ratios) / 10, n=10, fix_rate=0.2 / 0.6)
    why = dict(acc_t1="the share of right first attempts", acc_t2="the share of right second attempts",
               delta="Delta(t1, t2) = acc@t2 - acc@t1", delta_i_to_c="Delta i->c: wrong y1, right y2, over all n",
               delta_c_to_i="Delta c->i: right y1, wrong y2, over all n",
               changed="the share whose y2 answer differs from y1's", edit_ratio="the mean edit-distance ratio",
               n="the number of problems", fix_rate="Fig. 5: Delta i->c over the share of wrong first attempts")
    for batch in (500, 3):  # in one chunk or in chunks of 3 problems: the same row
        row, _ = scripted_eval(monkeypatch, attempts, batch)
        for key, value in want.items():
            assert key in row, f"the metrics row needs {key!r}: {why[key]}"
            close(row[key], value, 1e-12, f"{key}: {why[key]} (10 scripted problems: 3 c->c, 2 i->c, 1 c->i, "
                  f"4 i->i of which 2 changed their answer; batch {batch})")


def test_ex5_metrics_properties(monkeypatch):
    g = torch.Generator().manual_seed(0)
    probs = toy_math.problems("test", 30)
    kinds = ["".join("RWX-"[int(v)] for v in torch.randint(0, 4, (2,), generator=g)) for _ in probs]
    row, _ = scripted_eval(monkeypatch, attempts_of(kinds, probs))
    close(row["delta"], row["delta_i_to_c"] - row["delta_c_to_i"], 1e-12, "Delta = Delta i->c - Delta c->i")
    assert all(0 <= row[key] <= 1 for key in ("acc_t1", "acc_t2", "delta_i_to_c", "delta_c_to_i", "changed")), (
        "accuracies and shares are fractions of n in [0, 1], not percent")
    row, _ = scripted_eval(monkeypatch, attempts_of(["RR", "RW"], probs))
    close(row["fix_rate"], 0.0, 1e-12, "every first attempt right: nothing to fix, fix_rate 0 (no division by zero)")
