"""tester.py: the tests' side of sandbox.py, in a process of their own. Optional reading: the mechanism behind
sandbox.py's guarantee that a program never shares an interpreter with its tests (docs/sandbox.md has a picture).

A job runs in two processes. The program process (P, forked from a server that never sees a test) runs the
program's parts, then `serve`s: it answers calls. The tester process (T, forked from the worker, which holds the
tests) runs `tester`: the tests, in a fresh interpreter state, where each name they share with the program is a
`Remote` handle. Calling a handle (or iterating it) sends the arguments to P as plain data; P calls its object
and sends back the result as plain data, which T rebuilds with `decode`.

Plain data (`encode` / `decode`): None, bool, int, float (nan and inf too), complex, str, bytes, and list, tuple,
dict, set, frozenset of those, as JSON with a tag per container; at most MAX_DEPTH deep, MAX_ITEMS values and
MAX_MESSAGE bytes. A subclass of a builtin type crosses as its base value (int.__int__, list.__iter__, ...), so
its own __eq__, __hash__ or __bool__ never reach the tests. Any other object crosses as a new handle, which equals
only itself, can be called or iterated (in P), and has the truth value the object gave once, in P (a re.Match is
true; a truth value cannot flip; if __bool__ raised, the handle's raises). A program's exception
is raised in T under the same name: the builtin class of that name if it is an Exception (StopIteration
excepted: a program could end the tests' loops with it), else a new Exception subclass. A module the tests use
by a program's name (MBPP/596's `sys`) is imported in T, if it is the standard library's module of that name.
If P dies or sends what `decode` refuses, the job fails, even if the tests catch the error. No pickle: T builds
only the above.
"""
import builtins, importlib, json, math, os, resource, shutil, signal, socket, struct, sys, tempfile, time  # noqa: E401

MAX_DEPTH, MAX_ITEMS, MAX_MESSAGE = 64, 1 << 20, 1 << 24  # nesting; values per message; bytes per message
TAGS = {"L": list, "T": tuple, "S": set, "F": frozenset}


def encode(x, keep, depth=0):
    """x as JSON-able plain data; an object that is no plain value becomes ["R", i] with keep[i] = x (in P) or a
    TypeError (keep is None: the tests' arguments must be plain, or handles)."""
    if depth > MAX_DEPTH:
        raise ValueError("too deep to cross")
    if x is None or isinstance(x, bool):
        return x
    for base, enc in ((int, int.__int__), (float, float.__float__), (str, str.__str__)):
        if isinstance(x, base):
            return enc(x)
    if isinstance(x, complex):
        return ["C", complex.real.__get__(x), complex.imag.__get__(x)]
    if isinstance(x, bytes):
        return ["B", bytes.hex(x)]
    if isinstance(x, dict):
        return ["D", *[encode(v, keep, depth + 1) for kv in dict.items(x) for v in kv]]
    for tag, base in TAGS.items():
        if isinstance(x, base):
            return [tag, *[encode(v, keep, depth + 1) for v in base.__iter__(x)]]
    if isinstance(x, Remote):
        return ["R", x.id]
    if keep is None:
        raise TypeError(f"a {type(x).__name__} cannot cross to the program: only plain data")
    keep.append(x)
    try:  # its truth value, taken once here: a handle cannot answer differently each time it is asked
        truth = bool(x)
    except BaseException:
        truth = None
    return ["R", len(keep) - 1, truth]


def decode(v, remote, budget):
    """The plain value JSON-decoded `v` encodes (remote(i) gives handle i); ValueError on anything else."""
    budget[0] -= 1
    if budget[0] < 0 or budget[1] > MAX_DEPTH:
        raise ValueError("too large or deep")
    if v is None or type(v) in (bool, int, float, str):
        return v
    if type(v) is not list or not v or v[0] not in ("L", "T", "S", "F", "D", "C", "B", "R"):
        raise ValueError("not plain data")
    tag, rest = v[0], v[1:]
    if tag in "CBR":
        kinds = [type(a) for a in rest]
        if kinds not in ({"C": [[float, float]], "B": [[str]]}.get(tag, [[int], [int, bool], [int, type(None)]])):
            raise ValueError(f"bad {tag}")
        return complex(*rest) if tag == "C" else bytes.fromhex(rest[0]) if tag == "B" else remote(*rest)
    budget[1] += 1
    items = [decode(e, remote, budget) for e in rest]
    budget[1] -= 1
    if tag == "D":
        if len(items) % 2:
            raise ValueError("odd dict")
        return dict(zip(items[::2], items[1::2]))
    return TAGS[tag](items)


