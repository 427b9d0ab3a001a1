"""
score.py: SCoRe (Kumar, Zhuang et al. 2024, "Training Language Models to Self-Correct via RL"), training and
evaluation in one readable file.

A model answers a problem (attempt y1), is shown a fixed correction instruction p, and answers again (y2).
Stages (--stage):
  base    pre-train the toy base model on the imperfect solver's two-turn traces (data/toy_*.py): it makes
          real first-attempt mistakes and does not self-correct, like the paper's instruction-tuned start.
  stage1  Eq. 3:  max E[ r(y2) - beta2 KL(pi(.|x) || ref(.|x)) - beta1 KL(pi(.|x,y1,p) || ref) ]
          learn to correct while the strong beta2 KL pins the *first* attempt to the base model.
  stage2  Eq. 4:  max E[ sum_i  r^(y_i) - beta1 KL ],  r^(y1) = r(y1),  r^(y2) = r(y2) + alpha (r(y2) - r(y1))
          both attempts trained, each credited with its own reward (gamma = 0), plus the progress bonus.
  single  Eq. 2 on the first attempt alone: max E[ r(y1) - beta1 KL ], no second turn sampled (the ablation
          "without multi-turn training", Table 4).
  eval    greedy two-turn evaluation on the held-out test split: acc@t1, acc@t2, delta, delta i->c,
          delta c->i, the rate at which y2's answer differs from y1's, and the mean edit-distance ratio;
          --fixed_y1 NAME adds each model's correction rate on NAME's first attempts (Fig. 5), --scaling K the
          inference-scaling study instead (section 6.3: majority vote, K parallel vs K/2 self-corrected).
The fine-tuning baselines (STaR, Pair-SFT) are in baselines.py; reproduce.sh runs every method of the paper's
Tables 2 and 4 from one base model (multi-turn RL is stage2 with --alpha 0 from the base model).

Tasks (--task):
  toy_math  the default: the toy column addition (data/toy_math.py), trained from scratch by --stage base.
            (Before the real tasks existed this was `--task math`; train_small.sh now says toy_math.)
  toy_code  one-line Python functions from input/output examples (data/toy_code.py), also from scratch;
            programs are graded in rewards.py's sandbox, a batch at a time (TASK=toy_code bash train_small.sh).
  math      MATH -> MATH500, the paper's math setting: RL on MATH train (data/prepare.py --dataset train:
            PRM800K's 12k MATH problems outside MATH500), eval on MATH500, graded by rewards.math_reward.
  gsm8k     GSM8K train -> GSM8K test, the same prompts and grader.
  mbpp      MBPP -> HumanEval, the paper's code setting: RL on sanitized MBPP with the standard 3-shot prompt
            (task ids 2-4 as the shots, never trained on), eval on HumanEval, graded in rewards.py's sandbox.
  The real tasks start RL from --init, an HF checkpoint directory (GPT-2, Llama, Qwen2) or our .pt, and use
  the paper's prompts (Appendix C): first turn "You are a math expert. ..." + the problem, correction
  instruction "There might be an error in the solution above ..." (code: "... in the code above ... Only
  output the final correct Python program!"). For an instruct checkpoint both are user turns in its chat
  format (tokenizer.HFTokenizer: ChatML or Llama-3), so the two-turn sequence is exactly the chat template's
  [user x, assistant y1, user p, assistant y2]; the end of an assistant turn (<|im_end|>, <|eot_id|>) ends
  an attempt. A checkpoint without a chat format gets plain text (HumanEval: the bare function prompt).
  "val" (--eval_every) is the 5% of the training file picked by a hash of each problem's text.

Estimators, one each:
  - Policy gradient: REINFORCE with the leave-one-out baseline over k samples per prompt (RLOO, Ahmadian et
    al. 2024, the paper's cited REINFORCE): advantage_i = c_i - mean_{j != i} c_j, computed per turn.
  - KL: the k1 estimate  sum_t [log pi(y_t) - log ref(y_t)]  of each turn, folded into that turn's reward
    (detached), as Ahmadian et al. do; its REINFORCE gradient is an unbiased estimate of the gradient of
    KL(pi || ref).
  - Loss averaging: sum over a turn's tokens (a sequence-level policy gradient), mean over samples.

Departures from the paper, numbered:
  1. Toy scale: a ~1M-parameter GPT pre-trained from scratch in minutes replaces Gemini; RL lr 2e-4 in
     Stage I and 1e-4 in Stage II (not 5e-6; 1e-3 wrecked the policy within 5 steps in development; 1e-4
     kept more of Stage II's acc@t2 on validation) and 100 steps per stage (not thousands), because the
     model is tiny and the CPU budget is minutes.
  2. Per-turn credit (gamma = 0) also in Stage I: y1 is trained only by its KL term there, so the reward of
     y2 does not leak into the first attempt (the paper states gamma = 0 for Stage II, Appendix A.2).
  3. The stage's checkpoint: with --eval_every, the evaluation point with the best greedy acc@t2 on the
     validation split (the paper keeps the highest *training* reward); without, the last step.
     train_small.sh evaluates Stage II every 25 steps on 500 validation problems: on validation (seed 0)
     Stage II's acc@t2 peaked near step 50 (92.0%) and fell to 84.4% by step 100 while acc@t1 rose, the
     first attempt catching up (the curves are in metrics.jsonl as val_*). Stage I keeps its last step.
  4. train_small.sh uses beta2 = 1.0 in Stage I, not 0.1: on the first version of the toy, 0.1 let the
     greedy first attempt drift from 65.7% to 52.1% in 100 steps (validation) and 1.0 held it at 64.1%.
  5. The toy's answer is read from the attempt's columns (toy_math.answer), not from a stated final answer:
     a separate answer line written after the columns could be fixed in the first attempt by the same
     lookup the second attempt uses, which would erase the asymmetry the toy is built on.
  6. Real tasks, prompt layout (ours; the paper gives the wording, not the layout): the math user turn is the
     instruction, a blank line, "Problem:", the problem; MBPP's shots and question share one user turn, and
     HumanEval's is "Complete the following Python function." and the prompt in a ```python fence. The
     program graded is the reply's last ``` block (rewards.extract_code). None of these choices has been
     checked against the paper's numbers.
  7. Real tasks, memory (see README, "Scaling up"): --dtype / --ref_dtype bf16 weights, --grad_ckpt, and
     log-probs computed a few hundred positions at a time (model.forward(targets=...)), never the whole
     (N, T, vocab) logits; no sequence packing, no vLLM-style sampler: decoding is our KV-cache loop.

Run (the whole story, base -> Stage I -> Stage II -> table, on a CPU in minutes):  bash train_small.sh
Every method of the paper's Tables 2 and 4 x 3 seeds, the table beside the paper's, the plots:  bash reproduce.sh
One stage:  python score.py --stage stage1 --init out_small/base.pt --out out_small
A real model (the README's recipe):  python score.py --stage stage1 --task math --init <Qwen2.5 dir> ...
On N GPUs (or N CPU processes), DDP:  torchrun --nproc_per_node=N score.py --stage stage1 ...  (--batch is the
total over all ranks; each rank samples batch/N prompts with seed + rank)
Speed figures (sampler vs Hugging Face generate, RL step split, FLOP/s):  python bench.py
"""
import argparse
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from data import loaders, toy_code, toy_math
from model import GPT, GPTConfig, autocast, get_device, load_checkpoint, save_checkpoint
from rewards import extract_answer, extract_code, humaneval_reward, math_reward, mbpp_reward, toy_code_rewards
from tokenizer import CharTokenizer, GPT2Tokenizer, HFTokenizer, from_description

