"""rewards.py: the graders SCoRe's RL optimises against: answer extraction and equivalence for math, and a
sandbox that runs generated code against unit tests (HumanEval, MBPP, the toy code task). RL finds every
hole in a grader, so these aim to be exact, fast and not foolable by accident.

Math. `extract_answer(text)` returns the answer stated last, in any of: the paper's "Final Answer: The final
answer is $X$. I hope it is correct.", `\\boxed{X}` (nested braces), GSM8K's `#### X`, the toy tasks'
`ans:<integer>`. `math_equal(pred, ref)` normalises both (spaces, \\left/\\right, \\dfrac, \\frac12, a/b, units,
degrees, \\text{}, `x=`, `1{,}000`, \\$, %) and compares exact rationals (0.5 == \\frac{1}{2}), else
element-wise: tuples and intervals in order with the same brackets, solution lists ("1, 2" == "2, 1") as
multisets. Pure Python; input lengths are capped; it never raises (anything odd is False).

Code. `execute(program, timeout)` is True only if the program (a str, or a list of str parts each compiled
and exec'd on its own in one shared namespace, so a completion ending in an open string cannot swallow the
tests) ran to the end of its last part. Each program runs in a child forked by a fork-server worker (one per
core: `python -I -S rewards.py --worker`), which gives it:
  - its own session and, where the kernel allows, new mount, PID and network namespaces: no network; a
    32 MB tmpfs on /tmp (also bound over /var/tmp and /dev/shm) is its working directory and HOME, every
    other mount read-only; it is PID 1 of its namespace, so everything it started dies with it;
  - as root: a fresh uid (UID_BASE + pid) with only CAP_DAC_READ_SEARCH kept (the interpreter may live under
    /root), so RLIMIT_NPROC counts only its own processes and it can signal or write nothing of root's;
  - RLIMIT_CPU, RLIMIT_AS 1 GiB, RLIMIT_NPROC, RLIMIT_FSIZE, no core files, no_new_privs, an environment of
    PATH/HOME/TMPDIR/LANG only, stdin /dev/null, stdout+stderr into a memfd capped at OUT_CAP (reaching the
    cap fails it), and a wall-clock limit after which its process group is killed.
Success is proven, not inferred: the worker gets a random nonce from the caller over its stdin pipe (it is
not in the program's source, argv or env); the program's process writes it to a dedicated pipe only after
its last part returned; the caller requires that nonce and exit status 0. So an early sys.exit(0) or
os._exit(0), a killed parent, or tests that never ran, all read False. `execute_many` spreads a batch over
the workers; `humaneval_program`, `mbpp_program`, `toy_code_program` build the parts for `code_rewards`.
`extract_code(reply)` takes the program out of a chat model's reply (its last ``` block, or MBPP's [BEGIN]
... [DONE]).

Departures and limitations:
  1. math_equal normalises and compares rationals; it is no CAS: 2\\sqrt{2} vs \\sqrt{8}, or factored vs
     expanded polynomials, are unequal; no float tolerance (0.333 != 1/3), no `1e3` notation.
  2. The sandbox is no security boundary against a determined program with the same kernel: it can read any
     file, find the nonce in its own interpreter's memory (frames, gc) and write it, or tamper with the
     interpreter (sys.settrace, builtins) to skip tests. Without namespaces (non-root where unprivileged
     user namespaces are off; containers without CAP_SYS_ADMIN) it also has the network, can write wherever
     its uid may (absolute paths, the real /tmp) and processes that leave its process group survive it.
     `sandbox_features()` says what is in force here.
  3. Not root, RLIMIT_NPROC counts all the user's processes, so it is set to the user's task count +
     NPROC_EXTRA: a bound on fork bombs, not a budget. As root without CAP_SETUID/SETGID/DAC_READ_SEARCH
     the program keeps root and RLIMIT_NPROC does not bind.
  4. HumanEval and MBPP tests compare with ==, so an object whose __eq__ is always True passes them (their
     tests, kept as published). The toy grader checks `type(r) is int` first, with `type` and `int` captured
     before the program runs, and accepts only a plain single `def f(x)`.
  5. An empty program, or one over MAX_PROGRAM characters, is False without running. The worker pool
     belongs to one process and is not thread-safe (call the graders from one thread).

Benchmark: python rewards.py --bench [--data ../shared/realdata]
"""
import ast, builtins, ctypes, json, math, os, re, resource, secrets, select  # noqa: E401 (stdlib only)
import shutil, signal, struct, subprocess, sys, tempfile, time, traceback  # noqa: E401
from fractions import Fraction