def send(fd, obj):
    data = json.dumps(obj).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError("message too large")
    data = struct.pack("I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


_pending = {}  # fd -> bytes read past the last message


def recv(fd):
    """The next message, or None at the end of the pipe (or a bad one)."""
    buf = _pending.pop(fd, b"")
    while len(buf) < 4 or len(buf) < 4 + struct.unpack("I", buf[:4])[0]:
        if len(buf) >= 4 and struct.unpack("I", buf[:4])[0] > MAX_MESSAGE:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return None
        buf += chunk
    n = 4 + struct.unpack("I", buf[:4])[0]
    buf[n:] and _pending.update({fd: buf[n:]})
    return json.loads(buf[4:n])


# ---------------------------------------------------------------- P: the program's process (untrusted)

def serve(ns, share, rd, wr, nonce, feats):
    """After the program's last part: announce its shared names, then answer calls until the tests end."""
    keep = []
    sys.set_int_max_str_digits(0)
    send(wr, ["ready", nonce, {k: (["M", ns[k].__name__] if type(ns[k]) is type(sys) else encode(ns[k], keep))
                               for k in share if k in ns}, feats])
    while (msg := recv(rd)) is not None:
        try:
            op, i, args, kw = msg
            args, kw = (decode(a, lambda i, *_: keep[i], [MAX_ITEMS, 0]) for a in (args, kw))
            out = ["ok", encode(keep[i](*args, **kw) if op == "call" else list(keep[i]), keep)]
        except BaseException as e:  # SystemExit and KeyboardInterrupt too: they are the call's result
            try:
                out = ["err", str.__str__(type(e).__name__), str(e)[:500]]
            except BaseException:
                out = ["err", "Exception", ""]
        send(wr, out)


# ---------------------------------------------------------------- T: the tests' process (trusted)

class ProgramGone(BaseException):
    """The program process died or sent what is not plain data: the job fails, whatever the tests catch."""


class Remote:
    """A handle on one of the program's objects: callable and iterable (in P), with no truth value."""
    __slots__ = ("id", "truth")
    link = None  # (rd, wr) of this tester process

    def __init__(self, i, truth=None):
        self.id, self.truth = i, truth

    def __call__(self, *args, **kw):
        return _ask(["call", self.id, encode(list(args), None), encode(kw, None)])  # TypeError: not plain

    def __iter__(self):
        return iter(_ask(["iter", self.id, ["L"], ["D"]]))

    def __bool__(self):  # as the object answered once, in P (a re.Match is true); None: it raised
        if self.truth is None:
            raise TypeError("this object of the program has no truth value")
        return self.truth

    def __repr__(self):
        return f"<program object {self.id}>"


_state = {"gone": False}


def _ask(msg):
    """Send a call to P; its result rebuilt as plain data, or its exception raised here."""
    rd, wr = Remote.link
    try:
        if _state["gone"]:
            raise ValueError("gone before")
        send(wr, msg)
        got = recv(rd)
        if got and got[0] == "ok" and len(got) == 2:
            return decode(got[1], Remote, [MAX_ITEMS, 0])
        name, text = got[1:] if got and got[0] == "err" and len(got) == 3 else (None, None)
        if not (isinstance(name, str) and isinstance(text, str)):
            raise ValueError("no answer from the program")
    except Exception as e:  # OSError, ValueError, TypeError (unhashable keys), RecursionError, MemoryError, ...
        _state["gone"] = True
        raise ProgramGone(f"{type(e).__name__}: {e}") from None
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)) or issubclass(cls, (StopIteration,
                                                                                     StopAsyncIteration)):
        cls = type(name if name.isidentifier() else "ProgramError", (Exception,), {})
    try:
        exc = cls(text)
    except Exception:  # e.g. UnicodeDecodeError takes five arguments
        exc = type(name, (Exception,), {})(text)
    raise exc


