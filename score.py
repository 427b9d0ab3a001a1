"""
score.py: SCoRe (Kumar, Zhuang et al. 2024, "Training Language Models to Self-Correct via RL"), training and
evaluation in one readable file. A model answers a problem (attempt y1), is shown a fixed correction
instruction p, and answers again (y2). Stages (--stage):
  base    pre-train the toy base model on the imperfect solver's two-turn traces (data/toy_*.py): it makes
          real first-attempt mistakes and does not self-correct, like the paper's instruction-tuned start.
  stage1  Eq. 3:  max E[ r(y2) - beta2 KL(pi(.|x) || ref(.|x)) - beta1 KL(pi(.|x,y1,p) || ref) ]
          learn to correct while the strong beta2 KL pins the *first* attempt to the base model.
  stage2  Eq. 4:  max E[ sum_i  r^(y_i) - beta1 KL ],  r^(y1) = r(y1),  r^(y2) = r(y2) + alpha (r(y2) - r(y1))
          both attempts trained, each credited with its own reward (gamma = 0), plus the progress bonus.
          What the bonus does: with gamma = 0, its -alpha r(y1) is fixed before y2 is sampled, so for y2's
          gradient it is a baseline; in expectation Eq. 4 is  max E[ r(y1) + (1 + alpha) r(y2) - beta1 KL ]:
          the bonus weights the second attempt's reward (1 + alpha) times the first's, and Table 4's
          "w/o reward shaping" ablation is a turn-weighting ablation (an exact test checks this).
  single  Eq. 2 on the first attempt alone: max E[ r(y1) - beta1 KL ] (Table 4's "w/o multi-turn training").
  eval    greedy two-turn test metrics (acc@t1, acc@t2, delta, delta i->c, delta c->i, answer changed, edit
          ratio); --fixed_y1 NAME: correcting NAME's first attempts (Fig. 5); --scaling K: section 6.3's study.
Tasks (--task): toy_math (default) and toy_code are trained from scratch by --stage base; math, gsm8k, mbpp
(MBPP -> HumanEval) and words (word problems a 135M model partly solves) start RL from --init, an HF directory,
with the paper's prompts (data/real.py). Fine-tuning baselines (STaR, Pair-SFT): baselines.py; reproduce.sh runs all.

Estimators, one each:
  - Policy gradient: REINFORCE with the leave-one-out baseline over k samples per prompt (RLOO, Ahmadian et
    al. 2024, the paper's cited REINFORCE): advantage_i = c_i - mean_{j != i} c_j, computed per turn.
  - KL: the k1 estimate  sum_t [log pi(y_t) - log ref(y_t)]  of each turn, folded into that turn's reward
    (detached); its REINFORCE gradient is an unbiased estimate of the gradient of KL(pi || ref).
  - Loss averaging: sum over a turn's tokens (a sequence-level policy gradient), mean over samples.

Departures from the paper, numbered:
  1. Toy scale: a ~1M-parameter GPT trained from scratch in minutes replaces Gemini; RL lr 2e-4 (Stage I), 1e-4
     (Stage II; toy code 2.5e-5, 50 steps), not 5e-6 (1e-3 wrecked the policy in 5 steps); 100 steps a stage.
  2. Per-turn credit (gamma = 0) also in Stage I: y1 is trained only by its KL term there, so the reward of y2
     does not leak into the first attempt (the paper states gamma = 0 for Stage II, Appendix A.2).
  3. The stage's checkpoint: with --eval_every, the best greedy validation acc@t2 (the paper: the highest
     *training* reward) of every eval_every-th step, and of its start with --val_start (toy code: there Stage
     II can lose what Stage I learnt, docs/reproduce.md); without, the last step.
  4. train_small.sh uses beta2 = 1.0 in Stage I, not 0.1: on the first toy version 0.1 let the greedy first
     attempt drift from 65.7% to 52.1% in 100 steps (validation); 1.0 held it at 64.1%.
  5. The toy's answer is read from the attempt's columns (toy_math.answer), not a stated final answer: a
     separate answer line could be fixed in y1 by the same lookup y2 uses, erasing the toy's asymmetry.
  6. Real-model memory: --dtype / --ref_dtype bf16, --grad_ckpt, and log-probs computed a few hundred
     positions at a time (never the whole (N, T, vocab) logits); decoding is our KV-cache loop (no vLLM).

Run:  bash train_small.sh   (base -> Stage I -> Stage II -> table);  one stage: python score.py --stage stage1
      --init out_small/base.pt;  DDP: torchrun --nproc_per_node=N score.py ... (--batch is the total; each rank
      samples batch/N prompts with seed + rank; rank 0 alone prints and writes)
"""
import argparse
import json
import math
import os
import random
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from data import real, toy_code, toy_math
from model import GPT, GPTConfig, autocast
from runs import (at_least, check_context, check_skips, ddp_wrap, last_path, load_checkpoint, load_model, logger,
                  merge_rows, one_writer, resume, run_id, save_checkpoint, setup_ddp, step_if_finite)