# ---------------------------------------------------------------- answer extraction

MAX_TEXT = 1 << 16    # a longer model output has no answer (bounds every scan below)
MAX_ANSWER = 1000     # a longer answer equals nothing (bounds normalisation, which is at worst quadratic)


def _closing_brace(s, i):
    """Index of the '}' matching the '{' at s[i], or -1."""
    depth = 0
    for j in range(i, len(s)):
        depth += {"{": 1, "}": -1}.get(s[j], 0)
        if depth == 0:
            return j
    return -1


def extract_answer(text):
    """The answer stated last in `text`, or None."""
    try:
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            return None
        found = []  # (position, answer): the one stated last wins
        i = text.lower().rfind("the final answer is")
        if i >= 0:
            rest = text[i + 19:].lstrip()
            if rest.startswith("$"):  # "$X$": X ends at the first unescaped "$"
                j = 1
                while j < len(rest) and not (rest[j] == "$" and rest[j - 1] != "\\"):
                    j += 1
                if j < len(rest):
                    found.append((i, rest[1:j]))
            else:
                found.append((i, re.split(r"\.\s*I hope|\n", rest)[0].rstrip(". ")))
        for key in ("\\boxed", "\\fbox"):
            i = text.rfind(key)
            if i >= 0:
                j = i + len(key)
                k = j + len(text[j:]) - len(text[j:].lstrip())
                if text[k:k + 1] == "{":
                    e = _closing_brace(text, k)
                    if e > 0:
                        found.append((i, text[k + 1:e]))
                elif k > j:  # "\boxed 5"
                    found.append((i, re.match(r"[^\s$]*", text[k:]).group()))
        i = text.rfind("####")
        if i >= 0:
            found.append((i, text[i + 4:].split("\n")[0]))
        for m in re.finditer(r"(?<![A-Za-z0-9_])ans:(-?\d{1,60})(?!\d)", text):
            found.append((m.start(), m.group(1)))
        ans = max(found)[1].strip() if found else ""
        return ans or None
    except Exception:
        return None


# ---------------------------------------------------------------- answer equivalence

_UNIT_WORDS = ("units?|cm|km|mm|inch(?:es)?|feet|foot|ft|yards?|miles?|meters?|centimeters?|degrees?|dollars?|"
               "cents?|hours?|minutes?|seconds?|days?|weeks?|years?|mph|pounds?|square|sq|cubic")
_NUM = re.compile(r"-?\d{1,40}(?:\.\d{0,40})?")  # no exponent: Fraction("1e999999999") would be a huge int


def _norm(s):
    """A canonical string for an answer (raises on anything too long)."""
    if isinstance(s, bool) or not isinstance(s, (str, int, float, Fraction)):
        raise TypeError("not an answer")
    s = str(s).strip()
    if not s or len(s) > MAX_ANSWER or re.search("[\x00-\x08\x0e-\x1f\ud800-\udfff]", s) or _split_top(s) is None:
        raise ValueError("empty, too long, binary or unbalanced brackets")
    s = re.sub(r"(?<!\\)\\[,;:! ]", " ", s)  # LaTeX spacing (but not the "\\" of a matrix row)
    for a, b in (("\n", " "), ("{,}", ","), ("\\$", ""), ("$", ""), ("\\%", ""), ("%", ""), ("\\displaystyle", "")):
        s = s.replace(a, b)
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", s)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", s)  # 90^\circ, 90^{\circ}
    # a unit at the end, after something: "10\text{ cm}^2", "5 \mbox{ inches}", "12 dollars"
    s = re.sub(r"(?<=\S)\s*\\(?:text|mbox|mathrm)\s*\{\s*[A-Za-z ]*\}(?:\^\{?\d\}?)?\s*$", "", s)
    s = re.sub(rf"(?<=\d)\s*(?:{_UNIT_WORDS})(?:\^\{{?\d\}}?)?\s*$", "", s)
    s = re.sub(r"\\(?:text|textbf|textrm|mbox|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}", r"\1", s)
    m = re.fullmatch(r"\s*(?:[A-Za-z]|\\[A-Za-z]+)\s*(?:=|\\in)\s*([^=]+)", s)  # "x = 5", "x \in [1, 2]"
    s = m.group(1) if m else s
    # short forms: \frac12, \frac1{2}, \frac{1}2, \sqrt2 (before spaces go: "\frac 1 2")
    s = re.sub(r"\\frac\s*([0-9A-Za-z])\s*([0-9A-Za-z])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*([0-9A-Za-z])\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*([0-9A-Za-z])", r"\\frac\1{\2}", s)
    s = re.sub(r"\\sqrt\s*([0-9A-Za-z])", r"\\sqrt{\1}", s)
    s = re.sub(r"\s+", "", s)
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d*)?", s):  # thousands separators, not a list
        s = s.replace(",", "")
    s = re.sub(r"(?<![\d}])\.(\d)", r"0.\1", s)  # .5 -> 0.5
    s = s[:-1] if s.endswith(".") and len(s) > 1 else s
    m = re.fullmatch(r"(-?)([^/+\-=,]+)/([^/+\-=,]+)", s)  # a/b -> \frac{a}{b}
    s = f"{m.group(1)}\\frac{{{m.group(2)}}}{{{m.group(3)}}}" if m else s
    m = re.fullmatch(r"\(([A-Za-z0-9])\)", s)  # "(C)" -> "C"
    return m.group(1) if m else s


