"""
runs.py: the bookkeeping around score.py's algorithm, which a reader of the paper can skip: flag and context
checks, loading a model (our .pt or a Hugging Face directory) with a hash of its weights, DDP wrapping, the
non-finite step guard, --resume of <name>_last.pt (only of the same run), and metrics.jsonl.

Guarantees (each tested): bad flags and a context too small for the task's prompts stop a run at start with
the flag named; a non-finite loss or gradient skips the step with a warning and 3 in a row stop the run; a
resumed run continues only its own _last.pt (stage, task, init, ref, seed, hyperparameters; --steps may grow)
and metrics.jsonl keeps one row per step of each name across a resume; Stage II's inherited reference must
have the weights Stage I was trained against (its hash is stored with every checkpoint).
"""
import argparse
import fcntl
import hashlib
import json
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from model import GPT, get_device, load_checkpoint
from tokenizer import GPT2Tokenizer, HFTokenizer


def at_least(lo):
    def parse(text):
        if int(text) < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {text}")
        return int(text)
    return parse


def check_context(block_size, tok, task, problems, max_new, flag="the model's block_size"):
    """The longest two-turn episode, prompt + y1 + end + instruction + y2, must fit the context: found at the
    start, not after hours of training."""
    need = max(len(tok.encode(q["prompt"])) for q in problems) + 2 * max_new + 1 + len(tok.encode(task.instruction))
    if need > block_size:
        raise ValueError(f"{flag} {block_size} is too small: the longest prompt with two attempts of --max_new "
                         f"{max_new} tokens and the instruction needs {need} tokens")


def load_model(path, dtype="fp32", with_hash=False):
    """(model, state) from our .pt checkpoint, or from a Hugging Face directory with its own tokenizer files (or
    hf.py's tokenizer_description.json; only GPT-2 may lack both: tiktoken's GPT-2 BPE). with_hash: state["hash"]
    identifies the weights as stored."""
    if os.path.isdir(path):
        has_tok = any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "vocab.json"))
        ours = os.path.join(path, "tokenizer_description.json")  # hf.py's export of a model with our tokenizer
        model = GPT.from_pretrained(path)
        if not has_tok and model.config.rope and not os.path.isfile(ours):  # GPT-2's ids would be garbage, silently
            raise FileNotFoundError(f"{path} has no tokenizer.json (nor vocab.json + merges.txt); only a GPT-2 "
                                    f"directory may go without (it gets tiktoken's GPT-2 BPE)")
        state = {"tokenizer": HFTokenizer(path).describe() if has_tok else json.load(open(ours))
                 if os.path.isfile(ours) else GPT2Tokenizer().describe()}
    else:
        model, state = load_checkpoint(path)
    if with_hash:  # only the KL reference needs it; hashing a large policy would cost seconds for nothing
        state["hash"] = weights_hash(model)
    return model.to({"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]), state


def weights_hash(model):
    """A short content hash of the weights: which model a checkpoint was trained against, whatever its path."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode() + v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())  # (bytes,)
    return h.hexdigest()[:16]


def step_if_finite(opt, grad_norm):
    """Take the optimizer step only if the gradient is finite (a non-finite loss gives a non-finite norm)."""
    ok = bool(torch.isfinite(grad_norm))
    if ok:
        opt.step()
    return ok


def check_skips(skips, ok, step, limit=3):
    """Count consecutive skipped steps: a warning each, an error after `limit` in a row."""
    if ok:
        return 0
    tqdm.write(f"warning: step {step}: non-finite loss or gradient, step skipped")
    if skips + 1 >= limit:
        raise RuntimeError(f"{limit} steps in a row had a non-finite loss or gradient (step {step}); stopping. "
                           f"Lower --lr, or check the init checkpoint")
    return skips + 1


def setup_ddp(args):
    """`torchrun` sets RANK / WORLD_SIZE: one process per device, gradients all-reduced (ddp_wrap)."""
    args.device = get_device(args.device or None)
    args.ddp, args.rank, args.world = int(os.environ.get("RANK", -1)) != -1, 0, 1
    if args.ddp:
        dist.init_process_group(backend="nccl" if args.device.type == "cuda" else "gloo")
        args.rank, args.world = dist.get_rank(), dist.get_world_size()
        if args.device.type == "cuda":
            args.device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(args.device)
        if args.batch % args.world:
            raise ValueError(f"--batch {args.batch} must divide evenly over {args.world} DDP ranks")
    args.master = args.rank == 0


def last_path(args):
    return os.path.join(args.out, args.name + "_last.pt")


def ddp_wrap(args, model):
    """DDP: wrap the training model so backward all-reduces (averages) gradients over ranks."""
    return DDP(model, device_ids=[args.device.index] if args.device.type == "cuda" else None) if args.ddp else model


def run_id(args):
    """What makes a run this run: a resumed <name>_last.pt must match it (--steps may grow)."""
    keys = ("stage", "task", "init", "ref", "seed", "lr", "warmup", "batch", "k", "alpha", "beta1", "beta2",
            "temperature", "max_new", "dtype", "n_layer", "n_head", "n_embd", "block_size")
    return {k: getattr(args, k) for k in keys}


def resume(args, model, opt, rng, gen=None):
    """With --resume and a <name>_last.pt of this same run: restore weights, optimizer and RNGs. Returns the
    next step, after dropping this name's metrics.jsonl rows past it (one row per step, never two runs mixed)."""
    start = 0
    if args.resume and os.path.exists(last_path(args)):
        start = restore(args, model, opt, rng, gen)
    if args.master:
        with open(os.path.join(args.out, "metrics.jsonl"), "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # other runs may append to the same file (reproduce.sh's jobs)
            f.seek(0)
            rows = f.readlines()
            keep = [r for r in rows if not ((d := json.loads(r)).get("name") == args.name and d["step"] > start)]
            if len(keep) < len(rows):
                f.truncate(0)
                f.writelines(keep)
    return start


def restore(args, model, opt, rng, gen):
    saved, state = load_checkpoint(last_path(args))
    diff = {k: (v, state.get("run", {}).get(k)) for k, v in run_id(args).items() if state.get("run", {}).get(k) != v}
    if diff:
        raise ValueError(f"--resume: {last_path(args)} belongs to another run; differences (this run, the file's): "
                         + ", ".join(f"--{k} {a!r} vs {b!r}" for k, (a, b) in diff.items()))
    model.load_state_dict(saved.state_dict())
    opt.load_state_dict(state["optimizer"])
    rng.setstate(state["rng"])
    if gen is not None:
        gen.set_state(state["gen"])
    if args.ddp:  # the checkpoint holds rank 0's RNG states: give each rank a stream of its own again (not exact)
        rng.seed(args.seed + args.rank + 7919 * state["step"])
        gen is None or gen.manual_seed(args.seed + args.rank + 7919 * state["step"])
    if args.master:
        print(f"resumed {args.stage} from {last_path(args)} at step {state['step']}")
    return state["step"]


def logger(args, stage):
    """log(row): one JSON line in <out>/metrics.jsonl and one progress line (rank 0 only)."""
    def log(row):
        if getattr(args, "master", True):
            with open(os.path.join(args.out, "metrics.jsonl"), "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.write(json.dumps({"name": args.name, "seed": args.seed, **row}) + "\n")
            tqdm.write(f"{stage} " + " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                              for k, v in row.items() if k != "stage"))
    return log
