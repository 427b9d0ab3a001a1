"""
runs.py: the bookkeeping around score.py's algorithm, which a reader of the paper can skip: flag and context
checks, checkpoint files (atomic, weights-only), loading a model (our .pt or a Hugging Face directory) with a hash
of its weights, DDP wrapping, the non-finite step guard, --resume of <name>_last.pt (only of the same run), and
metrics.jsonl, the eval's results.json and samples.jsonl (rows merged by model), and the lock that gives a
run directory one writer per name.

Guarantees (each tested): bad flags and a context too small for the task's prompts stop a run at start with
the flag named; a non-finite loss or gradient skips the step with a warning and 3 in a row stop the run; a
resumed run continues only its own _last.pt (stage, task, init, ref, seed, hyperparameters; --steps may grow)
and metrics.jsonl keeps one row per step of each name across a resume; Stage II's inherited reference must
have the weights Stage I was trained against (its hash is stored with every checkpoint); a second run of the same
--out and --name (or a shell script into an --out where a run is writing) refuses at start, naming the first: it
holds <out>/.<name>.lock (fcntl.flock, dropped by the kernel when its process ends, so a killed run blocks nothing),
a hidden file that the run removes when it exits. Shells take theirs with `python runs.py FD SCRIPT OUT`, FD an open
descriptor of the script's lock file <out>/.<script>.lock, which stays (hidden): the one file a finished run leaves
beside its checkpoints, metrics, results and plots.
"""
import argparse, atexit, fcntl, hashlib, json, os, re, sys, tempfile, time  # noqa: E401
from contextlib import suppress
from dataclasses import asdict

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from model import GPT, config_from_dict, get_device
from tokenizer import GPT2Tokenizer, HFTokenizer


def save_checkpoint(path, model, tokenizer=None, **extra):
    """Write {config, model weights, tokenizer description, extra} to path atomically, never non-finite weights
    (ValueError naming the first bad tensor): a temp file .tmp-<pid>-<random>.pt in the same directory, fsynced,
    renamed over path, so a crash leaves the old checkpoint or the new (and a temp file the next save removes)."""
    raw = model.module if hasattr(model, "module") else model  # unwrap DDP
    sd = raw.state_dict()
    bad = next((k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise ValueError(f"refusing to write {path}: {bad} holds non-finite values (NaN or inf)")
    state = {"config": asdict(raw.config), "model": sd, "tokenizer": tokenizer and tokenizer.describe(), **extra}
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):  # temp files of interrupted saves: their saver has ended, or pid-less and an hour old
        m, f = re.fullmatch(r"\.tmp-(?:(\d+)-)?.*\.pt", name), os.path.join(d, name)
        with suppress(OSError):  # PermissionError: its saver runs, as another user; or removed meanwhile by a saver
            if m and (_ended(int(m[1])) if m[1] else time.time() - os.path.getmtime(f) > 3600):
                os.remove(f)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".tmp-{os.getpid()}-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(e, (OSError, RuntimeError)):  # torch.save reports a failed write as "unexpected pos"
            raise OSError(f"could not write checkpoint {path}: {_write_error(d) or e}") from e
        raise


def _write_error(d):
    """The OS error a write in directory d gets now (a full disk, a file-size limit), or None."""
    try:
        with tempfile.TemporaryFile(dir=d) as f:
            f.write(b"\0" * 2 ** 20)
            f.flush()
    except OSError as e:
        return e


def _ended(pid):
    """Whether process pid has ended (signal 0 only checks); never where os.kill would end it instead (not POSIX)."""
    try:
        return os.name == "posix" and os.kill(pid, 0) is not None  # None: it runs
    except (ProcessLookupError, OverflowError):
        return True


def load_checkpoint(path, map_location="cpu"):
    """(model, state), state holding 'tokenizer' and the extra entries saved with it. Loaded weights-only (tensors,
    containers, strings, numbers): a file holding anything else is refused, as unpickling it could run code."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"checkpoint file {path} could not be read weights-only ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"checkpoint file {path} is not a checkpoint of this project (no config/model entries)")
    model = GPT(config_from_dict(state["config"], where=path))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint file {path}: weights do not fit its config: {e}") from e
    return model, state


_held = {}  # this process's lock files, open for its whole life (closing one would drop its lock)
_owner = os.getpid()  # set in one_writer: a forked child (the code sandbox's) exits without touching them


def _lock(fd, path, what):
    """Take the lock of fd (path, open), or BlockingIOError naming its holder as the holder wrote it in the file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = os.pread(fd, 2000, 0).decode(errors="replace").strip() or "a process that has not written its name yet"
        raise BlockingIOError(f"{path} is held by {who}: {what}; wait for it to end, or choose another --out "
                              f"(or --name)") from None


def _sign(fd, who):
    """Write who holds the lock into its file, for the message of the run it refuses."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, who.encode(), 0)


def _same_file(fd, path):
    """Is fd's file still the one at path (not removed, or replaced, by a run that ended meanwhile)?"""
    with suppress(FileNotFoundError):
        a, b = os.fstat(fd), os.stat(path)
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    return False


def one_writer(out, name):
    """Make this run the only writer of <out>/<name>*, before anything is written there: <out>/.<name>.lock, removed
    when this process exits."""
    os.makedirs(out, exist_ok=True)
    path = os.path.realpath(os.path.join(out, f".{name}.lock"))
    if path in _held:  # this process's earlier run (sequential calls of main(), as in the tests)
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd, path, f"another run writes {name} into {out}")
        except BlockingIOError:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        os.close(fd)  # its holder removed it after we opened it (see _release): lock the file now at path
    _sign(fd, f"pid {os.getpid()} ({' '.join(sys.argv)})")
    global _owner
    _held[path], _owner = fd, os.getpid()