def tester(job, rd, wr, proof, nonce):
    """Run the tests against the program's shared names; write the proof (and the JSON `__result__`) if they all
    passed and the program stayed alive. Never returns."""
    Remote.link, ok = (rd, wr), False
    try:
        sys.set_int_max_str_digits(0)
        msg = recv(rd)
        if not (msg and msg[:2] == ["ready", job["pnonce"]] and len(msg) == 4 and isinstance(msg[2], dict)):
            os._exit(1)
        os.write(proof, (",".join(map(str, msg[3])) + "\n").encode())  # the isolation P got
        tns = {"__name__": "__main__", "__builtins__": builtins}
        for k, v in msg[2].items():
            if k not in job["share"]:
                continue
            if type(v) is list and v[:1] == ["M"]:  # only the module the tests name: no `import antigravity as sys`
                tns[k] = importlib.import_module(k) if v == ["M", k] and k in sys.stdlib_module_names else None
            else:
                tns[k] = decode(v, Remote, [MAX_ITEMS, 0])
        for i, src in enumerate(job["tests"]):
            exec(compile(src, f"<test{i}>", "exec"), tns)
        result = json.dumps(tns.get("__result__"))
        ok = not _state["gone"]
    except BaseException as e:
        try:
            os.write(2, f"{type(e).__name__}: {e}"[-2000:].encode(errors="replace"))
        except BaseException:
            pass
    if ok:
        os.write(proof, nonce + b"\n" + result.encode())
    os._exit(0 if ok else 1)


# ---------------------------------------------------------------- the two processes' parents (sandbox.py's worker)

def program_server(sb, sock, mode):
    """Forks each job's program process (sb._child). Forked before the worker read any job, it never held a test."""
    sb._sys("prctl", sb.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    sb._sys("prctl", sb.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for fd in (0, 1):  # not the caller's pipes
        os.dup2(os.open(os.devnull, os.O_RDWR), fd)
    while len(fds := socket.recv_fds(sock, 1, 4)[1]) == 4:
        jm, rd, w, out = fds
        job = json.loads(os.pread(jm, os.fstat(jm).st_size, 0))
        tmp = os.path.join(tempfile.gettempdir(), "score-sandbox-" + os.urandom(8).hex())  # made if no private /tmp
        if (pid := os.fork()) == 0:
            sb._child(job, job["pnonce"], job["timeout"], tmp, out, rd, w, mode, os.getppid())
        for fd in (jm, rd, w):
            os.close(fd)
        status = sb._wait(pid, time.monotonic() + job["timeout"], sock.fileno())[0]
        if not sock.recv(1):  # the worker's "stop" (its tests ended), or the worker is gone
            break
        status is None and sb._wait(pid, 0)  # kills what is left
        sb._quietly(os.killpg, pid, signal.SIGKILL)  # whatever it left running in its group (without a PID namespace)
        os.close(out)
        shutil.rmtree(tmp, ignore_errors=True)
        sb._reaped.clear()  # orphans (a killed child's PID 1), reaped as they died
    os._exit(0)


def tester_child(sb, job, rd, w, proof, out):
    """The tests' process (tester.py): trusted code on plain data, but bounded, and gone with the worker."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sb._sys("prctl", sb.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.setsid()
        cpu = math.ceil(job["timeout"]) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (sb.MEM_LIMIT,) * 2)
        for fd, to in ((os.open(os.devnull, os.O_RDONLY), 0), (out, 1), (out, 2)):
            os.dup2(fd, to)
        lo = 3
        for fd in sorted((rd, w, proof)):  # close all else: the caller's pipes, the program server's socket
            os.closerange(lo, fd)
            lo = fd + 1
        os.closerange(lo, 1 << 16)
        tester(job, rd, w, proof, job["nonce"].encode())
    finally:
        os._exit(1)
