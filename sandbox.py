"""sandbox.py: runs generated programs against their tests for rewards.py's code graders. Optional reading.

A job is a program (str parts, each compiled and exec'd on its own, so a completion ending in an open string cannot
swallow the tests) and tests. A fork-server worker (`python -I -S sandbox.py --worker`, a pool per caller process)
runs the program in a child forked by its program server (forked before any job: it never holds a test), and the
tests in a child of its own; each call the tests make to the program crosses between them as plain data
(tester.py, docs/sandbox.md). A job shares nothing with the next. The program gets:
  - its own session and, where the kernel allows, new mount, PID, network and IPC namespaces: no network (nor
    abstract Unix sockets); a 32 MB tmpfs on /tmp, /var/tmp and /dev/shm as cwd and HOME, all else read-only; its
    own System V and POSIX IPC, capped (jail.IPC_LIMITS); as PID 1, all it starts dies too, and all it made with it;
  - as root, a fresh uid (UID_BASE + pid) keeping only CAP_DAC_READ_SEARCH (the interpreter may live under
    /root): RLIMIT_NPROC counts only its own processes and it can signal or write nothing of root's;
  - a memory limit per job: at most NPROC tasks (processes and threads), each of RLIMIT_AS MEM_LIMIT / NPROC,
    and NOFILE files each (memfds and pipes hold memory RLIMIT_AS does not count; RLIMIT_FSIZE caps a file);
  - a seccomp filter: no kernel keyrings (a key outlives its job and is readable by permission bits, not uid);
  - RLIMIT_CPU/FSIZE, no core files, no_new_privs, env PATH/HOME/TMPDIR/LANG only, stdin /dev/null,
    stdout+stderr in a memfd capped at OUT_CAP (reaching it fails), a wall-clock limit (then its process group
    is killed). If the IPC limits or the filter cannot be set up, no program runs: each fails with "sandbox:
    cannot ..." in its output, and sandbox_features() raises. Proof of success: the tests' process, not the
    program's, writes the caller's nonce (which never reaches the program's process) after the tests passed and
    the program announced, with its own nonce, that its last part returned. The worker and the tests' process are
    not dumpable: a program without capabilities cannot read their memory. An expected result stays in the caller.
Not protected against (see docs/sandbox.md): 1. A determined program on the same kernel reads any file it may (the
dataset's, if readable) and, in its own process, its own nonce (so a program without tests can forge its end);
what it reads warms the page cache, which a later one can time. Without namespaces (non-root with unprivileged
user namespaces off; containers without CAP_SYS_ADMIN) it has the network and the host's IPC, writes wherever its
uid may, and processes leaving its group survive it (`sandbox_features()` says what holds). 2. Not root,
RLIMIT_NPROC counts all the user's processes: their count + NPROC_EXTRA, a fork-bomb bound, but no memory bound
per job; as root without CAP_SETUID/SETGID/DAC_READ_SEARCH the program stays root. 3. The pool is not thread-safe.
Benchmark: python sandbox.py --bench [--data ../shared/realdata]
"""
import argparse, builtins, gzip, json, math, os, re, resource, secrets, select, signal  # noqa: E401 (stdlib only)
import socket, subprocess, sys, tempfile, time, traceback  # noqa: E401
sys.path[:0] = [] if __name__ != "__main__" else [os.path.dirname(os.path.abspath(__file__))]  # python -I (worker)
import tester  # noqa: E402
from jail import (_capset, _isolate_fs, _limit_ipc, _no_keys, _sys, CAP_DAC_READ_SEARCH, CLONE_NEWIPC,  # noqa: E402
                  CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE,
                  PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG)

DEFAULT_TIMEOUT, MAX_PROGRAM = 3.0, 1 << 20  # seconds per program (as HumanEval's harness); characters
OUT_CAP = 1 << 20  # bytes of output (and of any file) a program may write; reaching it fails the program
MEM_LIMIT, NPROC, NOFILE, UID_BASE = 1 << 30, 4, 64, 2_000_000_000  # a job's memory: NPROC tasks of MEM_LIMIT/NPROC
NPROC_EXTRA = 32  # not root: tasks a program may add to all of its user's (no bound per job: sandbox.py, 2.)


def _quietly(f, *args):
    """f(*args), or None on OSError (killing what already died, closing what is closed, ...)."""
    try:
        return f(*args)
    except OSError:
        return None