def _value(s):
    """s as an exact Fraction if it is a number, \\frac of numbers or mixed number; else None."""
    if _NUM.fullmatch(s):
        return Fraction(s)
    m = re.fullmatch(r"(-?)\\frac\{([^{}]*)\}\{([^{}]*)\}", s)
    if m:
        a, b = _value(m.group(2)), _value(m.group(3))
        return None if a is None or not b else (-a if m.group(1) else a) / b
    m = re.fullmatch(r"(-?)(\d{1,40})\\frac\{(\d{1,40})\}\{(\d{1,40})\}", s)  # 2\frac{1}{2}
    if m and int(m.group(4)):
        v = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
        return -v if m.group(1) else v
    return None


def _split_top(s):
    """s split at top-level commas, or None if its brackets do not balance."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        depth += (c in "([{") - (c in ")]}")
        if depth < 0:
            return None
        if c == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    return parts + [s[start:]] if depth == 0 and len(parts) < 64 else None


def _elements(s):
    """(kind, elements) of a compound answer: kind is "set" (unordered: "1,2" or "\\{1,2\\}") or the bracket
    pair of an ordered tuple/interval ("()", "(]", ...); (None, None) for anything else."""
    if s.startswith("\\{") and s.endswith("\\}"):
        return "set", _split_top(s[2:-2])
    if len(s) > 1 and s[0] in "([" and s[-1] in ")]":
        return s[0] + s[-1], _split_top(s[1:-1])
    parts = _split_top(s)
    return ("set", parts) if parts and len(parts) > 1 else (None, None)


def _equal(a, b, depth=0):
    if a == b:
        return True
    va, vb = _value(a), _value(b)
    if va is not None and vb is not None:
        return va == vb
    (ka, xa), (kb, xb) = _elements(a), _elements(b)
    if ka is None or ka != kb or xa is None or xb is None or len(xa) != len(xb) or depth > 3:
        return False
    if ka != "set":
        return all(_equal(x, y, depth + 1) for x, y in zip(xa, xb))
    rest = list(xb)  # unordered: match each element of a to a distinct equal element of b
    for x in xa:
        j = next((j for j, y in enumerate(rest) if _equal(x, y, depth + 1)), None)
        if j is None:
            return False
        del rest[j]
    return True


def math_equal(pred, ref):
    """Whether two final answers are equivalent (see the module docstring); never raises."""
    try:
        return pred is not None and ref is not None and _equal(_norm(pred), _norm(ref))
    except Exception:
        return False


def math_reward(text, ref):
    """1.0 if the answer stated last in `text` equals `ref` (MATH, GSM8K and toy math), else 0.0."""
    return float(math_equal(extract_answer(text), ref))


# ---------------------------------------------------------------- the sandbox (runs in the workers)

DEFAULT_TIMEOUT = 3.0  # seconds per program, as in HumanEval's harness
OUT_CAP = 1 << 20      # bytes of output (and of any file) a program may write; reaching it fails the program
MEM_LIMIT = 1 << 30    # RLIMIT_AS
NPROC_EXTRA = 32       # processes and threads a program may add
MAX_PROGRAM = 1 << 20  # characters
UID_BASE = 2_000_000_000
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, CAP_DAC_READ_SEARCH = 1, 8, 36, 38, 2
_libc = []


def _sys(name, *args):
    """Call a libc function with C long arguments (variadic ones such as syscall() need them); True on 0."""
    _libc or _libc.append(ctypes.CDLL(None, use_errno=True))
    return getattr(_libc[0], name)(*[a if isinstance(a, (bytes, type(None))) else ctypes.c_long(a) for a in args]) == 0


def _capset(caps):
    """Keep exactly the capabilities in bitmask `caps`, effective and permitted."""
    return _sys("capset", struct.pack("II", 0x20080522, 0), struct.pack("6I", caps, caps, 0, 0, 0, 0))


def _isolate_fs():
    """In a new mount namespace: a 32 MB tmpfs on /tmp, bound over /var/tmp and /dev/shm too; the rest
    read-only. True if all of it holds."""
    if not (_sys("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)  # keep our mounts out of the host's
            and _sys("mount", b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, b"size=32m,mode=1777")):
        return False
    dirs = [b"/tmp"] + [d for d in (b"/var/tmp", b"/dev/shm") if os.path.isdir(d)]
    ok = all([_sys("mount", b"/tmp", d, None, MS_BIND, None) for d in dirs[1:]])
    ro, rw = struct.pack("4Q", 1, 0, 0, 0), struct.pack("4Q", 0, 1, 0, 0)  # struct mount_attr, RDONLY = 1
    ok = ok and _sys("syscall", 442, -100, b"/", 0x8000, ro, 32)  # mount_setattr(AT_FDCWD, "/", AT_RECURSIVE)
    return all([_sys("syscall", 442, -100, d, 0, rw, 32) for d in dirs]) and ok


def _count_tasks():
    """Tasks (threads) of this uid: RLIMIT_NPROC counts them all."""
    n, me = 0, os.geteuid()
    for e in os.scandir("/proc"):
        try:
            n += len(os.listdir(f"/proc/{e.name}/task")) if e.name.isdigit() and e.stat().st_uid == me else 0
        except OSError:
            pass
    return n


def _child(parts, nonce, timeout, tmp, out, w, mode, worker):
    """The forked child of a worker; never returns. Isolates itself and runs the program in a grandchild
    (PID 1 of a new PID namespace, where possible); exits 0 only if the grandchild did."""
    _exit, _write, _getpid, _exec, _compile = os._exit, os.write, os.getpid, exec, compile  # before user code
    feats = []
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the worker's reaper would steal the grandchild's status
        _sys("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a dead worker takes its programs along
        if os.getppid() != worker:
            _exit(1)
        os.setsid()
        uid = UID_BASE + os.getpid()
        if mode["uid"]:
            os.chown(tmp, uid, uid)
        if mode["ns"] and _sys("unshare", CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET):
            feats.append("ns")
        pid = os.fork()
        if pid:
            _exit(0 if os.waitpid(pid, 0)[1] == 0 else 1)
        _sys("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # and with PID 1 its whole namespace dies
        if "ns" in feats and _isolate_fs():
            feats.append("ro")
        os.chdir("/tmp" if "ro" in feats else tmp)
        _sys("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if mode["uid"]:
            _sys("prctl", PR_SET_KEEPCAPS, 1, 0, 0, 0)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            if not _capset(1 << CAP_DAC_READ_SEARCH):
                _exit(1)
            feats.append("uid")
        elif mode["ns"] and not _capset(0):  # root of a user namespace could unmount all the above
            _exit(1)
        nproc, cpu = NPROC_EXTRA + (1 if mode["uid"] else _count_tasks()), math.ceil(timeout) + 1
        for res, lim in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (MEM_LIMIT,) * 2),
                         (resource.RLIMIT_NPROC, (nproc,) * 2), (resource.RLIMIT_FSIZE, (OUT_CAP,) * 2),
                         (resource.RLIMIT_CORE, (0, 0))):
            resource.setrlimit(res, lim)
        os.environ.clear()
        os.environ.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME=os.getcwd(), TMPDIR=os.getcwd(), LANG="C.UTF-8")
        for fd, to in ((os.open(os.devnull, os.O_RDONLY), 0), (out, 1), (out, 2)):
            os.dup2(fd, to)
        os.closerange(3, w)  # among them the worker's pipes to the caller
        os.closerange(w + 1, 1 << 16)
        _write(w, (",".join(feats) + "\n").encode())
        me, ns = _getpid(), {"__name__": "__main__", "__builtins__": builtins}
        for i, src in enumerate(parts):
            _exec(_compile(src, f"<part{i}>", "exec"), ns)
        sys.stdout.flush()
        sys.stderr.flush()
        if _getpid() == me:  # not a forked copy of the program
            _write(w, nonce)
            _exit(0)
    except BaseException as e:  # its traceback goes to its (capped) output, for debugging
        try:
            _write(2, "".join(traceback.format_exception(e))[-2000:].encode(errors="replace"))
        except BaseException:
            pass
    _exit(1)


_reaped = {}  # pid -> wait status of the worker's children, reaped on SIGCHLD


def _reap(*_):
    try:
        while (got := os.waitpid(-1, os.WNOHANG))[0]:
            _reaped[got[0]] = got[1]
    except ChildProcessError:
        pass


def _run_job(job, mode):
    """Run one program in a fresh child: the facts the caller judges it by."""
    tmp, timeout = tempfile.mkdtemp(prefix="score-sandbox-"), float(job["timeout"])
    out, (r, w) = os.memfd_create("out"), os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(job["parts"], job["nonce"].encode(), timeout, tmp, out, w, mode, os.getppid())
    os.close(w)
    deadline, pidfd = time.monotonic() + timeout, None
    try:
        pidfd = os.pidfd_open(pid)  # readable when the child exits (Linux >= 5.3; else poll)
    except (AttributeError, OSError):
        pass
    timed_out = False
    while pid not in _reaped:
        if not timed_out and time.monotonic() > deadline:
            timed_out = True
            for kill in (os.killpg, os.kill):  # its process group, then itself (if it had no group yet)
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        left = 0.05 if timed_out else min(0.05, max(0.0, deadline - time.monotonic()))
        select.select([pidfd], [], [], left) if pidfd else time.sleep(1e-3)
        _reap()
    status = _reaped.pop(pid)
    try:
        os.killpg(pid, signal.SIGKILL)  # whatever it left running in its group (without a PID namespace)
    except OSError:
        pass
    os.set_blocking(r, False)  # a stray process may still hold the write end
    try:
        feats, _, proof = os.read(r, 4096).decode(errors="replace").partition("\n")
    except BlockingIOError:
        feats, proof = "", ""
    size, text = os.fstat(out).st_size, os.pread(out, 2000, 0).decode(errors="replace")
    for fd in (r, out, pidfd):
        fd is None or os.close(fd)
    shutil.rmtree(tmp, ignore_errors=True)
    _reaped.clear()  # orphans (a killed child's PID 1), reaped as they died
    return {"exit": os.waitstatus_to_exitcode(status), "timed_out": timed_out, "nonce": proof, "out_bytes": size,
            "out": text, "features": feats.split(",") if feats else []}


def _worker_main():
    """The fork-server loop: one JSON job per stdin line, one JSON answer per stdout line."""
    mode = {"ns": True, "uid": False}
    if os.geteuid() == 0:  # can it become a fresh uid that still reads the interpreter's files?
        caps = int(re.search(r"CapEff:\s*(\w+)", open("/proc/self/status").read()).group(1), 16)
        mode["uid"] = caps & 0xC4 == 0xC4  # CAP_SETGID, CAP_SETUID, CAP_DAC_READ_SEARCH
    else:  # become root of a user namespace, so that each program can get its own namespaces
        uid, gid = os.getuid(), os.getgid()
        try:
            assert _sys("unshare", CLONE_NEWUSER)
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        except (AssertionError, OSError):
            mode["ns"] = False
    _sys("prctl", PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans come to us to be reaped, not to a slow init
    signal.signal(signal.SIGCHLD, _reap)
    for line in sys.stdin.buffer:
        os.write(1, (json.dumps(_run_job(json.loads(line), mode)) + "\n").encode())


# ---------------------------------------------------------------- the caller's side: a pool of workers

_POOL = {"owner": None, "workers": []}


def _spawn():
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": tempfile.gettempdir(), "LANG": "C.UTF-8"}
    return subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__), "--worker"], cwd="/", env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # a Ctrl-C of the caller's terminal does not reach it


def _kill(p):
    """Stop a worker (its programs die with it: PR_SET_PDEATHSIG)."""
    for step in (lambda: os.killpg(p.pid, signal.SIGKILL), p.wait, p.stdin.close, p.stdout.close):
        try:
            step()
        except OSError:
            pass


def _pool(n):
    """The worker list, with at least n live workers (started once per caller process, then reused)."""
    if _POOL["owner"] != os.getpid():  # a forked caller must not share its parent's pipes
        _POOL.update(owner=os.getpid(), workers=[])
    ws = _POOL["workers"]
    ws[:] = [p if p.poll() is None else _spawn() for p in ws] + [_spawn() for _ in range(n - len(ws))]
    return ws


__import__("atexit").register(lambda: _POOL["owner"] == os.getpid() and [_kill(p) for p in _POOL["workers"]])


def _parts(program):
    """The program as a list of str parts, or None if it cannot be run (not str, empty, too long)."""
    parts = [program] if isinstance(program, str) else list(program) if isinstance(program, (list, tuple)) else []
    ok = all(isinstance(p, str) for p in parts) and any(p.strip() for p in parts)
    return parts if ok and sum(map(len, parts)) <= MAX_PROGRAM else None


def run_sandboxed(programs, timeout=DEFAULT_TIMEOUT, workers=2):
    """Run programs (each a str or a list of str parts) in the sandbox on `workers` processes. Per program a
    dict: ok (the verdict), exit, timed_out, out_bytes, out (its first 2000 characters of output), features
    (what isolation held: "ns" namespaces, "ro" read-only host and private /tmp, "uid" a fresh uid)."""
    results, busy, ws, retried = [], {}, [], set()  # busy: worker slot -> (program index, nonce, deadline)
    try:
        programs = list(programs)
        results = [dict(ok=False, exit=None, timed_out=False, out_bytes=0, out="", features=[]) for _ in programs]
        timeout = min(max(float(timeout), 0.01), 600.0)
        if math.isnan(timeout):
            raise ValueError("timeout is NaN")
        todo = [i for i, p in enumerate(programs) if _parts(p)][::-1]
        n = max(1, min(int(workers), len(todo)))
        ws = _pool(n)
        while todo or busy:
            for k in range(n):
                if k not in busy and todo:
                    i, nonce = todo.pop(), secrets.token_hex(16)
                    job = {"parts": _parts(programs[i]), "nonce": nonce, "timeout": timeout}
                    try:
                        ws[k].stdin.write(json.dumps(job).encode() + b"\n")
                        ws[k].stdin.flush()
                        busy[k] = (i, nonce, time.monotonic() + timeout + 0.9)
                    except OSError:  # the worker had died: a fresh one takes the program (once)
                        _kill(ws[k])
                        ws[k] = _spawn()
                        todo += [] if i in retried else [i]
                        retried.add(i)
            if not busy:
                continue
            wait = max(0.0, min(d for _, _, d in busy.values()) - time.monotonic())
            ready = select.select([ws[k].stdout for k in busy], [], [], wait)[0]
            for k in list(busy):
                i, nonce, deadline = busy[k]
                if ws[k].stdout not in ready and time.monotonic() < deadline:
                    continue
                line = ws[k].stdout.readline() if ws[k].stdout in ready else b""  # written in one piece
                del busy[k]
                if line.endswith(b"\n"):
                    res = results[i] = json.loads(line)
                    res["ok"] = (res.pop("nonce") == nonce and res["exit"] == 0 and not res["timed_out"]
                                 and res["out_bytes"] < OUT_CAP)
                else:  # the worker died (killed by its program?) or hangs: the program fails
                    _kill(ws[k])
                    ws[k] = _spawn()
    except Exception:
        for k in busy:  # never leave a worker with an answer we will not read
            _kill(ws[k])
    return results


def execute_many(programs, timeout=DEFAULT_TIMEOUT, workers=2):
    """[execute(p, timeout) for p in programs], on `workers` processes at once."""
    return [r["ok"] for r in run_sandboxed(programs, timeout, workers)]


def execute(program, timeout=DEFAULT_TIMEOUT):
    """True only if the program (a str or a list of str parts) ran to the end of its last part within the
    limits (see the module docstring). Never raises; returns within about timeout + 1 s."""
    return execute_many([program], timeout, 1)[0]


def sandbox_features():
    """The isolation programs get here: a subset of ["ns", "ro", "uid"] (see run_sandboxed)."""
    return run_sandboxed(["pass"], 5.0, 1)[0]["features"]


# ---------------------------------------------------------------- code rewards

def extract_code(text):
    """The program in a model's reply: the last ```-fenced block (chat models fence their code; an unclosed
    fence runs to the end), else the text up to MBPP's [DONE] without a leading [BEGIN], else the text."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        return ""
    blocks = re.findall(r"```[^\n`]*\n(.*?)(?:```|\Z)", text, re.S)
    if blocks:
        return blocks[-1]
    text = text.split("[DONE]")[0]
    return text.split("[BEGIN]", 1)[1].lstrip("\n") if text.lstrip().startswith("[BEGIN]") else text