# ----------------------------------------------------------------------------------------------------------
# configuration

p = argparse.ArgumentParser(description=__doc__.split("\n")[1], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
p.add_argument("--stage", choices=["base", "stage1", "stage2", "single", "eval"], required=True,
               help="what to run (see above)")
p.add_argument("--task", choices=["toy_math", "toy_code", "math", "gsm8k", "mbpp"], default="toy_math", help="toy_math: "
               "the toy column addition (data/toy_math.py); toy_code: one-line functions from examples, graded in the "
               "sandbox (data/toy_code.py); math: MATH train -> MATH500; gsm8k: GSM8K train -> test; mbpp: "
               "MBPP -> HumanEval (the paper's code setting). The real tasks start from --init (no base stage)")
p.add_argument("--data", default="data/raw", help="real tasks: the folder data/prepare.py writes")
p.add_argument("--train_file", default="", help="real tasks: training problems instead of the --data default")
p.add_argument("--test_file", default="", help="real tasks: evaluation problems instead of the --data default")
p.add_argument("--init", default="", help="checkpoint to start from: our .pt file (stage1/2, eval), or a Hugging "
               "Face GPT-2 / Llama / Qwen2 directory; empty = a fresh model (base)")
p.add_argument("--ref", default="", help="frozen reference model for the KL terms (default: the --init model of "
               "stage1, i.e. the base model; stage2 reads it from its init checkpoint)")
p.add_argument("--out", default="out_small", help="output directory: checkpoints, metrics.jsonl, results.json")
p.add_argument("--name", default="", help="checkpoint name to write (default: the stage name; stage2 -> score)")
p.add_argument("--evaluate", default="base,stage1,score", help="eval: comma-separated checkpoint names in --out")
p.add_argument("--seed", type=int, default=0, help="seeds problem order, sampling and init")
p.add_argument("--device", default="", help="cpu | cuda | mps; empty = autodetect cuda -> mps -> cpu")
p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="RL: policy weights (bf16 halves weights, "
               "gradients and Adam state, but AdamW updates below bf16's 2^-8 relative resolution are lost)")