from rewards import toy_code_rewards
from tokenizer import CharTokenizer, from_description

# ----------------------------------------------------------------------------------------------------------
# configuration (`common` is shared with baselines.py); bad values stop the run at start, naming the flag


common = argparse.ArgumentParser(add_help=False)
common.add_argument("--task", choices=["toy_math", "toy_code", "math", "gsm8k", "mbpp", "words"] + [
    "toy_math_" + r for r in toy_math.REGIMES if r != "default"], default="toy_math", help="toy_math | toy_code "
    "(data/toy_*.py, from scratch) | math | gsm8k | mbpp | words (data/real.py) | toy_math_<regime> (REGIMES)")
common.add_argument("--init", default="", help="checkpoint to start from: our .pt, or a Hugging Face GPT-2 / Llama "
                    "/ Qwen2 directory; empty = a fresh model (base)")
common.add_argument("--out", default="out_small", help="output directory: checkpoints, metrics.jsonl, results.json")
common.add_argument("--name", default="", help="checkpoint name to write (default: the stage; stage2 -> score)")
common.add_argument("--seed", type=int, default=0, help="seeds problem order, sampling and init")
common.add_argument("--device", default="", help="cpu | cuda | mps; empty = autodetect cuda -> mps -> cpu")
common.add_argument("--k", type=at_least(2), default=4, help="samples per prompt (RL: the RLOO group)")
common.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (paper: 1.0)")
common.add_argument("--max_new", type=at_least(1), default=40, help="max tokens per attempt")
common.add_argument("--warmup", type=at_least(1), default=10, help="linear lr warmup steps (Adam's first steps on "
                    "noisy gradients otherwise jolt a small pre-trained model)")
common.add_argument("--n_val", type=at_least(1), default=200, help="validation problems for the checkpoint choice")
p = argparse.ArgumentParser(description=__doc__.split("\n")[1], parents=[common],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
p.add_argument("--stage", choices=["base", "stage1", "stage2", "single", "eval"], required=True, help="see above")
p.add_argument("--data", default="data/raw", help="real tasks: the folder `python data/real.py` writes")
p.add_argument("--train_file", default="", help="real tasks: training problems instead of the --data default")
p.add_argument("--test_file", default="", help="real tasks: evaluation problems instead of the --data default")
p.add_argument("--ref", default="", help="frozen KL reference (default: stage1's --init; stage2 reads its init's)")
p.add_argument("--evaluate", default="base,stage1,score", help="eval: comma-separated checkpoint names in --out")
p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="policy weights (bf16 halves memory, but "
               "AdamW updates below bf16's 2^-8 relative resolution are lost)")
p.add_argument("--ref_dtype", choices=["", "fp32", "bf16"], default="", help="reference weights; empty = --dtype")
p.add_argument("--grad_ckpt", action="store_true", help="recompute each block in backward (activation memory)")
p.add_argument("--compile", action="store_true", help="torch.compile the training forward/backward (GPU)")
p.add_argument("--n_layer", type=at_least(1), default=4, help="base: transformer blocks")
p.add_argument("--n_head", type=at_least(1), default=4, help="base: attention heads")
p.add_argument("--n_embd", type=at_least(1), default=128, help="base: residual width")
p.add_argument("--block_size", type=at_least(2), default=128, help="base: context length in tokens")
p.add_argument("--steps", type=at_least(1), default=50, help="optimizer steps of this stage")
p.add_argument("--lr", type=float, default=2e-4, help="AdamW lr (after warmup: RL constant, base cosine to 0)")
p.add_argument("--batch", type=at_least(1), default=64, help="prompts per step (RL) or sequences per step (base)")
p.add_argument("--alpha", type=float, default=10.0, help="Stage II: progress bonus weight (paper: 10)")
p.add_argument("--beta1", type=float, default=0.01, help="KL weight on every turn (paper: 0.01)")
p.add_argument("--beta2", type=float, default=0.1, help="Stage I: KL weight on the first attempt (paper: 0.1)")
p.add_argument("--n_test", type=at_least(1), default=1000, help="held-out test problems for eval (greedy)")
p.add_argument("--eval_batch", type=at_least(1), default=500, help="eval: problems sampled at once (KV-cache memory)")
p.add_argument("--fixed_y1", default="", help="eval: also correct this checkpoint's greedy first attempts (Fig. 5)")
p.add_argument("--scaling", type=at_least(0), default=0, help="eval: the inference-scaling study at budgets 2..K "
               "instead of the table, to scaling.json (0: off)")
p.add_argument("--scaling_temperature", type=float, default=0.7, help="eval --scaling: temperature (paper: 0.7)")
p.add_argument("--eval_every", type=at_least(0), default=0, help="greedy eval on n_val validation problems every N "
               "steps; the stage keeps the best validation acc@t2 (0: off, the last step)")