def humaneval_program(problem, completion):
    return [problem["prompt"] + completion, problem["test"], f"check({problem['entry_point']})"]


def mbpp_program(problem, code):
    return ["\n".join(problem.get("test_imports") or []) + "\n" + code, "\n".join(problem["test_list"])]


def toy_code_program(problem, program):
    """The parts grading a toy-code program, or None if it is not one plain `def f(x)` (no decorators,
    defaults or annotations: none of it runs before the tests have captured `type` and `int`)."""
    try:
        fn = ast.parse(program).body if isinstance(program, str) and len(program) <= 4096 else None
        fn = fn[0] if fn and len(fn) == 1 else None
        if (isinstance(fn, ast.FunctionDef) and fn.name == "f" and not fn.decorator_list and not fn.returns
                and ast.dump(fn.args) == ast.dump(ast.parse("def f(x): pass").body[0].args)
                and not any(isinstance(n, (ast.Global, ast.Nonlocal)) for n in ast.walk(fn))):
            tests = "".join(f"({int(x)}, {int(y)}), " for x, y in problem["tests"])
            return [program, f"def _check(f, t=type, i=int):\n    for x, y in ({tests}):\n        r = f(x)\n"
                             f"        assert t(r) is i and r == y\n_check(f)\n"]
    except Exception:  # SyntaxError, ValueError (NUL), RecursionError, MemoryError
        pass
    return None


