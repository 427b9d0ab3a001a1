"""
bench.py: speed figures of the sampler and of one RL step, measured in one run on the same weights.

What it prints:
  1. Sampler tokens/s, ours against Hugging Face: model.GPT.generate (the engine of score.sample_two_turns)
     and transformers' GPT2LMHeadModel.generate (KV cache, do_sample=True, top_k=0 so both sample the full
     softmax) on the same weights, batch 64, the same prompts and the same number of new tokens on both: the
     models have no end-of-sequence token, so every row runs to the end. tokens/s = batch * new tokens /
     seconds, prefill included. Two models:
       toy      the toy-size GPT: 4 layers, 4 heads, width 128, the toy-math vocabulary (25), context 160;
                two shapes, those of the two-turn sampler's turn 1 (prompt 10 + 48 new) and turn 2 (69 + 48)
       gpt2     the GPT-2 124M architecture with random weights: vocabulary 50257, 12 layers, width 768
     The weights are made once by transformers, saved with save_pretrained and loaded into ours with
     GPT.from_pretrained. Also the two-turn sampler itself (score.sample_two_turns) on 64 toy-math prompts.
  2. The wall-time split of one RL step at train_small.sh's setting (stage 2, 32 prompts x k 4 = 128 samples,
     temperature 0.7, 48 new tokens per turn, toy model): sampling, rewards, reference log-probs, and the
     update (forward, backward, clipping, AdamW: score.rl_update).
  3. The update's achieved FLOP/s as a share of the matmul peak measured in the same run (a large fp32
     matmul; bf16 too). FLOPs of the update = 6 * P * tokens + 6 * n_layer * T * C * tokens: forward 2 and
     backward 4 FLOPs per parameter per token, P the parameters that multiply (all but the position
     embedding; the tied token embedding counted once, as the output head), plus causal attention (QK^T and AV,
     on average T/2 keys per query, forward and backward). tokens = every position the forward processes,
     padding included (N * (T - 1)).
Timing: one warm-up run, then the median of --repeats runs (wall clock, device synchronised). Ours and
Hugging Face alternate run by run, in one process with the same torch thread count, so a change of load hits
both alike. With random weights a turn ends only when <eot> is sampled by chance; --init takes a trained toy
checkpoint instead for the RL step.

Run:  python bench.py                  (about 2-3 minutes on a 2-core CPU)
      python bench.py --quick          (a smoke run of every part; its figures are rough)
      python bench.py --device cuda --threads 8
"""
import argparse
import copy
import os
import platform
import statistics
import tempfile
import time

import torch

import score
from data import toy_math
from model import GPT, autocast, get_device, load_checkpoint
from tokenizer import CharTokenizer, from_description

p = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
p.add_argument("--device", default="", help="cpu | cuda | mps; empty = autodetect cuda -> mps -> cpu")
p.add_argument("--threads", type=int, default=0, help="torch CPU threads for everything (0: torch's default, "
               "one per core)")
p.add_argument("--quick", action="store_true", help="smoke run: one repeat, few new tokens")
p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median), after one warm-up")
p.add_argument("--init", default="", help="a toy checkpoint (e.g. out_small/base.pt) for the RL step; "
               "default: the toy-size model with random weights")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed(fns, repeats, device):
    """Median wall seconds of each function, after one warm-up run of each; the functions alternate."""
    times = [[] for _ in fns]
    for r in range(repeats + 1):
        for f, ts in zip(fns, times):
            sync(device)
            t0 = time.perf_counter()
            f()
            sync(device)
            if r:  # run 0 is the warm-up
                ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def hf_and_ours(vocab, n_layer, n_head, n_embd, block, device):
    """A random GPT-2 from transformers and the same weights in our GPT (through save_pretrained/from_pretrained)."""
    import transformers
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=block, n_layer=n_layer, n_head=n_head,
                                  n_embd=n_embd, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = GPT.from_pretrained(d).eval()
    return hf.to(device), ours.to(device)