p.add_argument("--ref_dtype", choices=["", "fp32", "bf16"], default="", help="RL: reference weights; empty = --dtype "
               "(the frozen reference loses nothing that bf16 autocast would not)")
p.add_argument("--grad_ckpt", action="store_true", help="RL: recompute each block in backward (activation memory "
               "of long sequences for about one extra forward)")
p.add_argument("--compile", action="store_true", help="torch.compile the model for the training forward/backward "
               "(sampling stays eager); pays off on a GPU, costs minutes of compile time on a small CPU run")
# model (base stage only)
p.add_argument("--n_layer", type=int, default=4, help="base: transformer blocks")
p.add_argument("--n_head", type=int, default=4, help="base: attention heads")
p.add_argument("--n_embd", type=int, default=128, help="base: residual width")
p.add_argument("--block_size", type=int, default=128, help="base: context length in tokens")
# optimisation
p.add_argument("--steps", type=int, default=50, help="optimizer steps of this stage")
p.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (RL: linear warmup, then constant; base: warmup, then cosine to 0)")
p.add_argument("--warmup", type=int, default=10, help="linear learning-rate warmup steps (RL: Adam's first steps "
               "on noisy policy gradients otherwise jolt a small pre-trained model)")
p.add_argument("--batch", type=int, default=64, help="prompts per step (RL) or sequences per step (base)")
p.add_argument("--k", type=int, default=4, help="RL: samples per prompt (the RLOO group)")
p.add_argument("--alpha", type=float, default=10.0, help="Stage II: progress bonus weight (paper: 10)")
p.add_argument("--beta1", type=float, default=0.01, help="KL weight on every turn (paper: 0.01)")
p.add_argument("--beta2", type=float, default=0.1, help="Stage I: KL weight on the first attempt (paper: 0.1 math)")
p.add_argument("--temperature", type=float, default=1.0, help="RL sampling temperature (paper: 1.0)")
p.add_argument("--max_new", type=int, default=40, help="max tokens per attempt")
# evaluation, logging, checkpoints
p.add_argument("--n_test", type=int, default=1000, help="held-out test problems for eval (greedy)")
p.add_argument("--eval_batch", type=int, default=500, help="eval: problems sampled at once (KV-cache memory)")
p.add_argument("--fixed_y1", default="", help="eval: also let every model correct this checkpoint's greedy first "
               "attempts (e.g. base): the fix_rate_fixed column, Pair-SFT's distribution shift (Fig. 5)")
p.add_argument("--scaling", type=int, default=0, help="eval: instead of the table, the inference-scaling study "
               "(section 6.3) at budgets 2..K samples per problem, written to scaling.json (0: off)")
p.add_argument("--scaling_temperature", type=float, default=0.7, help="eval --scaling: sampling temperature "
               "(the paper's inference-scaling study uses 0.7)")
p.add_argument("--eval_every", type=int, default=0, help="RL: greedy eval on n_val validation problems every N steps, "
               "and the stage's checkpoint is the one with the best validation acc@t2 (0: off; the last step)")
p.add_argument("--n_val", type=int, default=200, help="validation problems for --eval_every")
p.add_argument("--ckpt_every", type=int, default=10, help="write the resumable <name>_last.pt every N steps")
p.add_argument("--resume", action="store_true", help="continue from <out>/<name>_last.pt if it exists")


@dataclass
class Task:
    """What score.py needs of a task: module.problems(split, n, seed) (toy: data/toy_*.py, which also writes the
    base corpus; real: read from the data files), the fixed correction instruction, the toy alphabet, and
    chat=True where prompt and instruction are chat turns, put in the checkpoint's format by for_tokenizer."""
    module: object
    instruction: str
    alphabet: str
    chat: bool = False


def toy_task(name):
    """The Task of a toy task: toy_math or toy_code (whose character vocabulary also spells its instruction)."""
    if name == "toy_math":
        return Task(toy_math, toy_math.INSTRUCTION, toy_math.ALPHABET)
    return Task(toy_code, toy_code.INSTRUCTION, "".join(sorted(set(toy_code.ALPHABET + toy_code.INSTRUCTION))))


def derive(args):
    args.name = args.name or {"stage2": "score"}.get(args.stage, args.stage)
    args.device = get_device(args.device or None)
    # ---- DDP: `torchrun --nproc_per_node=N score.py ...` sets RANK/WORLD_SIZE; one process per device.
    # Each rank samples its own share of the batch; DDP all-reduces gradients; rank 0 alone prints and writes.
    args.ddp = int(os.environ.get("RANK", -1)) != -1
    args.rank, args.world = 0, 1
    if args.ddp:
        dist.init_process_group(backend="nccl" if args.device.type == "cuda" else "gloo")
        args.rank, args.world = dist.get_rank(), dist.get_world_size()
        if args.device.type == "cuda":
            args.device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(args.device)
        if args.batch % args.world:
            raise ValueError(f"--batch {args.batch} must divide evenly over {args.world} DDP ranks")
    args.master = args.rank == 0
    args.task_ = toy_task(args.task) if args.task in ("toy_math", "toy_code") else real_task(args)
    os.makedirs(args.out, exist_ok=True)
    return args


