"""
test_score.py: the project's test suite (pytest). Run from the repo root:  python -m pytest -q test_score.py

Sections: model (HF parity, sampler, checkpoints, bad input), tokenizers. transformers is the test-time
reference only. Tests that need ../shared (the GPT-2 BPE files, real data sets) skip with the reason when it
is absent, as on a user's clone.
"""
import os
import sys
from pathlib import Path

import pytest
import torch

from model import GPT, GPTConfig, load_checkpoint, save_checkpoint
from tokenizer import CharTokenizer, GPT2Tokenizer, from_description

SHARED = Path(__file__).resolve().parent.parent / "shared"

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
    with pytest.raises(ValueError, match=r"shape mismatch for transformer\.h\.0\.attn\.c_attn\.bias: checkpoint \(192,\), model \(96,\)"):
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


def test_gpt2_bpe_real_vocabulary(monkeypatch):
    cache = SHARED / "tiktoken_cache"
    if not cache.is_dir():
        pytest.skip(f"{cache} absent (the GPT-2 BPE files); tests never download")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    tok = GPT2Tokenizer()
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.decode(tok.encode("x = 3\n<|endoftext|>")) == "x = 3\n<|endoftext|>"
    assert tok.eos_id == 50256 and tok.vocab_size == 50257
    assert from_description(tok.describe()).encode("Hello world") == [15496, 995]


# ----------------------------------------------------------------------------------------------------------
# the toy math task and the base corpus

import score  # noqa: E402  (argparse is built at import; main() parses only when called)
from data import toy_math  # noqa: E402


def test_toy_math_splits_disjoint_and_solver_exact():
    test = toy_math.problems("test", 1000)
    train = toy_math.problems("train", 5000)
    key = lambda q: tuple(sorted(q["terms"]))  # a problem's identity ignores operand order
    assert len({key(q) for q in test}) == 1000 and not {key(q) for q in test} & {key(q) for q in train}
    for q in test:  # the correct solver is exact; the misconception fails exactly on chained carries
        assert score.reward(toy_math.solve(q["terms"]), q) == 1.0
    buggy = [score.reward(toy_math.solve(q["terms"], toy_math.random.Random(0), p_bug=1.0), q) for q in test]
    assert 0.3 < sum(buggy) / len(buggy) < 0.7


def test_base_corpus_never_contains_held_out_problems():
    tok = CharTokenizer(toy_math.ALPHABET)
    task = score.Task(toy_math, toy_math.INSTRUCTION, toy_math.ALPHABET)
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
        assert (m1 * m2).sum() == 0 and (m1 + m2)[len([t for t in row if t != tok.pad_id]):].sum() == 0
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


def test_metrics_on_hand_built_answers():
    assert score.edit_distance("kitten", "sitting") == 3 and score.answer_of("1+1+0=02,ans:00002") == "00002"
    assert score.reward("x,ans:01807", {"answer": "1807"}) == 1.0 and score.reward("ans:", {"answer": "0"}) == 0.0


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
    score.main(["--stage", "stage2", *common, "--init", f"{out}/stage1.pt", "--batch", "4", "--k", "2", "--steps", "2"])
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
