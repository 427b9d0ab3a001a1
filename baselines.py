"""
baselines.py: the paper's fine-tuning baselines for self-correction (section 4, Tables 2 and 4) on the toy
tasks, from the same base model and on the same sample budget as score.py's RL. Every method fine-tunes on
traces [x, y1, p, y2] written by our own models, never by an oracle (--method):
  star           STaR (Zelikman et al. 2022) as SCoRe adapts it: 3 iterations of {sample two-turn traces from
                 the current model at temperature 1; keep the successful revisions, r(y1) = 0 and r(y2) = 1
                 (D_STaR); fine-tune on y2 given (x, y1, p)}.
  star_plus      also keeping correct -> correct traces (D+_STaR).
  star_stage2    Table 4's "STaR instead of REINFORCE in Stage II": from Stage I, 3 iterations imitating every
                 correct attempt (y2, and y1 where r(y1) = 1) of the traces whose y2 is correct.
  pair_sft       Pair-SFT (Welleck et al. 2023), one round: k first attempts per problem from the base model;
                 each incorrect one is paired with a correct one to the same problem as y2 (D_SFT).
  pair_sft_plus  also pairing each correct attempt with a correct one (D+_SFT).
Budget: --attempts sampled attempts in all (RL samples 2 per episode); STaR spends them as attempts/2 episodes
over its iterations, Pair-SFT as first attempts. --sft_steps AdamW steps in all, split over the iterations;
the loss is the imitated tokens' mean NLL (score.sft_step, as the base stage).

Departures, numbered:
  1. Each STaR iteration continues fine-tuning the current model (STaR restarts from the base model).
  2. The checkpoint is the iteration with the best greedy validation acc@t2 (as score.py's departure 3); the
     paper does not say how its baselines were selected.
  3. Batches are drawn with replacement from the kept traces for a fixed number of steps, so every method gets
     the same fine-tuning compute however many traces it kept.

Run:  python baselines.py --method star --init out_small/base.pt --out out_small   (writes out_small/star.pt)
"""
import argparse
import os
import random
import time

import torch
from tqdm import tqdm

from model import autocast, get_device
from runs import check_skips, load_model, logger, one_writer, save_checkpoint
from score import common, evaluate, pack, rewards_of, sample_two_turns, sft_step, toy_task
from tokenizer import from_description