# ----------------------------------------------------------------------------------------------------------
# the real tasks (paper, Appendix C): MATH, GSM8K, MBPP -> HumanEval


MATH_PROMPT = ("You are a math expert. When you respond, respond only with the Solution of the final Problem, thinking "
               "step by step. At the end of the Solution, when you give your final answer, write it in the form "
               '"Final Answer: The final answer is $answer$. I hope it is correct."')
MATH_INSTRUCTION = ("There might be an error in the solution above because of lack of understanding of the question. "
                    "Please correct the error, if any, and rewrite the solution. Only output the final solution! At "
                    "the end of the Solution, when you give your final answer, write it in the form "
                    '"Final Answer: The final answer is $answer$. I hope it is correct."')
CODE_INSTRUCTION = ("There might be an error in the code above because of lack of understanding of the question. "
                    "Please correct the error, if any, and rewrite the solution. Only output the final correct "
                    "Python program!")
MBPP_SHOTS = (2, 3, 4)  # task ids of the standard 3-shot MBPP prompt; never trained on
REAL_FILES = {  # task -> (train file, test file) under --data (data/prepare.py's layout)
    "math": ("math/train.jsonl", "math500/test.jsonl"),
    "gsm8k": ("gsm8k/train.jsonl", "gsm8k/test.jsonl"),
    "mbpp": ("mbpp/sanitized-mbpp.json", "humaneval/HumanEval.jsonl.gz"),
}


def mbpp_user(r, answer=None):
    """The standard MBPP prompt of one problem; with answer, a solved shot ([BEGIN] code [DONE])."""
    text = (f"You are an expert Python programmer, and here is your task: {r['prompt']} Your code should pass "
            f"these tests:\n\n" + "\n".join(r["test_list"]) + "\n")
    return text + (f"[BEGIN]\n{answer}\n[DONE]\n\n" if answer is not None else "")


def real_problems(task, train_file, test_file, split, n, seed=0):
    """Up to n problems of a split, each with `user` (the first turn's text, before any chat format) and
    `grader`. test = the test file; val = the 5% of the train file picked by a hash of the problem text;
    train = the other 95% (and never the MBPP shots). File order; seed is unused (RL samples at random)."""
    if split == "test":
        if task == "mbpp":  # the paper trains on MBPP and evaluates on HumanEval
            return [{**r, "user": f"Complete the following Python function.\n\n```python\n{r['prompt']}```",
                     "plain": r["prompt"], "grader": "humaneval"} for r in loaders.load_humaneval(test_file)][:n]
        recs = (loaders.load_math if task == "math" else loaders.load_gsm8k)(test_file)
    else:
        recs = loaders.load_mbpp(train_file) if task == "mbpp" else \
            (loaders.load_math if task == "math" else loaders.load_gsm8k)(train_file)
        key = "prompt" if task == "mbpp" else "problem"
        recs = [r for r in recs if (int(hashlib.sha256(r[key].encode()).hexdigest(), 16) % 100 < 5) == (split == "val")
                and r.get("task_id") not in MBPP_SHOTS]
    if task == "mbpp":
        shots = "".join(mbpp_user(r, r["code"]) for r in loaders.load_mbpp(train_file) if r["task_id"] in MBPP_SHOTS)
        return [{**r, "user": shots + mbpp_user(r), "grader": "mbpp"} for r in recs][:n]
    return [{**r, "user": f"{MATH_PROMPT}\n\nProblem:\n{r['problem']}", "grader": "math"} for r in recs][:n]


def real_task(args):
    train_file, test_file = (os.path.join(args.data, f) for f in REAL_FILES[args.task])
    train_file, test_file = args.train_file or train_file, args.test_file or test_file
    needed = {"stage1": [train_file], "stage2": [train_file], "eval": [test_file]}.get(args.stage, [])
    for f in needed:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"--task {args.task}: no data file {f} (python data/prepare.py --out {args.data}, "
                                    f"or --train_file / --test_file)")
    module = SimpleNamespace(problems=lambda split, n, seed=0: real_problems(args.task, train_file, test_file,
                                                                            split, n))
    return Task(module, MATH_INSTRUCTION if args.task in ("math", "gsm8k") else CODE_INSTRUCTION, "", chat=True)