def sampler_vs_hf(hf, ours, prompt_len, new, batch, repeats, device):
    """(ours, HF) new tokens/s of batched sampling at temperature 1 from the same prompts."""
    import transformers
    x = torch.randint(0, ours.config.vocab_size, (batch, prompt_len), generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    g = torch.Generator(device=device).manual_seed(0)
    gen_cfg = transformers.GenerationConfig(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, use_cache=True,
                                            max_new_tokens=new, min_new_tokens=new, pad_token_id=0)

    def run_ours():
        with autocast(device):
            assert ours.generate(x, new, temperature=1.0, generator=g).shape == (batch, prompt_len + new)

    def run_hf():
        with autocast(device):
            out = hf.generate(x, attention_mask=torch.ones_like(x), generation_config=gen_cfg)
        assert out.shape == (batch, prompt_len + new)

    t_ours, t_hf = timed([run_ours, run_hf], repeats, device)
    return batch * new / t_ours, batch * new / t_hf


def two_turn_rate(model, tok, batch, max_new, repeats, device):
    """Sampled tokens/s of score.sample_two_turns on toy-math prompts (both turns, all overheads)."""
    prompts = [tok.encode(q["prompt"]) for q in toy_math.problems("train", batch, seed=0)]
    g = torch.Generator(device=device).manual_seed(0)
    n = []

    def run():
        with autocast(device):
            s = score.sample_two_turns(model, tok, prompts, toy_math.INSTRUCTION, max_new, 1.0, g)
        n.append(float((s["m1"] + s["m2"]).sum()))

    (t,) = timed([run], repeats, device)
    return statistics.median(n) / t


def rl_step_split(policy, tok, repeats, device):
    """Median seconds of each phase of train_rl's step at train_small's setting; the (N, T) shape and seconds
    of each timed update, for its FLOP/s."""
    args = score.p.parse_args(["--stage", "stage2", "--batch", "32", "--k", "4", "--temperature", "0.7",
                               "--lr", "2e-4", "--max_new", "48"])
    args.device = device
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, weight_decay=0.0, fused=device.type == "cuda")
    problems = toy_math.problems("train", args.batch * (repeats + 1), seed=0)
    gen = torch.Generator(device=device).manual_seed(0)
    phases = {"sampling": [], "rewards": [], "reference log-probs": [], "update (fwd+bwd+AdamW)": []}
    updates = []
    for r in range(repeats + 1):
        batch = problems[r * args.batch:(r + 1) * args.batch]
        prompts = [tok.encode(q["prompt"]) for q in batch for _ in range(args.k)]
        probs = [q for q in batch for _ in range(args.k)]
        marks = [time.perf_counter()]

        def mark():
            sync(device)
            marks.append(time.perf_counter())
        policy.eval()
        with autocast(device):
            s = score.sample_two_turns(policy, tok, prompts, toy_math.INSTRUCTION, args.max_new, args.temperature,
                                       gen)
        policy.train()
        mark()
        r1 = torch.tensor([score.reward(a, q) for a, q in zip(s["y1"], probs)], device=device)  # (N,)
        r2 = torch.tensor([score.reward(b, q) for b, q in zip(s["y2"], probs)], device=device)  # (N,)
        mark()
        with torch.inference_mode(), autocast(device):
            ref_lp = score.token_logprobs(ref, s["tokens"])  # (N, T)
        mark()
        score.rl_update(args, policy, opt, s, r1, r2, ref_lp)
        mark()
        if r:  # run 0 is the warm-up
            for name, a, b in zip(phases, marks, marks[1:]):
                phases[name].append(b - a)
            updates.append((*s["tokens"].shape, marks[4] - marks[3]))
    return {k: statistics.median(v) for k, v in phases.items()}, updates


def matmul_peak(dtype, device, repeats):
    """FLOP/s of one large square matmul."""
    n = 4096 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    (t,) = timed([lambda: a @ b], repeats, device)
    return 2 * n ** 3 / t