p = argparse.ArgumentParser(description=__doc__.split("\n")[1], parents=[common],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
p.add_argument("--method", choices=["star", "star_plus", "star_stage2", "pair_sft", "pair_sft_plus"], required=True,
               help="which baseline (see above)")
p.add_argument("--attempts", type=int, default=51200, help="sampled attempts in all (2 per two-turn episode)")
p.add_argument("--iterations", type=int, default=3, help="STaR iterations (paper: 3); Pair-SFT has one")
p.add_argument("--prompts", type=int, default=32, help="training problems per sampler call")
p.add_argument("--sft_steps", type=int, default=200, help="AdamW steps of fine-tuning in all")
p.add_argument("--sft_batch", type=int, default=64, help="traces per fine-tuning step")
p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (constant after --warmup steps)")
p.set_defaults(n_val=500)


def star_traces(problems, y1, y2, r1, r2, method):
    """The traces STaR keeps from sampled two-turn episodes, as pack()'s (x, y1, y2, w1, w2):
    star: successful revisions (r1 = 0, r2 = 1), imitate y2; star_plus: also correct -> correct;
    star_stage2: every episode with a correct y2, imitating y2 and, where correct, y1."""
    kept = []
    for q, a, b, ra, rb in zip(problems, y1, y2, r1, r2):
        if rb != 1:
            continue
        if method == "star_stage2":
            kept.append((q["prompt"], a, b, int(ra == 1), 1))
        elif ra == 0 or method == "star_plus":
            kept.append((q["prompt"], a, b, 0, 1))
    return kept


def pair_traces(problems, attempts, rewards, plus, rng):
    """Pair-SFT's pairs from first attempts sampled for the same problems (grouped by problem id): each
    incorrect attempt (plus: also each correct one) becomes y1, a random correct attempt to its problem y2."""
    correct, kept = {}, []
    for q, a, r in zip(problems, attempts, rewards):
        if r == 1:
            correct.setdefault(q["prompt"], []).append(a)
    for q, a, r in zip(problems, attempts, rewards):
        good = correct.get(q["prompt"])
        if good and (r == 0 or plus):  # a problem with no correct sample gives no pair
            kept.append((q["prompt"], a, rng.choice(good), 0, 1))
    return kept


def sample(model, tok, task, train, rng, gen, n_episodes, args, second=True):
    """n_episodes episodes (k per problem) from the model: (problems, y1 texts, y2 texts, r1, r2)."""
    probs, y1, y2 = [], [], []
    model.eval()
    for _ in range(0, n_episodes, args.prompts * args.k):
        batch = [q for q in rng.sample(train, args.prompts) for _ in range(args.k)]  # grouped by problem
        with autocast(args.device):
            s = sample_two_turns(model, tok, [tok.encode(q["prompt"]) for q in batch], task.instruction,
                                 args.max_new, args.temperature, gen, second=second)
        probs += batch
        y1 += s["y1"]
        y2 += s["y2"]
    r1 = rewards_of(y1, probs)
    r2 = rewards_of(y2, probs) if second else [0.0] * len(probs)
    return probs, y1, y2, r1, r2


def finetune(model, opt, tok, task, traces, steps, args, rng, log, it):
    """steps AdamW steps on batches drawn with replacement from traces; NLL averaged over imitated tokens."""
    model.train()
    skips = 0
    for step in range(steps):
        for gr in opt.param_groups:
            gr["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        tokens, mask = pack(tok, task.instruction, [rng.choice(traces) for _ in range(args.sft_batch)], args.device)
        nll, ok = sft_step(model, model.parameters(), opt, tokens, mask, args.device)
        skips = check_skips(skips, ok, step + 1)
        if (step + 1) % 25 == 0 or step + 1 == steps:
            log(dict(stage=args.method, iteration=it, sft_step=step + 1, nll=nll))


def main(argv=None):
    args = p.parse_args(argv)
    if not args.task.startswith("toy") or not args.init:
        p.error(f"baselines run on the toy tasks from --init (a base or Stage I checkpoint); got --task {args.task}, "
                f"--init {args.init!r}")
    args.name = args.name or args.method
    args.device = get_device(args.device or None)
    one_writer(args.out, args.name)  # refuses if another run writes this name into --out
    task = toy_task(args.task)
    star = args.method.startswith("star")
    rounds = args.iterations if star else 1
    model, state = load_model(args.init, task=args.task)
    model.to(args.device)
    tok = from_description(state["tokenizer"])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    rng = random.Random(args.seed)
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    train = task.module.problems("train", 20000, seed=args.seed)
    val = task.module.problems("val", args.n_val, seed=args.seed)
    final, best, t0 = os.path.join(args.out, args.name + ".pt"), -1.0, time.time()
    log = logger(args, args.method)
    print(f"{args.method}: init {args.init}, {args.attempts} sampled attempts over {rounds} round(s), "
          f"{args.sft_steps} fine-tuning steps of {args.sft_batch} traces")
    for it in tqdm(range(1, rounds + 1), desc=args.method):
        if star:  # sample two-turn episodes from the current model, keep what STaR keeps
            probs, y1, y2, r1, r2 = sample(model, tok, task, train, rng, gen, args.attempts // 2 // rounds, args)
            traces = star_traces(probs, y1, y2, r1, r2, args.method)
        else:  # Pair-SFT: first attempts of the base model only
            probs, y1, _, r1, _ = sample(model, tok, task, train, rng, gen, args.attempts, args, second=False)
            traces = pair_traces(probs, y1, r1, args.method == "pair_sft_plus", rng)
            r2 = r1
        log(dict(stage=args.method, iteration=it, episodes=len(probs), r1=sum(r1) / len(r1), r2=sum(r2) / len(r2),
                 kept=len(traces)))
        if not traces:  # nothing to imitate: the model stays as it is this round
            continue
        finetune(model, opt, tok, task, traces, args.sft_steps // rounds, args, rng, log, it)
        v = evaluate(model, tok, task, val, args.max_new)
        log(dict(stage=args.method, iteration=it, **{f"val_{k}": x for k, x in v.items()}))
        if v["acc_t2"] > best:  # the checkpoint: best validation acc@t2 (departure 2), never test
            best = v["acc_t2"]
            save_checkpoint(final, model, tok, stage=args.method, task=args.task, iteration=it, val_acc_t2=best)
    if best < 0:  # no round kept anything: the init model is the result
        save_checkpoint(final, model, tok, stage=args.method, task=args.task, iteration=0)
    print(f"{args.method}: done in {time.time() - t0:.0f} s, best validation acc@t2 {100 * max(best, 0):.1f}%, "
          f"wrote {final}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:  # bad input, a run in the way, a failed write: the message names it
        raise SystemExit(f"baselines.py: error: {e}")