def code_rewards(programs, timeout=DEFAULT_TIMEOUT, workers=2):
    """1.0 / 0.0 per program; None (e.g. from toy_code_program) is 0.0 and is not run."""
    ok = iter(execute_many([p for p in programs if p is not None], timeout, workers))
    return [float(next(ok)) if p is not None else 0.0 for p in programs]


def humaneval_reward(problem, completion, timeout=DEFAULT_TIMEOUT):
    return code_rewards([humaneval_program(problem, completion)], timeout, 1)[0]


def mbpp_reward(problem, code, timeout=DEFAULT_TIMEOUT):
    return code_rewards([mbpp_program(problem, code)], timeout, 1)[0]


def toy_code_reward(problem, program, timeout=1.0):
    return code_rewards([toy_code_program(problem, program)], timeout, 1)[0]


def toy_code_rewards(problems, programs, timeout=1.0, workers=2):
    return code_rewards([toy_code_program(p, c) for p, c in zip(problems, programs)], timeout, workers)


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker_main()
elif __name__ == "__main__":  # the benchmark
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from data.loaders import load_humaneval
    from data.toy_code import make_splits
    import argparse
    ap = argparse.ArgumentParser(description="time the code graders")
    ap.add_argument("--bench", action="store_true", required=True)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared", "realdata"))
    he = load_humaneval(os.path.join(ap.parse_args().data, "humaneval", "HumanEval.jsonl.gz"))
    toy = make_splits(seed=0, n_train=56)
    toy = toy["test"] + toy["val"] + toy["train"]  # 256 problems; half of the programs right, half wrong
    progs = [p["solution"] if i % 2 else "def f(x):return x*2" for i, p in enumerate(toy)]
    print("sandbox features:", sandbox_features())
    for _ in range(3):
        t0 = time.perf_counter()
        ok = execute_many([humaneval_program(p, p["canonical_solution"]) for p in he], 10.0, 2)
        t1 = time.perf_counter()
        r = toy_code_rewards(toy, progs, 1.0, 2)
        t2 = time.perf_counter()
        print(f"HumanEval canonical: {sum(ok)}/{len(ok)} pass in {t1 - t0:.2f} s | toy batch: {sum(r):.0f}/{len(r)} "
              f"pass in {t2 - t1:.2f} s ({(t2 - t1) / len(r) * 1e3:.1f} ms/program, 2 workers)")
