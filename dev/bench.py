"""
dev/bench.py: speed figures of the sampler and of one RL step, measured in one run on the same weights.

1. Sampler new tokens/s, batch 64, prefill included: ours (model.GPT.generate, under score.sample_two_turns) vs
   transformers' GPT2LMHeadModel.generate (KV cache, top_k=0: both sample the full softmax), same random weights
   (loaded by GPT.from_pretrained), prompts and lengths (no eos token). The toy GPT (4 layers, 4 heads, width 128)
   at turn 1's (10 + 48) and turn 2's (69 + 48) shapes, GPT-2 124M (16 + 32), score.sample_two_turns itself.
2. One RL step's wall-time split at train_small.sh's setting (stage 2, 32 prompts x k 4, temperature 1, max_new 40
   for toy math, 48 for toy code): sampling, rewards, reference log-probs, update (score.rl_update), and the
   rest of the step (prompts, the reward tensors: Python). --task toy_code grades in the sandbox.
3. The update's FLOP/s against a large fp32 (and bf16) matmul's measured peak. FLOPs = 6 P tokens (forward 2 +
   backward 4 per weight that multiplies, the tied embedding once) + 6 n_layer T C tokens (causal attention, T/2
   keys per query on average); tokens = N (T - 1), padding included.
Timing: median of --repeats runs after one warm-up, device synchronised; ours and HF alternate run by run, so load
hits both alike. Random weights end a turn only on a chance <eot>: --init takes a trained toy model for the RL step.
Run:  python dev/bench.py [--quick] [--device cuda --threads 8]    (2-3 min on 2 CPU cores; --quick: rough figures)
"""
import argparse, copy, os, platform, statistics, sys, tempfile, time  # noqa: E401

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # the project's modules
import score  # noqa: E402
from model import GPT, autocast, get_device  # noqa: E402
from runs import load_checkpoint  # noqa: E402
from tokenizer import CharTokenizer, from_description  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
p.add_argument("--device", default="", help="cpu | cuda | mps; empty = autodetect cuda -> mps -> cpu")
p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, one per core)")
p.add_argument("--quick", action="store_true", help="smoke run: one repeat, few new tokens")
p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median), after one warm-up")
p.add_argument("--init", default="", help="toy checkpoint for the RL step, e.g. out_small/base.pt (default: random)")
p.add_argument("--task", choices=["toy_math", "toy_code"], default="toy_math", help="the RL step's task (--init's)")
TASK = score.toy_task("toy_math")


def now(device):
    if device.type != "cpu":  # cuda, mps: wait for the queued kernels
        getattr(torch, device.type).synchronize()
    return time.perf_counter()


def timed(fns, repeats, device):
    """Median wall seconds of each function, after one warm-up run of each; the functions alternate run by run."""
    times = [[] for _ in fns]
    for r in range(repeats + 1):
        for f, ts in zip(fns, times):
            t0 = now(device)
            f()
            ts.append(now(device) - t0)
    return [statistics.median(ts[1:]) for ts in times]  # run 0 is the warm-up


def sampler_vs_hf(labels, vocab, n_layer, n_head, n_embd, block, new, repeats, device, batch=64):
    """Prints ours and HF's new tokens/s (temperature 1) for each {prompt length: row label}; returns our GPT."""
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=block, n_layer=n_layer, n_head=n_head,
                                  n_embd=n_embd, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = GPT.from_pretrained(d).eval().to(device)
    hf, g = hf.to(device), torch.Generator(device=device).manual_seed(0)
    gen = transformers.GenerationConfig(do_sample=True, top_k=0, max_new_tokens=new, min_new_tokens=new, pad_token_id=0)
    for n, label in labels.items():
        x = torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(0)).to(device)
        with autocast(device):  # no eos token: every row of both gets all `new` tokens
            ts = timed([lambda: ours.generate(x, new, temperature=1.0, generator=g),
                        lambda: hf.generate(x, attention_mask=torch.ones_like(x), generation_config=gen)], repeats, device)
        a, b = (batch * new / t for t in ts)
        print(f"| {label.format(ours.num_params() / 1e6)} | {n} + {new} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x |")
    return ours


def two_turns(model, tok, probs, max_new, temperature, gen):
    with autocast(gen.device):  # as train_rl samples
        return score.sample_two_turns(model.eval(), tok, [tok.encode(q["prompt"]) for q in probs], TASK.instruction,
                                      max_new, temperature, gen)


def rl_step_split(policy, tok, repeats, device, task_name):
    """Seconds of each phase of train_rl's step at train_small's setting, each timed run; (N, T) of each update."""
    max_new = 48 if task_name == "toy_code" else 40
    args = score.p.parse_args(f"--stage stage2 --batch 32 --k 4 --temperature 1 --lr 1e-4 --max_new {max_new}".split())
    args.device, task = device, score.toy_task(task_name)
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, weight_decay=0.0, fused=device.type == "cuda")
    problems = task.module.problems("train", args.batch * (repeats + 1), seed=0)
    gen, laps = torch.Generator(device=device).manual_seed(0), []
    for r in range(repeats + 1):
        t = [now(device)]
        probs = [q for q in problems[r * args.batch:(r + 1) * args.batch] for _ in range(args.k)]  # N, grouped
        prompts = [tok.encode(q["prompt"]) for q in probs]
        t.append(now(device))
        policy.eval()
        with autocast(device):  # as train_rl samples
            s = score.sample_two_turns(policy, tok, prompts, task.instruction, args.max_new, args.temperature, gen)
        t.append(now(device))
        r = score.rewards_of(s["y1"] + s["y2"], probs + probs)  # one grading call, as train_rl
        t.append(now(device))
        r1, r2 = torch.tensor(r, device=device).view(2, -1)  # (N,), (N,)
        t.append(now(device))
        with torch.inference_mode(), autocast(device):
            ref_lp = score.token_logprobs(ref, s["tokens"])  # (N, T)
        t.append(now(device))
        score.rl_update(args, policy.train(), opt, s, r1, r2, ref_lp)
        laps.append([b - a for a, b in zip(t, t[1:] + [now(device)])] + [tuple(s["tokens"].shape)])
    *phases, shapes = zip(*laps[1:])  # run 0 is the warm-up
    names = ("prompts (Python)", "sampling", "rewards (grading)", "reward tensors (Python)", "reference log-probs",
             "update (fwd+bwd+AdamW)")
    return dict(zip(names, phases)), shapes