def _count_tasks():
    """Tasks (threads) of this uid: RLIMIT_NPROC counts them all."""
    me = os.geteuid()
    return sum(len(_quietly(os.listdir, f"/proc/{e.name}/task") or ()) for e in os.scandir("/proc")
               if e.name.isdigit() and getattr(_quietly(e.stat), "st_uid", None) == me)


def _child(job, nonce, timeout, tmp, out, rd, w, mode, worker):
    """A worker's forked child; runs the program in a grandchild (PID 1 of a new PID namespace, if it can be)."""
    _exit, _write, _getpid, _exec, _compile, _serve = os._exit, os.write, os.getpid, exec, compile, tester.serve
    feats = []
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the worker's reaper would steal the grandchild's status
        for fd, to in ((os.open(os.devnull, os.O_RDONLY), 0), (out, 1), (out, 2)):
            os.dup2(fd, to)  # from here on, what goes wrong shows in its output
        _sys("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a dead worker takes its programs along
        os.getppid() == worker or _exit(1)  # the worker died before the prctl
        os.setsid()
        uid = UID_BASE + os.getpid()
        if mode["ns"] and _sys("unshare", CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC):
            if not _limit_ipc():
                raise OSError("sandbox: cannot limit System V IPC in the job's namespace")
            feats.append("ns")
        if pid := os.fork():
            _exit(0 if os.waitpid(pid, 0)[1] == 0 else 1)
        _sys("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # and with PID 1 its whole namespace dies
        if "ns" in feats and _isolate_fs():
            feats.append("ro")
        if "ro" not in feats:  # a directory of its own on the host (with a private /tmp, none: nothing to clean)
            os.mkdir(tmp, 0o700)
            mode["uid"] and os.chown(tmp, uid, uid)
        os.chdir("/tmp" if "ro" in feats else tmp)
        _sys("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if not _no_keys():
            raise OSError(f"sandbox: cannot install the seccomp filter on keyrings ({os.uname().machine})")
        if mode["uid"]:
            _sys("prctl", PR_SET_KEEPCAPS, 1, 0, 0, 0)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            _capset(1 << CAP_DAC_READ_SEARCH) or _exit(1)
            feats.append("uid")
        elif mode["ns"] and not _capset(0):  # root of a user namespace could unmount all the above
            _exit(1)
        nproc, cpu = NPROC if mode["uid"] else NPROC_EXTRA + _count_tasks(), math.ceil(timeout) + 1
        for res, lim in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (MEM_LIMIT // NPROC,) * 2),
                         (resource.RLIMIT_NPROC, (nproc,) * 2), (resource.RLIMIT_FSIZE, (OUT_CAP,) * 2),
                         (resource.RLIMIT_CORE, (0, 0))):
            resource.setrlimit(res, lim)
        os.environ.clear()
        os.environ.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME=os.getcwd(), TMPDIR=os.getcwd(), LANG="C.UTF-8")
        rd, w = os.dup2(rd, 1 << 10), os.dup2(w, (1 << 10) + 1)  # the tester's pipes; all else is closed
        os.closerange(3, rd)
        os.closerange(w + 1, 1 << 16)
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE,) * 2)  # (after the dup2 above) memfds, pipes: off RLIMIT_AS
        me, ns = _getpid(), {"__name__": "__main__", "__builtins__": builtins}
        for i, src in enumerate(job["parts"]):
            _exec(_compile(src, f"<part{i}>", "exec"), ns)
        sys.stdout.flush()
        sys.stderr.flush()
        if _getpid() == me:  # not a forked copy of the program
            _serve(ns, job["share"], rd, w, nonce, feats)  # until the tests end
            sys.stdout.flush()
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


def _wait(pid, deadline, stop=None):
    """Reap child pid, killing its group at the deadline, unless fd `stop` is readable first (then status None)."""
    timed_out, pidfd = False, _quietly(os.pidfd_open, pid)  # readable when the child exits (Linux >= 5.3)
    while pid not in _reaped:
        if not timed_out and time.monotonic() > deadline:
            timed_out = True
            for kill in (os.killpg, os.kill):  # its process group, then itself (if it had no group yet)
                _quietly(kill, pid, signal.SIGKILL)
        left = 0.05 if timed_out else min(0.05, max(0.0, deadline - time.monotonic()))
        fds = [f for f in (pidfd, stop) if f is not None]
        if stop in (select.select(fds, [], [], left)[0] if fds else time.sleep(1e-3) or ()) and stop is not None:
            break
        _reap()
    pidfd is None or os.close(pidfd)
    return _reaped.pop(pid, None), timed_out


