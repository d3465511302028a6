"""OS confinement of a worker process that runs model-written SQL (called in the child, once).

`confine(limits, strict)` applies, in order, what the worker can no longer undo:

- resource limits: address space (RLIMIT_AS), CPU seconds (RLIMIT_CPU, the worker's whole life),
  no file growth (RLIMIT_FSIZE=0, SIGXFSZ ignored so a write fails with EFBIG), no core files,
  no new processes (RLIMIT_NPROC=0; root is exempt from it, which is why seccomp below exists),
  and open files capped at what is open now plus `spare_files` (0 in strict mode: no new file,
  pipe or socket can be opened at all);
- a Python audit hook that refuses opening files for writing (any file in strict mode), creating
  processes, sockets, ctypes, file and directory changes and loading SQLite extensions;
- a seccomp filter (Linux x86-64) that makes the kernel refuse the same: fork/clone/exec, sockets,
  every call that creates, removes, renames or changes a file, opens for writing (any open in
  strict mode), raising resource limits, ptrace, signals to other processes, io_uring, mounts,
  namespaces and the administrative calls root could otherwise make.

Strict mode is for sqlglot's Python executor, which evaluates generated Python source; the SQLite
worker needs to open database files read-only, so it keeps read-only opens.
"""

from __future__ import annotations

import platform
import signal
import struct
import sys

try:  # imported here: a strict worker cannot open a module's file later
    import ctypes
    import resource
except ImportError:  # not on every platform; confine() applies what it can
    ctypes = resource = None

# Syscalls refused outright (x86-64 numbers, from asm/unistd_64.h).
_DENY_X86_64 = {
    # processes and other processes
    "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone3": 435,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kill": 62, "tkill": 200,
    "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "pidfd_open": 434,
    "pidfd_send_signal": 424, "pidfd_getfd": 438,
    # network
    "socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "listen": 50, "accept": 43,
    "accept4": 288, "sendto": 44, "sendmsg": 46, "sendmmsg": 307,
    # changing the filesystem
    "creat": 85, "unlink": 87, "unlinkat": 263, "rename": 82, "renameat": 264, "renameat2": 316,
    "mkdir": 83, "mkdirat": 258, "rmdir": 84, "link": 86, "linkat": 265, "symlink": 88,
    "symlinkat": 266, "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "chown": 92,
    "fchown": 93, "lchown": 94, "fchownat": 260, "truncate": 76, "ftruncate": 77, "mknod": 133,
    "mknodat": 259, "utime": 132, "utimes": 235, "utimensat": 280, "futimesat": 261,
    "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198,
    "fremovexattr": 199, "fallocate": 285, "openat2": 437, "open_by_handle_at": 304,
    "name_to_handle_at": 303, "memfd_create": 319, "memfd_secret": 447,
    # mounts, namespaces, privileges, limits
    "chroot": 161, "mount": 165, "umount2": 166, "pivot_root": 155, "fsopen": 430, "fsmount": 432,
    "move_mount": 429, "open_tree": 428, "fsconfig": 431, "fspick": 433, "mount_setattr": 442,
    "unshare": 272, "setns": 308, "setrlimit": 160, "setuid": 105, "setgid": 106, "setreuid": 113,
    "setregid": 114, "setresuid": 117, "setresgid": 119, "setgroups": 116, "setfsuid": 122,
    "setfsgid": 123, "capset": 126, "personality": 135,
    # kernel interfaces a sandbox has no use for
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 250, "add_key": 248,
    "request_key": 249, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "kexec_load": 246, "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168,
    "acct": 163, "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
    "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173, "syslog": 103,
    "quotactl": 179, "lookup_dcookie": 212, "vhangup": 153, "fanotify_init": 300,
    "fanotify_mark": 301,
}
_NR_OPEN, _NR_OPENAT, _NR_PRLIMIT64, _NR_IOCTL = 2, 257, 302, 16
# O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND | __O_TMPFILE
_WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000
_TIOCSTI, _TIOCLINUX = 0x5412, 0x541C  # type into a terminal; console control

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_RET_ALLOW, _RET_EPERM, _RET_KILL = 0x7FFF0000, 0x00050000 | 1, 0x80000000
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|op|K, BPF_RET|K


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def _arg(i: int) -> int:
    return 16 + 8 * i  # offset of the low 32 bits of args[i] in struct seccomp_data (little endian)