p.add_argument("--val_start", action="store_true", help="with --eval_every: the start (step 0) is a candidate too")
p.add_argument("--ckpt_every", type=at_least(1), default=10, help="write the resumable <name>_last.pt every N steps")
p.add_argument("--resume", action="store_true", help="continue from <out>/<name>_last.pt if it belongs to this run")


def toy_task(name):
    """A toy task: its problems/corpus module, the correction instruction, the character vocabulary."""
    if name.startswith("toy_math"):
        return SimpleNamespace(module=toy_math.regime(name[9:]) if name[9:] else toy_math,
                               instruction=toy_math.INSTRUCTION, alphabet=toy_math.ALPHABET, chat=False)
    alphabet = "".join(sorted(set(toy_code.ALPHABET + toy_code.INSTRUCTION)))  # the instruction is spelled too
    return SimpleNamespace(module=toy_code, instruction=toy_code.INSTRUCTION, alphabet=alphabet, chat=False)


def check_flags(args):
    """What argparse cannot check alone, checked before any work."""
    bad = [why for why, wrong in [
        (f"--temperature {args.temperature}: RL samples its policy at a temperature > 0 (0 is greedy)",
         args.stage in ("stage1", "stage2", "single") and not args.temperature > 0),
        (f"--n_head {args.n_head} must divide --n_embd {args.n_embd}", args.n_embd % args.n_head),
        (f"--scaling {args.scaling}: the smallest budget is 2 samples", args.scaling == 1),
        (f"--lr {args.lr} must be a positive number", not 0 < args.lr < float("inf"))] if wrong]
    if bad:
        p.error("; ".join(bad))


def derive(args):
    check_flags(args)
    args.name = args.name or {"stage2": "score"}.get(args.stage, args.stage)
    setup_ddp(args)  # sets device, ddp, rank, world and master (rank 0 alone prints and writes)
    args.task_ = toy_task(args.task) if args.task.startswith("toy") else real.task(args)
    return args


# ----------------------------------------------------------------------------------------------------------
# rewards (binary): the toy math integer the columns spell, toy code's hidden tests, the real tasks' graders


def final_answer(text, problem):
    """What an attempt answers, to tell whether y2 changed y1's answer."""
    grader = problem.get("grader")
    if grader == "toy_code":
        return text.strip()
    if grader is None:  # toy math
        return toy_math.answer(text, problem.get("regime", "default"))
    return real.final_answer(text, problem)


def reward(text, problem):
    grader = problem.get("grader")  # toy math problems have none
    if grader == "toy_code":
        return toy_code_rewards([problem], [text])[0]
    if grader is not None:
        return real.reward(text, problem)
    a = toy_math.answer(text, problem.get("regime", "default"))
    return float(a is not None and a == int(problem["answer"]))


def rewards_of(texts, problems):
    """reward() of many attempts; toy code programs run in one sandboxed batch (2 workers), not one by one."""
    if problems and problems[0].get("grader") == "toy_code":
        return toy_code_rewards(problems, texts)
    return [reward(t, q) for t, q in zip(texts, problems)]


# ----------------------------------------------------------------------------------------------------------
# the two-turn sampler


def left_pad(rows, pad_id, device):
    """List of token lists -> idx (B, T) left-padded, valid (B, T) True on real tokens."""
    T = max(len(r) for r in rows)
    idx = torch.full((len(rows), T), pad_id, dtype=torch.long)
    valid = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, r in enumerate(rows):
        idx[i, T - len(r):] = torch.tensor(r, dtype=torch.long)
        valid[i, T - len(r):] = True
    return idx.to(device), valid.to(device)


def ended(tokens, eos_id):
    """A sampled turn as a list, cut after its first end-of-turn token; (tokens, hit_eos)."""
    return (tokens[:tokens.index(eos_id) + 1], True) if eos_id in tokens else (tokens, False)