def _run_job(job, mode, sock):
    """Run one job: its program in a child of the program server, its tests in a child of ours."""
    timeout, pnonce = float(job["timeout"]), secrets.token_hex(16)  # pnonce: the program's own proof of its end
    deadline = time.monotonic() + timeout
    jm, out, tout = (os.memfd_create(n) for n in ("job", "out", "tout"))
    os.write(jm, json.dumps(dict(parts=job["parts"], share=job["share"], pnonce=pnonce, timeout=timeout)).encode())
    (req_r, req_w), (resp_r, resp_w), (r, w) = os.pipe(), os.pipe(), os.pipe()
    socket.send_fds(sock, [b"j"], [jm, req_r, resp_w, out])
    list(map(os.close, (jm, req_r, resp_w)))
    if (pid := os.fork()) == 0:
        tester.tester_child(sys.modules[__name__], dict(job, pnonce=pnonce, timeout=timeout), resp_r, req_w, w, tout)
    list(map(os.close, (req_w, resp_r, w)))
    status, timed_out = _wait(pid, deadline)
    sock.send(b"s")  # the program server kills the program now (its answers are all in) and cleans up
    os.set_blocking(r, False)
    feats, proof, result = ((_quietly(os.read, r, 1 << 16) or b"").decode(errors="replace") + "\n\n").split("\n")[:3]
    size, text = os.fstat(out).st_size, os.pread(out, 2000, 0) + b"\n" + os.pread(tout, 2000, 0)
    list(map(os.close, (r, out, tout)))
    _reaped.clear()
    return {"exit": os.waitstatus_to_exitcode(status), "timed_out": timed_out, "nonce": proof, "result": result,
            "out_bytes": size, "out": text.decode(errors="replace").strip("\n"),
            "features": feats.split(",") if feats else []}


