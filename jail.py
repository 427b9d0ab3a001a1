"""jail.py: the kernel calls behind sandbox.py's isolation of a program. Optional reading: sandbox.py's docstring says
what a program gets; this is how (mounts, capabilities, System V IPC limits, a seccomp filter), in ctypes, and a
reader who does not change what a program gets may skip it.
"""
import ctypes, os, struct  # noqa: E401 (stdlib only: the worker runs as python -I -S)

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
CLONE_NEWIPC = 0x08000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_KEEPCAPS, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 8, 36, 38
CAP_DAC_READ_SEARCH = 2
IPC_LIMITS = {"shmall": 4096, "msgmni": 16}  # in a job's IPC namespace: 16 MiB of shared memory, 16 queues of 16 KiB
KEY_SYSCALLS = {"x86_64": {0xC000003E: (248, 249, 250), 0x40000003: (286, 287, 288)},  # add_key, request_key,
                "aarch64": {0xC00000B7: (217, 218, 219), 0x40000028: (309, 310, 311)}}  # keyctl, per audit arch
_libc = ctypes.CDLL(None, use_errno=True)


def _sys(name, *args):
    """Call a libc function with C long arguments (variadic ones such as syscall() need them); True on 0."""
    return getattr(_libc, name)(*[a if isinstance(a, (bytes, type(None))) else ctypes.c_long(a) for a in args]) == 0


def _capset(caps):
    """Keep exactly the capabilities in bitmask `caps`, effective and permitted."""
    return _sys("capset", struct.pack("II", 0x20080522, 0), struct.pack("6I", caps, caps, 0, 0, 0, 0))


def _isolate_fs():
    """In a new mount namespace: a 32 MB tmpfs on /tmp, /var/tmp, /dev/shm; the rest read-only. True if all held."""
    if not (_sys("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)  # keep our mounts out of the host's
            and _sys("mount", b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, b"size=32m,mode=1777")):
        return False
    dirs = [b"/tmp"] + [d for d in (b"/var/tmp", b"/dev/shm") if os.path.isdir(d)]
    ok = all([_sys("mount", b"/tmp", d, None, MS_BIND, None) for d in dirs[1:]])
    ro, rw = struct.pack("4Q", 1, 0, 0, 0), struct.pack("4Q", 0, 1, 0, 0)  # struct mount_attr, RDONLY = 1
    ok = ok and _sys("syscall", 442, -100, b"/", 0x8000, ro, 32)  # mount_setattr(AT_FDCWD, "/", AT_RECURSIVE)
    return all([_sys("syscall", 442, -100, d, 0, rw, 32) for d in dirs]) and ok


def _limit_ipc():
    """In a new IPC namespace (it and all it holds die with the job): bound what System V IPC holds outside RLIMIT_AS
    (a detached segment, a full queue). True if all held."""
    try:
        for name, value in IPC_LIMITS.items():
            with open(f"/proc/sys/kernel/{name}", "w") as f:
                f.write(str(value))
        return True
    except OSError:
        return False


def _no_keys():
    """A seccomp filter: add_key, request_key and keyctl fail (EPERM), as does any call of another ABI (x32 too). The
    kernel's keyrings outlive a job and grant access by permission bits, not by uid: a key would carry answers from
    one job to the next. True if installed (it needs no_new_privs)."""
    allow, deny, ins = 0x7FFF0000, 0x00050001, [(0x20, 0, 0, 4)]  # RET_ALLOW, RET_ERRNO | EPERM; A = arch
    arches = KEY_SYSCALLS.get(os.uname().machine, {})
    end = 1 + 7 * len(arches)  # the index of the final "deny"
    for arch, nrs in arches.items():
        i = len(ins)
        ins += [(0x15, 0, 6, arch), (0x20, 0, 0, 0), (0x35, end - i - 3, 0, 0x40000000)]  # JEQ arch; A = nr; JGE x32
        ins += [(0x15, end - i - 4 - k, 0, nr) for k, nr in enumerate(nrs)] + [(0x06, 0, 0, allow)]
    prog = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *x) for x in ins + [(0x06, 0, 0, deny)]))
    fprog = struct.pack("HP", len(ins) + 1, ctypes.addressof(prog))  # struct sock_fprog
    return bool(arches) and _sys("prctl", 22, 2, fprog, 0, 0)  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