@atexit.register
def _release():
    """Remove this process's lock files while still holding them: a run that opened one meanwhile finds it gone
    (one_writer's _same_file) and takes a new one, so no two runs ever hold a lock on the same path."""
    if os.getpid() != _owner:
        return
    for path, fd in _held.items():
        with suppress(OSError):
            if _same_file(fd, path):
                os.remove(path)
            os.close(fd)
    _held.clear()


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


def load_model(path, dtype="fp32", with_hash=False, task=None):
    """(model, state) from our .pt checkpoint, or from a Hugging Face directory with its own tokenizer files (or
    hf.py's tokenizer_description.json; only GPT-2 may lack both: tiktoken's GPT-2 BPE). with_hash: state["hash"]
    identifies the weights as stored. task: a checkpoint that records another task (e.g. another toy_math regime,
    same characters) is refused."""
    if os.path.isdir(path):
        has_tok = any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "vocab.json"))  # (HFTokenizer)
        ours = os.path.join(path, "tokenizer_description.json")  # hf.py's export of a model with our tokenizer
        model = GPT.from_pretrained(path)
        if not has_tok and model.config.rope and not os.path.isfile(ours):  # GPT-2's ids would be garbage, silently
            raise FileNotFoundError(f"{path} has no tokenizer.json (nor vocab.json + merges.txt); only a GPT-2 "
                                    f"directory may go without (it gets tiktoken's GPT-2 BPE)")
        state = {"tokenizer": HFTokenizer(path).describe() if has_tok else json.load(open(ours))
                 if os.path.isfile(ours) else GPT2Tokenizer().describe()}
    else:
        model, state = load_checkpoint(path)
        if task and state.get("task", task) != task:  # older checkpoints record none
            raise ValueError(f"{path} was trained on --task {state['task']}, not --task {task}")
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
    """Take <out>/<name>.lock. With --resume and a <name>_last.pt of this same run: restore weights, optimizer and
    RNGs. Returns the next step, after dropping this name's metrics.jsonl rows past it (one row per step, never two
    runs mixed)."""
    if args.master:  # rank 0 alone writes: the run's lock, after the checks and before the first write
        one_writer(args.out, args.name)
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


def merge_rows(path, rows):
    """Write rows (dicts with "model") to path, .json (a list) or .jsonl (a line each), atomically; the rows of other
    models already there stay, those of the same models are replaced."""
    if not rows:
        return
    jl = path.endswith(".jsonl")
    old = ([json.loads(x) for x in open(path)] if jl else json.load(open(path))) if os.path.exists(path) else []
    rows = [r for r in old if r["model"] not in {x["model"] for x in rows}] + rows
    with open(path + ".tmp", "w") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) if jl else json.dumps(rows, indent=1))
    os.replace(path + ".tmp", path)


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


if __name__ == "__main__":  # train_small.sh, reproduce.sh: python runs.py FD SCRIPT OUT [DIR...]
    # FD: the shell's open descriptor of OUT/.SCRIPT.lock; its lock outlives this process (one open file description,
    # the shell's). Then no lock in OUT or the DIRs may be held: no score.py or baselines.py writes there.
    fd, script, dirs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    try:
        _lock(fd, os.path.join(dirs[0], f".{script}.lock"), f"another {script} writes into {dirs[0]}")
        _sign(fd, f"pid {os.getppid()} ({script}, OUT={dirs[0]})")
        for d in filter(os.path.isdir, dirs):
            for p in sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".lock")):
                if not _same_file(fd, p):  # not the script's own
                    try:
                        other = os.open(p, os.O_RDONLY)
                    except FileNotFoundError:  # its run ended and removed it
                        continue
                    try:
                        _lock(other, p, f"a run writes into {d}")  # free: dropped again at once
                    finally:
                        os.close(other)
    except BlockingIOError as e:
        sys.exit(f"{script}: error: {e}")