def _worker_main():
    """The fork-server loop: one JSON job per stdin line, one JSON answer per stdout line."""
    mode = {"ns": True, "uid": False}
    if os.geteuid() == 0:  # a fresh uid that reads the interpreter's files needs CAP_SET[UG]ID, DAC_READ_SEARCH
        mode["uid"] = int(re.search(r"CapEff:\s*(\w+)", open("/proc/self/status").read()).group(1), 16) & 0xC4 == 0xC4
    else:  # become root of a user namespace, so that each program can get its own namespaces
        uid, gid = os.getuid(), os.getgid()
        try:
            assert _sys("unshare", CLONE_NEWUSER)
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        except (AssertionError, OSError):
            mode["ns"] = False
    list(map(__import__, ("typing", "collections", "heapq", "random", "itertools", "copy", "cmath", "string")))
    sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # (above: once, not per fork)
    if os.fork() == 0:
        sock.close()
        signal.signal(signal.SIGCHLD, _reap)
        tester.program_server(sys.modules[__name__], theirs, mode)
    theirs.close()
    _sys("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)  # a program without capabilities cannot read our memory, or T's
    _sys("prctl", PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans come to us to be reaped, not to a slow init
    signal.signal(signal.SIGCHLD, _reap)
    for line in sys.stdin.buffer:
        os.write(1, (json.dumps(_run_job(json.loads(line), mode, sock)) + "\n").encode())


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
        _quietly(step)


def _pool(n):
    """The worker list, with at least n live workers (started once per caller process, then reused)."""
    if _POOL["owner"] != os.getpid():  # a forked caller must not share its parent's pipes
        _POOL.update(owner=os.getpid(), workers=[])
    ws = _POOL["workers"]
    ws[:] = [p if p.poll() is None else _spawn() for p in ws] + [_spawn() for _ in range(n - len(ws))]
    return ws


__import__("atexit").register(lambda: _POOL["owner"] == os.getpid() and [_kill(p) for p in _POOL["workers"]])


def _job(program):
    """{parts, tests, share: lists of str; expect: JSON text or None}, or None if it cannot run (empty, too long)."""
    d = program if isinstance(program, dict) else {"program": program}
    job = {k: [v] if isinstance(v, str) else list(v) if isinstance(v, (list, tuple)) else [None]
           for k, v in (("parts", d.get("program")), ("tests", d.get("tests", ())), ("share", d.get("share", ())))}
    ok = all(isinstance(s, str) for v in job.values() for s in v) and any(s.strip() for s in job["parts"])
    ok = ok and sum(len(s) for v in job.values() for s in v) <= MAX_PROGRAM
    return dict(job, expect=json.dumps(d["expect"]) if "expect" in d else None) if ok else None


def run_sandboxed(programs, timeout=DEFAULT_TIMEOUT, workers=2):
    """Run programs on `workers` processes. A program: a str, a list of str parts, or a dict of program (str or
    parts), tests (parts run in a process of their own), share (names the tests get from it, as tester.py handles)
    and expect (a JSON value the tests' `__result__` must equal; it stays here). Per program: ok (the verdict),
    exit (of the tests' process), timed_out, out_bytes, out (the program's output, then the tests'), result (the
    JSON text of `__result__`), features ("ns" namespaces, "ro" read-only host, "uid" own uid)."""
    results, busy, ws, retried = [], {}, [], set()  # busy: worker slot -> (program index, nonce, deadline)
    try:
        programs = list(programs)
        results = [dict(ok=False, exit=None, timed_out=False, out_bytes=0, out="", result="", features=[])
                   for _ in programs]
        timeout = min(max(float(timeout), 0.01), 600.0)
        if math.isnan(timeout):
            raise ValueError("timeout is NaN")
        jobs = [_job(p) for p in programs]
        todo = [i for i, j in enumerate(jobs) if j][::-1]
        n = max(1, min(int(workers), len(todo)))
        ws = _pool(n)
        while todo or busy:
            for k in range(n):
                if k not in busy and todo:
                    i, nonce = todo.pop(), secrets.token_hex(16)
                    job = dict(jobs[i], expect=None, nonce=nonce, timeout=timeout)
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
                                 and res["out_bytes"] < OUT_CAP and jobs[i]["expect"] in (None, res["result"]))
                else:  # the worker died (killed by its program?) or hangs: the program fails
                    _kill(ws[k])
                    ws[k] = _spawn()
    except BaseException as e:  # never leave a worker with an answer we will not read, even after a Ctrl-C
        list(map(_kill, ws))
        if not isinstance(e, Exception):
            raise
    return results


def execute_many(programs, timeout=DEFAULT_TIMEOUT, workers=2):
    """[execute(p, timeout) for p in programs], on `workers` processes at once."""
    return [r["ok"] for r in run_sandboxed(programs, timeout, workers)]


def execute(program, timeout=DEFAULT_TIMEOUT):
    """True only if the program ran to the end of its last part (and its tests) within the limits, with the
    expected result. Raises only what interrupted it (KeyboardInterrupt); returns within about timeout + 1 s."""
    return execute_many([program], timeout, 1)[0]


def sandbox_features():
    """The isolation programs get here: a subset of ["ns", "ro", "uid"] (see run_sandboxed). Raises RuntimeError if
    programs cannot run at all: a guarantee could not be set up (the IPC limits, the seccomp filter)."""
    res = run_sandboxed(["pass"], 5.0, 1)[0]
    if not res["ok"] and "sandbox: cannot" in res["out"]:
        raise RuntimeError(res["out"])
    return res["features"]


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker_main()
elif __name__ == "__main__":  # the benchmark: HumanEval's references, then 256 toy programs (half right)
    from rewards import execute_many, humaneval_program, sandbox_features, toy_code_rewards  # one worker pool
    from data.toy_code import make_splits
    ap = argparse.ArgumentParser(description="time the code graders")
    ap.add_argument("--bench", action="store_true", required=True)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../shared/realdata"))
    he = [json.loads(x) for x in gzip.open(os.path.join(ap.parse_args().data, "humaneval", "HumanEval.jsonl.gz"))]
    toy = [p for ps in make_splits(seed=0, n_train=56).values() for p in ps]  # test, val, train
    progs = [p["solution"] if i % 2 else "def f(x):return x*2" for i, p in enumerate(toy)]
    print("sandbox features:", sandbox_features())
    for _ in range(3):
        t0 = time.perf_counter()
        ok, t1 = execute_many([humaneval_program(p, p["canonical_solution"]) for p in he], 10.0, 2), time.perf_counter()
        r, t2 = toy_code_rewards(toy, progs, 1.0, 2), time.perf_counter()
        print(f"HumanEval canonical: {sum(ok)}/{len(ok)} pass in {t1 - t0:.2f} s | toy batch: {sum(r):.0f}/{len(r)} "
              f"pass in {t2 - t1:.2f} s ({(t2 - t1) / len(r) * 1e3:.1f} ms/program, 2 workers)")