def main():
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device or None)
    import transformers
    transformers.logging.set_verbosity_error()  # min_new_tokens without an eos token is intended here
    transformers.utils.logging.disable_progress_bar()
    reps = 1 if args.quick else args.repeats
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   cpu)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    print(f"device {device} ({where}), {os.cpu_count()} CPU cores, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, transformers {transformers.__version__}, repeats {reps}")
    tok = CharTokenizer(toy_math.ALPHABET)
    rows = []

    # 1. sampler against Hugging Face generate, batch 64
    hf, ours = hf_and_ours(tok.vocab_size, 4, 4, 128, 160, device)
    toy_new = 8 if args.quick else 48
    for shape, prompt_len in (("turn 1", 10), ("turn 2", 69)):
        a, b = sampler_vs_hf(hf, ours, prompt_len, toy_new, 64, reps, device)
        rows.append((f"toy {ours.num_params() / 1e6:.2f}M, {shape}", f"{prompt_len} + {toy_new}", a, b))
        print(f"sampler, toy, {shape}: ours {a:,.0f} tok/s, HF {b:,.0f} tok/s, ratio {a / b:.2f}")
    two_turn = two_turn_rate(ours, tok, 64, toy_new, reps, device)
    print(f"two-turn sampler (score.sample_two_turns), toy, 64 prompts: {two_turn:,.0f} sampled tok/s")
    del hf
    hf2, ours2 = hf_and_ours(50257, 12, 12, 768, 1024, device)
    gpt2_new = 4 if args.quick else 32
    a, b = sampler_vs_hf(hf2, ours2, 16, gpt2_new, 64, reps, device)
    rows.append((f"GPT-2 {ours2.num_params() / 1e6:.0f}M (random)", f"16 + {gpt2_new}", a, b))
    print(f"sampler, GPT-2 124M: ours {a:,.0f} tok/s, HF {b:,.0f} tok/s, ratio {a / b:.2f}")
    del hf2, ours2

    # 2. the RL step at train_small's setting
    if args.init:
        policy, state = load_checkpoint(args.init)
        policy, tok = policy.to(device), from_description(state["tokenizer"])
    else:
        policy = ours
    split, updates = rl_step_split(policy, tok, reps, device)
    total = sum(split.values())
    print(f"RL step ({'--init ' + args.init if args.init else 'random toy weights'}): " +
          ", ".join(f"{k} {v:.3f} s" for k, v in split.items()) + f", total {total:.3f} s")

    # 3. the update's FLOP/s against the measured matmul peak
    c = policy.config
    P = policy.num_params() - policy.transformer.wpe.weight.numel()
    N, T = updates[0][:2]

    def update_flops(N, T, attention=True):  # the forward sees T - 1 positions of each of N sequences
        return 6 * P * N * (T - 1) + attention * 6 * c.n_layer * (T - 1) * c.n_embd * N * (T - 1)
    flops = statistics.median(update_flops(n, t) for n, t, _ in updates)
    achieved = statistics.median(update_flops(n, t) / s for n, t, s in updates)
    achieved_6pd = statistics.median(update_flops(n, t, attention=False) / s for n, t, s in updates)
    peak32 = matmul_peak(torch.float32, device, reps)
    peak16 = matmul_peak(torch.bfloat16, device, reps)
    print(f"update: {N} x {T - 1} positions (first timed run), {flops / 1e9:.1f} GFLOP, {achieved / 1e9:.1f} GFLOP/s; matmul peak "
          f"fp32 {peak32 / 1e9:.1f}, bf16 {peak16 / 1e9:.1f} GFLOP/s")

    # the summary, in markdown
    print(f"\n### Sampler, batch 64, new tokens/s ({device}, {torch.get_num_threads()} threads)\n")
    print("| model | prompt + new tokens | ours | HF generate | ours / HF |\n|---|---|---|---|---|")
    for name, shape, a, b in rows:
        print(f"| {name} | {shape} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |")
    print(f"| two-turn sampler, toy, 64 toy-math prompts | 10 + {toy_new}, then ~69 + {toy_new} | {two_turn:,.0f} | | |")
    weights = args.init or "random weights"
    print(f"\n### RL step, stage 2, 32 prompts x k 4, toy model, {weights} ({N} sequences of {T} tokens)\n")
    print("| phase | seconds | share |\n|---|---|---|")
    for name, t in split.items():
        print(f"| {name} | {t:.3f} | {100 * t / total:.0f}% |")
    print(f"| total | {total:.3f} | 100% |")
    print("\n### Update step FLOP/s\n")
    print("| GFLOP per update | achieved GFLOP/s | fp32 matmul peak GFLOP/s | share of fp32 peak | "
          "share, 6·P·tokens only | bf16 matmul peak GFLOP/s |\n|---|---|---|---|---|---|")
    print(f"| {flops / 1e9:.1f} | {achieved / 1e9:.1f} | {peak32 / 1e9:.1f} | {100 * achieved / peak32:.0f}% | "
          f"{100 * achieved_6pd / peak32:.0f}% | {peak16 / 1e9:.1f} |")


if __name__ == "__main__":
    main()