def seccomp_program(strict: bool) -> bytes:
    """The classic-BPF filter: every check is `jeq nr` then an inline return, so no jump is long."""
    p = [_insn(_LD_ABS, 4), _insn(_JEQ, _AUDIT_ARCH_X86_64, 1, 0), _insn(_RET, _RET_KILL),
         _insn(_LD_ABS, 0), _insn(_JGE, _X32_BIT, 0, 1), _insn(_RET, _RET_EPERM)]
    for nr in sorted(_DENY_X86_64.values()):
        p += [_insn(_JEQ, nr, 0, 1), _insn(_RET, _RET_EPERM)]
    for nr, flags_arg in ((_NR_OPEN, 1), (_NR_OPENAT, 2)):
        if strict:  # no file may be opened at all
            p += [_insn(_JEQ, nr, 0, 1), _insn(_RET, _RET_EPERM)]
        else:  # read-only opens pass; the accumulator then holds the flags, so return at once
            p += [_insn(_JEQ, nr, 0, 4), _insn(_LD_ABS, _arg(flags_arg)),
                  _insn(_JSET, _WRITE_FLAGS, 0, 1), _insn(_RET, _RET_EPERM), _insn(_RET, _RET_ALLOW)]
    # prlimit64(pid, resource, new, old): reading a limit passes, setting one (new != NULL) does not
    p += [_insn(_JEQ, _NR_PRLIMIT64, 0, 6), _insn(_LD_ABS, _arg(2)), _insn(_JEQ, 0, 0, 3),
          _insn(_LD_ABS, _arg(2) + 4), _insn(_JEQ, 0, 0, 1), _insn(_RET, _RET_ALLOW), _insn(_RET, _RET_EPERM)]
    # ioctl(fd, request): no typing into a terminal
    p += [_insn(_JEQ, _NR_IOCTL, 0, 5), _insn(_LD_ABS, _arg(1)), _insn(_JEQ, _TIOCSTI, 2, 0),
          _insn(_JEQ, _TIOCLINUX, 1, 0), _insn(_RET, _RET_ALLOW), _insn(_RET, _RET_EPERM)]
    p.append(_insn(_RET, _RET_ALLOW))
    return b"".join(p)


def install_seccomp(strict: bool) -> bool:
    """Load the filter into this process (and any it could start); False where seccomp is unavailable."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64") or ctypes is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    program = seccomp_program(strict)
    buffer = ctypes.create_string_buffer(program, len(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        return False
    return libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0) == 0


def die_with_parent() -> None:
    """Be killed when the parent dies (a worker stuck in one long C call would outlive it)."""
    if sys.platform == "linux" and ctypes is not None:
        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


# ---------------------------------------------------------------- the audit hook

_DENIED_EVENTS = ("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                  "os.kill", "os.killpg", "subprocess.Popen", "socket.", "ctypes.", "os.remove",
                  "os.rename", "os.rmdir", "os.mkdir", "os.link", "os.symlink", "os.chmod", "os.chown",
                  "os.truncate", "os.utime", "os.chflags", "os.setxattr", "os.removexattr",
                  "os.mkfifo", "os.mknod", "shutil.", "tempfile.", "sqlite3.enable_load_extension",
                  "sqlite3.load_extension", "pickle.find_class", "webbrowser.", "resource.setrlimit",
                  "resource.prlimit")
_STRICT_EVENTS = ("open", "os.listdir", "os.scandir", "os.walk", "glob.", "sqlite3.connect")


def _audit_hook(strict: bool):
    def hook(event: str, args: tuple) -> None:
        if event.startswith(_DENIED_EVENTS) or strict and event.startswith(_STRICT_EVENTS):
            raise PermissionError(f"denied by the sandbox ({event})")
        if event == "open" and len(args) >= 3:
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")
                    or isinstance(flags, int) and flags & _WRITE_FLAGS):
                raise PermissionError("denied by the sandbox (open for writing)")

    return hook


# ---------------------------------------------------------------- all of it


def confine(memory_mb: int, cpu_seconds: int, strict: bool, open_files: int, spare_files: int = 0) -> dict:
    """Apply every limit to this process; returns which ones took (the worker reports them).

    `open_files`: the descriptors 0..open_files-1 the worker holds (and nothing above them).
    """
    applied: dict[str, bool] = {}
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write is an error, not a dead worker
    if resource is not None:
        limits = {"RLIMIT_AS": memory_mb * 1024 * 1024, "RLIMIT_CPU": cpu_seconds, "RLIMIT_FSIZE": 0,
                  "RLIMIT_CORE": 0, "RLIMIT_NPROC": 0, "RLIMIT_NOFILE": open_files + spare_files}
        for name, value in limits.items():
            try:
                resource.setrlimit(getattr(resource, name), (value, value))
                applied[name] = True
            except (AttributeError, ValueError, OSError):
                applied[name] = False
    die_with_parent()
    try:
        applied["seccomp"] = install_seccomp(strict)
    except (OSError, AttributeError):
        applied["seccomp"] = False
    sys.addaudithook(_audit_hook(strict))  # last: it refuses ctypes, which install_seccomp uses
    applied["audit_hook"] = True
    return applied