def main():
    args = p.parse_args()
    if args.task == "toy_code" and not args.init:
        p.error("--task toy_code needs --init, a toy-code checkpoint (e.g. TASK=toy_code train_small.sh's stage1.pt)")
    torch.set_num_threads(args.threads or torch.get_num_threads())
    device, reps, th = get_device(args.device or None), 1 if args.quick else args.repeats, torch.get_num_threads()
    transformers.logging.set_verbosity_error()  # min_new_tokens without an eos token is intended here
    transformers.utils.logging.disable_progress_bar()
    cpu = [s.split(":", 1)[1].strip() for s in open("/proc/cpuinfo") if s.startswith("model name")][:1] \
        if os.path.exists("/proc/cpuinfo") else []
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (cpu or [platform.machine()])[0]
    print(f"device {device} ({where}), {os.cpu_count()} CPU cores, torch {torch.__version__} with {th} threads, "
          f"transformers {transformers.__version__}, repeats {reps}\n\n### Sampler, batch 64, new tokens/s ({device}, "
          f"{th} threads)\n\n| model | prompt + new tokens | ours | HF generate | ours / HF |\n|---|---|---|---|---|")
    tok = CharTokenizer(TASK.alphabet)
    toy_new, gpt2_new = (8, 4) if args.quick else (48, 32)
    ours = sampler_vs_hf({10: "toy {:.2f}M, turn 1", 69: "toy {:.2f}M, turn 2"}, tok.vocab_size, 4, 4, 128, 160,
                         toy_new, reps, device)
    sampler_vs_hf({16: "GPT-2 {:.0f}M (random)"}, 50257, 12, 12, 768, 1024, gpt2_new, reps, device)
    probs, g, n = TASK.module.problems("train", 64, seed=0), torch.Generator(device=device).manual_seed(0), []
    t = timed([lambda: n.append(two_turns(ours, tok, probs, toy_new, 1.0, g))], reps, device)[0]  # all overheads
    n = statistics.median(float((s["m1"] + s["m2"]).sum()) for s in n[1:])  # sampled tokens of both turns
    print(f"| two-turn sampler, toy, 64 toy-math prompts | 10 + {toy_new}, then ~69 + {toy_new} | {n / t:,.0f} | | |")

    policy, state = load_checkpoint(args.init) if args.init else (ours, {"tokenizer": tok.describe()})  # 2. the RL step
    times, updates = rl_step_split(policy.to(device), from_description(state["tokenizer"]), reps, device, args.task)
    split = {k: statistics.median(v) for k, v in times.items()}
    total = sum(split.values())
    print(f"\n### RL step, stage 2, 32 prompts x k 4, {args.task}, {args.init or 'random weights'} ({updates[0][0]} "
          f"sequences of {updates[0][1]} tokens)\n\n| phase | seconds | share |\n|---|---|---|")
    for name, t in list(split.items()) + [("total", total)]:
        print(f"| {name} | {t:.3f} | {100 * t / total:.0f}% |")

    # 3. the update's FLOP/s against the measured peak of one large square matmul
    c, m = policy.config, 4096 if device.type == "cuda" else 2048
    P = policy.num_params() - sum(w.numel() for k, w in policy.named_parameters() if "wpe" in k)
    flops = lambda N, T, attn=True: 6 * N * (T - 1) * (P + attn * c.n_layer * (T - 1) * c.n_embd)  # noqa: E731
    runs = list(zip(updates, times["update (fwd+bwd+AdamW)"]))
    achieved, achieved_6pd = (statistics.median(flops(*nt, a) / s for nt, s in runs) for a in (True, False))
    peak32, peak16 = (2 * m ** 3 / timed([lambda: a @ a], reps, device)[0]
                      for a in (torch.randn(m, m, device=device).to(dt) for dt in (torch.float32, torch.bfloat16)))
    print("\n### Update step FLOP/s\n\n| GFLOP per update | achieved GFLOP/s | fp32 matmul peak GFLOP/s | share of fp32 "
          "peak | share, 6·P·tokens only | bf16 matmul peak GFLOP/s |\n|---|---|---|---|---|---|")
    print(f"| {statistics.median(flops(*nt) for nt in updates) / 1e9:.1f} | {achieved / 1e9:.1f} | {peak32 / 1e9:.1f} | "
          f"{100 * achieved / peak32:.0f}% | {100 * achieved_6pd / peak32:.0f}% | {peak16 / 1e9:.1f} |")


if __name__ == "__main__":
    main()