@torch.no_grad()
def sample_two_turns(model, tok, prompts, instruction, max_new, temperature, generator, y1=None, second=True):
    """x -> y1 (sampled) -> instruction (forced) -> y2 (sampled), for a batch of prompt token lists. Returns a
    dict: tokens (N, T) right-padded full sequences [x, y1, p, y2]; m1, m2 (N, T) float masks, 1 on the sampled
    tokens of y1 / y2 (their end-of-turn included), 0 on prompt, instruction, padding and any forced
    end-of-turn; logp (N, T) the sampler's log-probs of the sampled tokens (0 elsewhere); y1, y2 texts.
    y1: given first attempts (token lists) instead of sampled ones (m1 = 0 then: nothing of y1 was sampled),
    to measure correction of another model's attempts (Fig. 5). second=False: single-turn, [x, y1] only."""
    dev = next(model.parameters()).device

    def turn(rows):  # one sampled turn for every row: (tokens, hit_eos) pairs and per-token log-probs
        idx, valid = left_pad(rows, tok.pad_id, dev)
        out, lp = model.generate(idx, max_new, temperature, valid=valid, eos_id=tok.eos_id, pad_id=tok.pad_id,
                                 generator=generator, logprobs=True)
        return [ended(r, tok.eos_id) for r in out[:, idx.shape[1]:].tolist()], lp.tolist()

    y1, lp1 = turn(prompts) if y1 is None else ([ended(list(a), tok.eos_id) for a in y1], None)
    # turn 2 context: x, y1 (closed with a forced end-of-turn if it ran out of tokens), the instruction
    instr = tok.encode(instruction) if second else []
    ctx = [x + y + ([] if hit else [tok.eos_id]) + instr for x, (y, hit) in zip(prompts, y1)]
    y2, lp2 = turn(ctx) if second else ([([], True)] * len(prompts), None)
    # assemble right-padded training sequences and their masks (Python per row, once per batch)
    N, T = len(prompts), max(len(c) + len(y) + (0 if hit else 1) for c, (y, hit) in zip(ctx, y2))
    tokens = torch.full((N, T), tok.pad_id, dtype=torch.long)
    m1, m2, logp = torch.zeros(N, T), torch.zeros(N, T), torch.zeros(N, T)
    for i, (x, (a, hit1), c, (b, hit2)) in enumerate(zip(prompts, y1, ctx, y2)):
        seq = c + b + ([] if hit2 else [tok.eos_id])
        tokens[i, :len(seq)] = torch.tensor(seq)
        s1, s2 = len(x), len(c)  # where y1 and y2 start
        if lp1 is not None:
            m1[i, s1:s1 + len(a)] = 1
            logp[i, s1:s1 + len(a)] = torch.tensor(lp1[i][:len(a)])
        if lp2 is not None:
            m2[i, s2:s2 + len(b)] = 1
            logp[i, s2:s2 + len(b)] = torch.tensor(lp2[i][:len(b)])
    return dict(tokens=tokens.to(dev), m1=m1.to(dev), m2=m2.to(dev), logp=logp.to(dev), y1_tok=[a for a, _ in y1],
                y1=[tok.decode(a) for a, _ in y1], y2=[tok.decode(b) for b, _ in y2])


def token_logprobs(model, tokens):
    """log p(tokens[t] | tokens[<t]) for every t >= 1, placed at t: (N, T), column 0 is 0."""
    # fp32, a few hundred positions at a time: the (N, T-1, V) logits never exist at once (25 GiB at a 150k vocab)
    lp = model(tokens[:, :-1], targets=tokens[:, 1:])  # (N, T-1)
    return F.pad(lp, (1, 0))  # (N, T): aligned with tokens and the sampler's masks


# ----------------------------------------------------------------------------------------------------------
# evaluation


def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@torch.no_grad()
def evaluate(model, tok, task, problems, max_new, batch=500, temperature=0.0, seed=0, y1=None, detail=False):
    """Two-turn evaluation (greedy by default, as in the paper): the metrics row. y1: fixed first attempts
    (token lists) to correct instead of its own (Fig. 5). detail: also the first attempts (y1_tok), the
    per-problem edit-distance ratios (Fig. 4) and transcripts (samples: what the model was given and said)."""
    model.eval()
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    r1, r2, changed, ratios, first, samples = [], [], [], [], [], []
    for i in tqdm(range(0, len(problems), batch), desc=f"eval ({batch} problems a batch)", leave=False):
        chunk = problems[i:i + batch]
        s = sample_two_turns(model, tok, [tok.encode(q["prompt"]) for q in chunk], task.instruction, max_new,
                             temperature, g, y1=None if y1 is None else y1[i:i + batch])
        r = rewards_of(s["y1"] + s["y2"], chunk + chunk)  # one grading call: a y2 that repeats y1 runs once
        r1, r2 = r1 + r[:len(chunk)], r2 + r[len(chunk):]
        first += s["y1_tok"]
        for q, y, z, u, v in zip(chunk, s["y1"], s["y2"], r[:len(chunk)], r[len(chunk):]):
            a, b = final_answer(y, q), final_answer(z, q)
            changed.append(a != b)
            ratios.append(edit_distance(y, z) / max(1, len(y) + len(z)))
            samples.append(dict(prompt=q["prompt"], y1=y, y2=z, answer1=a, answer2=b, r1=u, r2=v,
                                reference=q.get("answer")))
    n = len(problems)
    t1, t2 = sum(r1) / n, sum(r2) / n
    i2c = sum(1 for a, b in zip(r1, r2) if a == 0 and b == 1) / n
    c2i = sum(1 for a, b in zip(r1, r2) if a == 1 and b == 0) / n
    row = dict(acc_t1=t1, acc_t2=t2, delta=t2 - t1, delta_i_to_c=i2c, delta_c_to_i=c2i, changed=sum(changed) / n,
               edit_ratio=sum(ratios) / n, n=n, fix_rate=i2c / max(1e-9, 1 - t1))  # Fig. 5's: wrong y1s fixed
    return {**row, "y1_tok": first, "edit_ratios": ratios, "samples": samples} if detail else row