def for_tokenizer(task, tok):
    """The task as this tokenizer's model sees it: a real task's prompts and instruction as chat turns in the
    checkpoint's format (tokenizer.HFTokenizer), or as plain text for a tokenizer without one."""
    if not task.chat:
        return task
    first = getattr(tok, "chat_prompt", lambda user: user)
    follow = getattr(tok, "chat_followup", lambda user: f"\n\n{user}\n\n")
    plain = getattr(tok, "template", None) is None  # no chat format: HumanEval is completed as the bare prompt

    def problems(split, n, seed=0):
        return [{**q, "prompt": q["plain"] if plain and "plain" in q else first(q["user"])}
                for q in task.module.problems(split, n, seed)]

    return Task(SimpleNamespace(problems=problems), follow(task.instruction), task.alphabet, chat=False)


def load_model(path, dtype="fp32"):
    """(model, state) from our .pt checkpoint, or from a Hugging Face directory: its weights, and its own
    tokenizer files (a GPT-2 directory without them gets tiktoken's GPT-2 BPE)."""
    if os.path.isdir(path):
        model = GPT.from_pretrained(path)
        has_tok = any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "vocab.json"))
        state = {"tokenizer": (HFTokenizer(path) if has_tok else GPT2Tokenizer()).describe()}
    else:
        model, state = load_checkpoint(path)
    return model.to({"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]), state


# ----------------------------------------------------------------------------------------------------------
# rewards (binary): toy: the integer the columns spell equals the gold one; real: rewards.py's graders


def final_answer(text, problem):
    """What an attempt answers, to tell whether y2 changed y1's answer: code, a math answer, or the toy integer."""
    grader = problem.get("grader")
    if grader in ("mbpp", "humaneval"):
        return extract_code(text)
    if grader == "toy_code":
        return text.strip()
    return extract_answer(text) if grader == "math" else toy_math.answer(text)


def reward(text, problem):
    grader = problem.get("grader")  # the toy tasks' problems have none
    if grader == "math":
        return math_reward(text, problem["answer"])
    if grader == "mbpp":
        return mbpp_reward(problem, extract_code(text))
    if grader == "humaneval":
        code = extract_code(text)
        # a whole function (chat models) redefines the prompt's stub, keeping its imports; else a body
        return humaneval_reward(problem, "\n" + code if f"def {problem['entry_point']}(" in code else code)
    if grader == "toy_code":
        return toy_code_rewards([problem], [text])[0]
    a = toy_math.answer(text)  # the toy: the integer the attempt's columns spell
    return float(a is not None and a == int(problem["answer"]))


def rewards_of(texts, problems):
    """reward() of many attempts; the toy code programs run in one sandboxed batch (2 workers), not one by one."""
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
    """x -> y1 (sampled) -> instruction (forced) -> y2 (sampled), for a batch of prompt token lists.

    Returns a dict: tokens (N, T) right-padded full sequences [x, y1, p, y2]; m1, m2 (N, T) float masks, 1 on
    the sampled tokens of y1 / y2 (their end-of-turn included), 0 on prompt, instruction, padding and any
    forced end-of-turn; logp (N, T) the sampler's log-probs of the sampled tokens (0 elsewhere); y1, y2 texts.
    y1: given first attempts (token lists) instead of sampled ones (m1 = 0 then: nothing of y1 was sampled),
    to measure correction of another model's attempts (Fig. 5). second=False: single-turn, [x, y1] only.
    """
    dev = next(model.parameters()).device
    if y1 is None:
        idx, valid = left_pad(prompts, tok.pad_id, dev)
        out, lp = model.generate(idx, max_new, temperature, valid=valid, eos_id=tok.eos_id, pad_id=tok.pad_id,
                                 generator=generator, logprobs=True)
        y1 = [ended(r, tok.eos_id) for r in out[:, idx.shape[1]:].tolist()]
        lp1 = lp.tolist()
    else:
        y1, lp1 = [ended(list(a), tok.eos_id) for a in y1], None
    # turn 2 context: x, y1 (closed with a forced end-of-turn if it ran out of tokens), the instruction
    instr = tok.encode(instruction) if second else []
    ctx = [x + y + ([] if hit else [tok.eos_id]) + instr for x, (y, hit) in zip(prompts, y1)]
    y2, lp2 = [([], True)] * len(prompts), None
    if second:
        idx2, valid2 = left_pad(ctx, tok.pad_id, dev)
        out2, lp2 = model.generate(idx2, max_new, temperature, valid=valid2, eos_id=tok.eos_id, pad_id=tok.pad_id,
                                   generator=generator, logprobs=True)
        y2 = [ended(r, tok.eos_id) for r in out2[:, idx2.shape[1]:].tolist()]
        lp2 = lp2.tolist()
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
    # fp32; the model computes log_softmax(logits).gather(targets) a few hundred positions at a time, so the
    # (N, T-1, V) logits never exist at once (25 GiB for a 150k vocabulary at the README recipe's batch)
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
    """Two-turn evaluation (greedy by default, as in the paper); returns the metrics row.

    y1: fixed first attempts (token lists, one per problem) that the model corrects instead of its own (Fig. 5).
    detail: the row also holds the per-problem first attempts (y1_tok) and edit-distance ratios (Fig. 4).
    """
    model.eval()
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    r1, r2, changed, ratios, first = [], [], [], [], []
    for i in range(0, len(problems), batch):
        chunk = problems[i:i + batch]
        s = sample_two_turns(model, tok, [tok.encode(q["prompt"]) for q in chunk], task.instruction, max_new,
                             temperature, g, y1=None if y1 is None else y1[i:i + batch])
        r1 += rewards_of(s["y1"], chunk)
        r2 += rewards_of(s["y2"], chunk)
        first += s["y1_tok"]
        for q, a, b in zip(chunk, s["y1"], s["y2"]):
            changed.append(final_answer(a, q) != final_answer(b, q))
            ratios.append(edit_distance(a, b) / max(1, len(a) + len(b)))
    n = len(problems)
    t1, t2 = sum(r1) / n, sum(r2) / n
    i2c = sum(1 for a, b in zip(r1, r2) if a == 0 and b == 1) / n
    c2i = sum(1 for a, b in zip(r1, r2) if a == 1 and b == 0) / n
    row = dict(acc_t1=t1, acc_t2=t2, delta=t2 - t1, delta_i_to_c=i2c, delta_c_to_i=c2i,
               changed=sum(changed) / n, edit_ratio=sum(ratios) / n, n=n)
    # Fig. 5's correction rate: the share of wrong first attempts that the second attempt fixes
    row["fix_rate"] = i2c / max(1e-9, 1 - t1)
    return {**row, "y1_tok": first, "edit_ratios": ratios} if detail else row


def majority(texts, problem):
    """The attempt whose final answer most attempts share (ties: the earliest); None if none has an answer."""
    answers = [final_answer(t, problem) for t in texts]
    votes = {}
    for a in answers:
        if a is not None and a != "":
            votes[a] = votes.get(a, 0) + 1
    if not votes:
        return None
    best = max(votes.values())
    return next(t for t, a in zip(texts, answers) if votes.get(a) == best)


@torch.no_grad()
def inference_scaling(model, tok, task, problems, max_new, K, temperature, seed=0, batch=512):
    """Section 6.3 at a budget of b samples per problem, b = 2, 4, ..., K: majority vote over b parallel first
    attempts, vs over the second attempts of b/2 first attempts, each self-corrected once. One batch of K
    two-turn samples per problem serves every budget. Returns [{budget, parallel, sequential, n}]: the accuracies
    over the n problems."""
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
    rows, b = [], 2
    while b <= K:
        par = [majority(a[:b], q) for a, q in zip(y1s, problems)]
        seq = [majority(a[:b // 2], q) for a, q in zip(y2s, problems)]
        acc = [sum(rewards_of([t or "" for t in v], problems)) / len(problems) for v in (par, seq)]
        rows.append(dict(budget=b, parallel=acc[0], sequential=acc[1], n=len(problems)))
        b *= 2
    return rows


def table(rows):
    head = f"{'model':<10}{'acc@t1':>8}{'acc@t2':>8}{'delta':>8}{'i->c':>8}{'c->i':>8}{'changed':>9}{'edit':>7}{'n':>6}"
    lines = [head] + [f"{r['model']:<10}{100 * r['acc_t1']:>8.1f}{100 * r['acc_t2']:>8.1f}{100 * r['delta']:>+8.1f}"
                      f"{100 * r['delta_i_to_c']:>8.1f}{100 * r['delta_c_to_i']:>8.1f}{100 * r['changed']:>9.1f}"
                      f"{r['edit_ratio']:>7.3f}{r['n']:>6}" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# stage "base": the toy base model from the imperfect solver's two-turn corpus


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
    # a train problem and the imperfect solver's two attempts, both imitated
    traces = [(*task.module.corpus_example(rng), 1, 1) for _ in range(batch)]
    return pack(tok, task.instruction, traces, device)


def train_base(args, log):
    task = args.task_
    tok = CharTokenizer(task.alphabet)
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
    val = args.task_.module.problems("val", args.n_val, seed=args.seed)
    t0, ntok = time.time(), 0
    for step in tqdm(range(start, args.steps), desc="base", disable=None if args.master else True):
        # linear warmup, then cosine to 0: without warmup, lr 3e-3 sometimes stalled the base on a plateau
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for gr in opt.param_groups:
            gr["lr"] = lr
        tokens, mask = corpus_batch(task, tok, rng, args.batch // args.world, args.device)
        with autocast(args.device):
            lp = token_logprobs(train_model, tokens)  # (B, T)
        n_tok = mask.sum()
        if args.ddp:  # DDP averages gradients over ranks: divide by the mean count to get the combined token mean
            dist.all_reduce(n_tok)
            n_tok = n_tok / args.world
        nll = -(lp * mask).sum() / n_tok
        opt.zero_grad(set_to_none=True)
        nll.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ntok += tokens.numel() * args.world
        row = dict(stage="base", step=step + 1, nll=nll.item(), lr=lr, tok_per_s=ntok / (time.time() - t0))
        if args.eval_every and (step + 1) % args.eval_every == 0 and args.master:
            row.update({f"val_{k}": v for k, v in evaluate(model, tok, task, val, args.max_new).items()})
            model.train()
        log(row)
        if (step + 1) % args.ckpt_every == 0 and args.master:
            save_checkpoint(last_path(args), model, tok, optimizer=opt.state_dict(), step=step + 1,
                            rng=rng.getstate(), stage=args.stage)
    if args.master:
        save_checkpoint(os.path.join(args.out, args.name + ".pt"), model, tok, stage=args.stage)


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

    Under DDP each rank passes its own share, whole RLOO groups of k. The loss is a mean over the rank's
    samples and DDP averages gradients over ranks, so with equal shares the update equals one process's
    update on the combined batch; no extra scaling. Returns kl1, kl2 (N,) and the gradient norm before clipping.
    """
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
    opt.step()
    return kl1, kl2, grad_norm


def train_rl(args, log):
    policy, state = load_model(args.init, args.dtype)
    tok = from_description(state["tokenizer"])
    task = for_tokenizer(args.task_, tok)
    ref_path = args.ref or state.get("ref") or args.init  # stage2 inherits stage1's reference (the base model)
    ref, _ = load_model(ref_path, args.ref_dtype or args.dtype)
    policy.grad_ckpt = args.grad_ckpt
    policy.to(args.device).train()
    ref.to(args.device).eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, weight_decay=0.0, fused=args.device.type == "cuda")
    rng = random.Random(args.seed + args.rank)  # DDP: each rank its own prompts and samples
    gen = torch.Generator(device=args.device).manual_seed(args.seed + args.rank)
    start = resume(args, policy, opt, rng, gen)
    final = os.path.join(args.out, args.name + ".pt")  # the stage's checkpoint
    best = -1.0  # best validation acc@t2 so far, kept in the checkpoint so that --resume continues the choice
    if start and args.eval_every and os.path.exists(final):
        best = load_checkpoint(final)[1].get("val_acc_t2", -1.0)
    model = ddp_wrap(args, torch.compile(policy) if args.compile else policy)  # the training forward
    train = task.module.problems("train", 20000, seed=args.seed)
    val = task.module.problems("val", args.n_val, seed=args.seed)
    if args.master:
        print(f"{args.stage}: {policy.num_params() / 1e6:.2f}M parameters, init {args.init}, ref {ref_path}, "
              f"{args.steps} steps x {args.batch} prompts x k={args.k}" + (f" on {args.world} DDP ranks" if args.ddp else ""))
    t0, ntok = time.time(), 0
    for step in tqdm(range(start, args.steps), desc=args.stage, disable=None if args.master else True):
        for gr in opt.param_groups:
            gr["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        batch = rng.sample(train, args.batch // args.world)  # DDP: this rank's share of the prompts
        prompts = [tok.encode(q["prompt"]) for q in batch for _ in range(args.k)]  # N = batch * k, grouped
        policy.eval()
        with autocast(args.device):
            s = sample_two_turns(policy, tok, prompts, task.instruction, args.max_new, args.temperature, gen,
                                 second=args.stage != "single")
        policy.train()
        probs = [q for q in batch for _ in range(args.k)]
        r1 = torch.tensor(rewards_of(s["y1"], probs), device=args.device)  # (N,)
        r2 = torch.tensor(rewards_of(s["y2"], probs) if args.stage != "single" else [0.0] * len(probs),
                          device=args.device)  # (N,)
        with torch.inference_mode(), autocast(args.device):  # the frozen reference: no autograd at all
            ref_lp = token_logprobs(ref, s["tokens"])  # (N, T)
        kl1, kl2, grad_norm = rl_update(args, model, opt, s, r1, r2, ref_lp)
        sums = torch.stack([r1.sum(), r2.sum(), kl1.sum(), kl2.sum(), (s["m1"] + s["m2"]).sum()])
        if args.ddp:  # log the combined batch, not rank 0's share
            dist.all_reduce(sums)
        r1m, r2m, kl1m, kl2m = (sums[:4] / (len(prompts) * args.world)).tolist()
        ntok += int(sums[4])
        row = dict(stage=args.stage, step=step + 1, r1=r1m, r2=r2m, kl1=kl1m, kl2=kl2m, grad_norm=grad_norm.item(),
                   sampled_tok_per_s=ntok / (time.time() - t0))
        if args.eval_every and (step + 1) % args.eval_every == 0 and args.master:
            v = evaluate(policy, tok, task, val, args.max_new)
            row.update({f"val_{k}": x for k, x in v.items()})
            if v["acc_t2"] > best:  # model selection on validation, never on test (departure 3)
                best = v["acc_t2"]
                save_checkpoint(final, policy, tok, ref=ref_path, stage=args.stage, step=step + 1, val_acc_t2=best)
        log(row)
        if (step + 1) % args.ckpt_every == 0 and args.master:
            save_checkpoint(last_path(args), policy, tok, optimizer=opt.state_dict(), step=step + 1,
                            rng=rng.getstate(), gen=gen.get_state(), ref=ref_path, stage=args.stage)
    if args.master and best < 0:  # no validation: the last step
        save_checkpoint(final, policy, tok, ref=ref_path, stage=args.stage, step=args.steps)


# ----------------------------------------------------------------------------------------------------------
# checkpoints, logging, main


def last_path(args):
    return os.path.join(args.out, args.name + "_last.pt")


def ddp_wrap(args, model):
    """DDP: wrap the training model so backward all-reduces (averages) gradients over ranks."""
    if not args.ddp:
        return model
    return DDP(model, device_ids=[args.device.index] if args.device.type == "cuda" else None)


def resume(args, model, opt, rng, gen=None):
    """With --resume and a <name>_last.pt present: restore weights, optimizer and RNGs; return the next step."""
    if not (args.resume and os.path.exists(last_path(args))):
        return 0
    saved, state = load_checkpoint(last_path(args))
    if state.get("stage") != args.stage:
        raise ValueError(f"{last_path(args)} was written by stage {state.get('stage')!r}, not {args.stage!r}")
    model.load_state_dict(saved.state_dict())
    opt.load_state_dict(state["optimizer"])
    rng.setstate(state["rng"])
    if gen is not None:
        gen.set_state(state["gen"])
    if args.ddp:  # the checkpoint holds rank 0's RNG states: give each rank a stream of its own again (not exact)
        rng.seed(args.seed + args.rank + 7919 * state["step"])
        if gen is not None:
            gen.manual_seed(args.seed + args.rank + 7919 * state["step"])
    if args.master:
        print(f"resumed {args.stage} from {last_path(args)} at step {state['step']}")
    return state["step"]


def main(argv=None):
    args = derive(p.parse_args(argv))
    metrics = os.path.join(args.out, "metrics.jsonl")

    def log(row):
        if not args.master:  # DDP: rank 0 alone logs
            return
        with open(metrics, "a") as f:
            f.write(json.dumps({"name": args.name, "seed": args.seed, **row}) + "\n")
        keys = [k for k in row if k not in ("stage", "step")]
        tqdm.write(f"{args.stage} step {row['step']:4d} | " + " ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k in keys))

    if args.stage == "base":
        if args.task not in ("toy_math", "toy_code"):
            raise ValueError(f"--stage base pre-trains the toy model; --task {args.task} starts RL from --init")
        train_base(args, log)
    elif args.stage in ("stage1", "stage2", "single"):
        if not args.init:
            raise ValueError(f"--stage {args.stage} needs --init (a checkpoint to start from)")
        train_rl(args, log)
    elif args.master:  # eval: one process is enough
        rows, fixed, names = [], None, args.evaluate.split(",")
        shown = set(names)
        if args.fixed_y1 and not args.scaling:  # its first attempts are needed first; evaluated once
            names = [args.fixed_y1] + [n for n in names if n != args.fixed_y1]
        for name in names:
            # a checkpoint name in --out, or a Hugging Face directory
            model, state = load_model(name if os.path.isdir(name) else os.path.join(args.out, name + ".pt"), args.dtype)
            model.to(args.device)
            tok = from_description(state["tokenizer"])
            task = for_tokenizer(args.task_, tok)
            test = task.module.problems("test", args.n_test, seed=0)  # fixed test set across seeds
            if args.scaling:
                rows.append({"model": name, "scaling": inference_scaling(
                    model, tok, task, test, args.max_new, args.scaling, args.scaling_temperature, args.seed)})
                print(name, " ".join(f"K={r['budget']}: {100 * r['parallel']:.1f} / {100 * r['sequential']:.1f}"
                                     for r in rows[-1]["scaling"]), "(parallel / sequential, %)")
                continue
            row = evaluate(model, tok, task, test, args.max_new, batch=args.eval_batch, detail=True)
            first = row.pop("y1_tok")
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
        with open(os.path.join(args.out, "scaling.json" if args.scaling else "results.json"), "w") as f:
            json.dump(rows, f, indent=1)
    if args.ddp:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