def majority(texts, problem):
    """The attempt whose final answer most attempts share (ties: the earliest); None if none has an answer."""
    answers = [final_answer(t, problem) for t in texts]
    votes = {a: answers.count(a) for a in answers if a is not None and a != ""}
    best = max(votes.values(), default=None)
    return next((t for t, a in zip(texts, answers) if a in votes and votes[a] == best), None)


@torch.no_grad()
def inference_scaling(model, tok, task, problems, max_new, K, temperature, seed=0, batch=512):
    """Section 6.3 at budgets b = 2, 4, ..., K samples per problem: majority vote over b parallel first attempts
    vs over the second attempts of b/2 first attempts, each self-corrected once; one batch of K two-turn samples
    per problem serves every budget. Returns [{budget, parallel, sequential, n}], accuracies over n problems."""
    model.eval()
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    per = max(1, batch // K)  # problems per sampler call
    y1s, y2s = [], []
    for i in range(0, len(problems), per):
        chunk = problems[i:i + per]
        prompts = [tok.encode(q["prompt"]) for q in chunk for _ in range(K)]  # (per * K) rows, grouped by problem
        s = sample_two_turns(model, tok, prompts, task.instruction, max_new, temperature, g)
        y1s += [s["y1"][j * K:(j + 1) * K] for j in range(len(chunk))]
        y2s += [s["y2"][j * K:(j + 1) * K] for j in range(len(chunk))]
    rows = []
    for b in [2 ** i for i in range(1, K.bit_length())]:  # 2, 4, ..., the largest power of 2 <= K
        par = [majority(a[:b], q) for a, q in zip(y1s, problems)]
        seq = [majority(a[:b // 2], q) for a, q in zip(y2s, problems)]
        acc = [sum(rewards_of([t or "" for t in v], problems)) / len(problems) for v in (par, seq)]
        rows.append(dict(budget=b, parallel=acc[0], sequential=acc[1], n=len(problems)))
    return rows


def table(rows):
    keys = ("acc_t1", "acc_t2", "delta", "delta_i_to_c", "delta_c_to_i", "changed")
    return "\n".join([f"{'model':<10}" + "".join(f"{k:>13}" for k in keys) + f"{'edit':>7}{'n':>6}"] + [
        f"{r['model']:<10}" + "".join(f"{100 * r[k]:>13.1f}" for k in keys) + f"{r['edit_ratio']:>7.3f}{r['n']:>6}"
        for r in rows])


# ----------------------------------------------------------------------------------------------------------
# stage "base": the toy base model from the imperfect solver's two-turn corpus (and baselines.py's fine-tuning)


def pack(tok, instruction, traces, device):
    """Two-turn traces (x, y1, y2, w1, w2), texts and 0/1 loss weights, -> tokens (B, T) [x, y1, eot, p, y2, eot]
    right-padded, and the loss mask (B, T): w1 on y1 and its eot, w2 on y2 and its eot, 0 elsewhere."""
    instr = tok.encode(instruction)
    rows, masks = [], []
    for x, y1, y2, w1, w2 in traces:
        x, y1, y2 = tok.encode(x), tok.encode(y1) + [tok.eos_id], tok.encode(y2) + [tok.eos_id]
        rows.append(x + y1 + instr + y2)
        masks.append([0] * len(x) + [w1] * len(y1) + [0] * len(instr) + [w2] * len(y2))
    T = max(len(r) for r in rows)
    tokens = torch.tensor([r + [tok.pad_id] * (T - len(r)) for r in rows], device=device)  # (B, T)
    mask = torch.tensor([m + [0] * (T - len(m)) for m in masks], dtype=torch.float, device=device)  # (B, T)
    return tokens, mask


def corpus_batch(task, tok, rng, batch, device):
    """batch sequences [x, y1, eot, p, y2, eot] of random train problems; loss mask on y1, y2 (and eots)."""
    traces = [(*task.module.corpus_example(rng), 1, 1) for _ in range(batch)]  # both attempts imitated
    return pack(tok, task.instruction, traces, device)


def sft_step(model, params, opt, tokens, mask, device, world=1):
    """One imitation step: the NLL of the masked tokens, a mean over them (under DDP, over every rank's)."""
    with autocast(device):
        lp = token_logprobs(model, tokens)  # (B, T)
    n_tok = mask.sum()
    if world > 1:  # DDP averages gradients over ranks: divide by the mean count to get the combined token mean
        dist.all_reduce(n_tok)
        n_tok = n_tok / world
    nll = -(lp * mask).sum() / n_tok
    opt.zero_grad(set_to_none=True)
    nll.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
    return nll.item(), step_if_finite(opt, grad_norm)


def train_base(args, log):
    task = args.task_
    tok = CharTokenizer(task.alphabet)
    val = task.module.problems("val", args.n_val, seed=args.seed)
    test = task.module.problems("test", args.n_test)
    check_context(args.block_size, tok, task, val + test, args.max_new, "--block_size")
    cfg = GPTConfig(block_size=args.block_size, vocab_size=tok.vocab_size, n_layer=args.n_layer,
                    n_head=args.n_head, n_embd=args.n_embd)
    torch.manual_seed(args.seed)  # the same initial weights on every DDP rank
    model = GPT(cfg).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0, fused=args.device.type == "cuda")
    rng = random.Random(args.seed + args.rank)  # DDP: each rank draws its own sequences
    start = resume(args, model, opt, rng)
    train_model = ddp_wrap(args, torch.compile(model) if args.compile else model)  # the training forward
    if args.master:
        print(f"base model: {model.num_params() / 1e6:.2f}M parameters, {args.steps} steps of {args.batch} sequences")
    t0, ntok, skips = time.time(), 0, 0
    for step in tqdm(range(start, args.steps), desc="base", disable=None if args.master else True):
        # linear warmup, then cosine to 0: without warmup, lr 3e-3 sometimes stalled the base on a plateau
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for gr in opt.param_groups:
            gr["lr"] = lr
        tokens, mask = corpus_batch(task, tok, rng, args.batch // args.world, args.device)
        nll, ok = sft_step(train_model, model.parameters(), opt, tokens, mask, args.device, args.world)
        skips = check_skips(skips, ok, step + 1)
        ntok += tokens.numel() * args.world
        row = dict(stage="base", step=step + 1, nll=nll, lr=lr, tok_per_s=ntok / (time.time() - t0))
        if args.eval_every and (step + 1) % args.eval_every == 0 and args.master:
            row.update({f"val_{k}": v for k, v in evaluate(model, tok, task, val, args.max_new).items()})
            model.train()
        log(row)
        if (step + 1) % args.ckpt_every == 0 and args.master:
            save_checkpoint(last_path(args), model, tok, optimizer=opt.state_dict(), step=step + 1,
                            rng=rng.getstate(), stage=args.stage, run=run_id(args))
    if args.master:
        save_checkpoint(os.path.join(args.out, args.name + ".pt"), model, tok, stage=args.stage, task=args.task)


# ----------------------------------------------------------------------------------------------------------
# stages I and II: on-policy multi-turn REINFORCE


def rloo(c, k):
    """Leave-one-out advantage over the k samples of each prompt: c (N,) grouped by prompt -> (N,)."""
    g = c.view(-1, k)  # (B, k)
    baseline = (g.sum(1, keepdim=True) - g) / (k - 1)  # (B, k): mean of the other k-1 samples
    return (g - baseline).reshape(-1)  # (N,)


def turn_credits(stage, r1, r2, kl1, kl2, alpha, beta1, beta2):
    """The reward credited to each attempt (gamma = 0: a turn is credited with its own reward only)."""
    if stage == "single":
        # Eq. 2: single-turn RL, the reward of the first attempt; there is no second attempt to credit
        return r1 - beta1 * kl1, torch.zeros_like(r2)
    if stage == "stage1":
        # Eq. 3: r(y2) on the second attempt; the first attempt is only held at the base model by beta2
        return -beta2 * kl1, r2 - beta1 * kl2
    # Eq. 4: r^(y1) = r(y1); r^(y2) = r(y2) + alpha * (r(y2) - r(y1)); beta1 KL on both turns
    return r1 - beta1 * kl1, r2 + alpha * (r2 - r1) - beta1 * kl2


def rl_update(args, model, opt, s, r1, r2, ref_lp):
    """One REINFORCE update on a sampled batch: s from sample_two_turns, r1, r2 (N,) rewards, ref_lp (N, T).
    Under DDP each rank passes its own whole RLOO groups; the loss is a mean over the rank's samples and DDP
    averages gradients, so equal shares give one process's update on the combined batch.
    Returns kl1, kl2 (N,) and the gradient norm before clipping."""
    with autocast(args.device):
        lp = token_logprobs(model, s["tokens"])  # (N, T), with gradients
    m1, m2 = s["m1"], s["m2"]
    # Eq. 2's KL(pi || ref), k1 estimate per turn: sum over the turn's sampled tokens of log pi - log ref
    kl1 = ((lp.detach() - ref_lp) * m1).sum(1)  # (N,)
    kl2 = ((lp.detach() - ref_lp) * m2).sum(1)  # (N,)
    c1, c2 = turn_credits(args.stage, r1, r2, kl1, kl2, args.alpha, args.beta1, args.beta2)  # (N,) each
    a1 = rloo(c1, args.k)  # (N,)
    # y2's baseline may depend on anything fixed before y2 is sampled. Eq. 4's bonus carries -alpha r(y1), a
    # function of y1 alone, so it joins y2's baseline exactly: RLOO runs on c2 + alpha r(y1). The expected
    # gradient is unchanged, but without this the k samples' different y1 outcomes (worth +-10) swamp the
    # y2 advantages: with k = 4 a correct y2 after a correct y1 was often pushed down.
    a2 = rloo(c2 + args.alpha * r1, args.k) if args.stage == "stage2" else rloo(c2, args.k)  # (N,)
    # Eq. 2-4 as REINFORCE with per-turn credit (gamma = 0): each turn's log-prob times its own advantage
    objective = ((a1[:, None] * lp * m1).sum(1) + (a2[:, None] * lp * m2).sum(1)).mean()
    loss = -objective
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    step_if_finite(opt, grad_norm)  # a non-finite gradient: no step (the caller counts them)
    return kl1, kl2, grad_norm


def train_rl(args, log):
    policy, state = load_model(args.init, args.dtype, task=args.task)
    tok = from_description(state["tokenizer"])
    task = real.for_tokenizer(args.task_, tok)
    train = task.module.problems("train", 20000, seed=args.seed)
    val = task.module.problems("val", args.n_val, seed=args.seed)
    check_context(policy.config.block_size, tok, task, train + val, args.max_new)
    ref_path = args.ref or state.get("ref") or args.init  # stage2 inherits stage1's reference (the base model)
    ref, ref_state = load_model(ref_path, args.ref_dtype or args.dtype, with_hash=True, task=args.task)
    if not args.ref and state.get("ref_hash", ref_state["hash"]) != ref_state["hash"]:  # e.g. base re-trained since
        raise ValueError(f"{args.init} was trained against reference weights {state['ref_hash']}, but {ref_path} now "
                         f"holds {ref_state['hash']}; pass the right one with --ref")
    for path, m in ((args.init, policy), (ref_path, ref)):
        if not all(torch.isfinite(t).all() for t in m.state_dict().values()):
            raise ValueError(f"{path} holds non-finite weights; refusing to train from it or against it")
    policy.grad_ckpt = args.grad_ckpt
    policy.to(args.device).train()
    ref.to(args.device).eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, weight_decay=0.0, fused=args.device.type == "cuda")
    rng = random.Random(args.seed + args.rank)  # DDP: each rank its own prompts and samples
    gen = torch.Generator(device=args.device).manual_seed(args.seed + args.rank)
    start = resume(args, policy, opt, rng, gen)
    final = os.path.join(args.out, args.name + ".pt")  # the stage's checkpoint, with its validation acc@t2:
    best = load_checkpoint(final)[1].get("val_acc_t2", -1.0) if start and os.path.exists(final) else -1.0  # resume
    model = ddp_wrap(args, torch.compile(policy) if args.compile else policy)  # the training forward
    meta = dict(ref=ref_path, ref_hash=ref_state["hash"], stage=args.stage, task=args.task)  # in every checkpoint
    if args.master:
        print(f"{args.stage}: {policy.num_params() / 1e6:.2f}M parameters, init {args.init}, ref {ref_path}, "
              f"{args.steps} steps x {args.batch} prompts x k={args.k}"
              + (f" on {args.world} DDP ranks" if args.ddp else ""))

    def validate(row):  # model selection on validation, never on test (departure 3)
        nonlocal best
        row.update({f"val_{k}": x for k, x in evaluate(policy, tok, task, val, args.max_new).items()})
        if row["val_acc_t2"] > best:
            best = row["val_acc_t2"]
            save_checkpoint(final, policy, tok, **meta, step=row["step"], val_acc_t2=best)
        return row
    if args.eval_every and args.val_start and not start and args.master:
        log(validate(dict(stage=args.stage, step=0)))
    t0, ntok, skips = time.time(), 0, 0
    for step in tqdm(range(start, args.steps), desc=args.stage, disable=None if args.master else True):
        for gr in opt.param_groups:
            gr["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        batch = rng.sample(train, args.batch // args.world)  # DDP: this rank's share of the prompts
        probs = [q for q in batch for _ in range(args.k)]  # N = batch * k, grouped by prompt
        policy.eval()
        with autocast(args.device):
            s = sample_two_turns(policy, tok, [tok.encode(q["prompt"]) for q in probs], task.instruction,
                                 args.max_new, args.temperature, gen, second=args.stage != "single")
        policy.train()
        y2 = s["y2"] if args.stage != "single" else []  # one grading call: a y2 that repeats y1 runs once
        r = rewards_of(s["y1"] + y2, probs + probs[:len(y2)]) + [0.0] * (len(probs) - len(y2))
        r1, r2 = torch.tensor(r, device=args.device).view(2, -1)  # (N,), (N,)
        with torch.inference_mode(), autocast(args.device):  # the frozen reference: no autograd at all
            ref_lp = token_logprobs(ref, s["tokens"])  # (N, T)
        kl1, kl2, grad_norm = rl_update(args, model, opt, s, r1, r2, ref_lp)
        skips = check_skips(skips, bool(torch.isfinite(grad_norm)), step + 1)
        sums = torch.stack([r1.sum(), r2.sum(), kl1.sum(), kl2.sum(), (s["m1"] + s["m2"]).sum()])
        if args.ddp:  # log the combined batch, not rank 0's share
            dist.all_reduce(sums)
        r1m, r2m, kl1m, kl2m = (sums[:4] / (len(probs) * args.world)).tolist()
        ntok += int(sums[4])
        row = dict(stage=args.stage, step=step + 1, r1=r1m, r2=r2m, kl1=kl1m, kl2=kl2m, grad_norm=grad_norm.item(),
                   sampled_tok_per_s=ntok / (time.time() - t0), seconds=time.time() - t0)
        if args.eval_every and (step + 1) % args.eval_every == 0 and args.master:
            validate(row)
        log(row)
        if (step + 1) % args.ckpt_every == 0 and args.master:
            save_checkpoint(last_path(args), policy, tok, optimizer=opt.state_dict(), step=step + 1,
                            rng=rng.getstate(), gen=gen.get_state(), run=run_id(args), **meta)
    if args.master and best < 0:  # no validation: the last step
        save_checkpoint(final, policy, tok, **meta, step=args.steps)


# ----------------------------------------------------------------------------------------------------------
# eval and main


def run_eval(args):
    """The eval stage: the table (results.json) or the inference-scaling study (scaling.json)."""
    rows, fixed, names, samples = [], None, args.evaluate.split(","), {}
    one_writer(args.out, "scaling" if args.scaling else "results")  # one eval at a time writes the file
    shown = set(names)
    if args.fixed_y1 and not args.scaling:  # its first attempts are needed first; evaluated once
        names = [args.fixed_y1] + [n for n in names if n != args.fixed_y1]
    for name in names:  # a checkpoint name in --out, or a Hugging Face directory
        model, state = load_model(name if os.path.isdir(name) else os.path.join(args.out, name + ".pt"), args.dtype,
                                  task=args.task)
        model.to(args.device)
        tok = from_description(state["tokenizer"])
        task = real.for_tokenizer(args.task_, tok)
        test = task.module.problems("test", args.n_test, seed=0)  # fixed test set across seeds
        if args.scaling:
            rows.append({"model": name, "scaling": inference_scaling(
                model, tok, task, test, args.max_new, args.scaling, args.scaling_temperature, args.seed)})
            print(name, " ".join(f"K={r['budget']}: {100 * r['parallel']:.1f} / {100 * r['sequential']:.1f}"
                                 for r in rows[-1]["scaling"]), "(parallel / sequential, %)")
            continue
        row = evaluate(model, tok, task, test, args.max_new, batch=args.eval_batch, detail=True)
        first, samples[name] = row.pop("y1_tok"), row.pop("samples")
        if name == args.fixed_y1:  # the first name: keep its first attempts for the models after it
            fixed = first
            row["fix_rate_fixed"] = row["fix_rate"]  # correcting its own greedy attempts: the same run
            if name not in shown:
                continue
        elif fixed is not None:  # Fig. 5: the same model correcting the fixed model's first attempts
            row["fix_rate_fixed"] = evaluate(model, tok, task, test, args.max_new, batch=args.eval_batch,
                                             y1=fixed)["fix_rate"]
        rows.append({"model": name, **row})
    if not args.scaling:
        print(table(rows))
    # rows and transcripts (lm-eval's --log_samples: a line per problem) of other models stay; same names replaced
    merge_rows(os.path.join(args.out, "scaling.json" if args.scaling else "results.json"), rows)
    merge_rows(os.path.join(args.out, "samples.jsonl"), [{"model": m, **r} for m in samples for r in samples[m]])


def main(argv=None):
    args = derive(p.parse_args(argv))
    log = logger(args, args.stage)
    if args.stage == "base":
        if not args.task.startswith("toy"):
            raise ValueError(f"--stage base pre-trains the toy model; --task {args.task} starts RL from --init")
        train_base(args, log)
    elif args.stage != "eval":
        if not args.init:
            raise ValueError(f"--stage {args.stage} needs --init (a checkpoint to start from)")
        train_rl(args, log)
    elif args.master:  # eval: one process is enough
        run_eval(args)
    if args.ddp:
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:  # bad input, a run in the way, a failed write: the message names it
        raise SystemExit(f"score.py: error: {e}")
