"""The seccomp filter every instance and build sandbox runs under: what it denies and why.

The instance's root is root only in its own user namespace, with a bounded capability set
(see isolation.py), so the kernel already refuses most of what follows. The filter is the
second wall: it takes whole kernel subsystems that an instance has no business touching out
of reach, so a bug in one of them is not reachable from inside an instance.

Denied calls fail with EPERM (programs see an ordinary "operation not permitted"), except
clone3, which fails with ENOSYS so that libc falls back to clone, whose flags the filter can
read (clone3 passes them in memory, which seccomp cannot inspect). A syscall of another ABI
(x32, or an architecture the table does not cover) kills the process: an unknown door is shut.

The program is classic BPF, written out here instead of through libseccomp: it is a few dozen
instructions, and the table below is the one place that says what is denied.
"""

from __future__ import annotations

import errno
import os
import platform
import struct
from dataclasses import dataclass

# x86_64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl).
AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
CLONE_NEWUSER = 0x10000000


@dataclass(frozen=True)
class Rule:
    name: str
    nr: int
    why: str
    errno: int = errno.EPERM
    deny_flags: int = 0  # deny only when args[0] has any of these bits (else always)


DENIED: tuple[Rule, ...] = (
    # Kernel keyrings are not namespaced: keys are found by uid across the host.
    Rule("add_key", 248, "kernel keyrings are shared by uid across the host"),
    Rule("request_key", 249, "kernel keyrings are shared by uid across the host"),
    Rule("keyctl", 250, "kernel keyrings are shared by uid across the host"),
    # Programs run in the kernel, and hardware counters that see other tenants.
    Rule("bpf", 321, "loads programs into the kernel"),
    Rule("perf_event_open", 298, "observes the host's CPUs and kernel"),
    Rule("userfaultfd", 323, "stalls the kernel on page faults: a race-exploit primitive"),
    Rule("io_uring_setup", 425, "a large kernel attack surface with its own syscall path"),
    Rule("io_uring_enter", 426, "a large kernel attack surface with its own syscall path"),
    Rule("io_uring_register", 427, "a large kernel attack surface with its own syscall path"),
    # The kernel itself.
    Rule("kexec_load", 246, "replaces the running kernel"),
    Rule("kexec_file_load", 320, "replaces the running kernel"),
    Rule("init_module", 175, "loads kernel modules"),
    Rule("finit_module", 313, "loads kernel modules"),
    Rule("delete_module", 176, "unloads kernel modules"),
    Rule("create_module", 174, "obsolete module call"),
    Rule("get_kernel_syms", 177, "obsolete module call"),
    Rule("query_module", 178, "obsolete module call"),
    Rule("syslog", 103, "reads the host's kernel log"),
    Rule("reboot", 169, "reboots the machine (or ends the pid namespace)"),
    Rule("swapon", 167, "changes the host's swap"),
    Rule("swapoff", 168, "changes the host's swap"),
    Rule("acct", 163, "process accounting to a file is host-wide"),
    Rule("settimeofday", 164, "the clock is the host's"),
    Rule("clock_settime", 227, "the clock is the host's"),
    Rule("clock_adjtime", 305, "the clock is the host's"),
    Rule("iopl", 172, "raw I/O port access"),
    Rule("ioperm", 173, "raw I/O port access"),
    Rule("quotactl", 179, "filesystem quotas are the host's"),
    Rule("quotactl_fd", 443, "filesystem quotas are the host's"),
    Rule("lookup_dcookie", 212, "kernel profiling internals"),
    Rule("_sysctl", 156, "obsolete sysctl interface"),
    Rule("uselib", 134, "obsolete loader call"),
    Rule("nfsservctl", 180, "obsolete NFS server call"),
    # Files by handle bypass the mount namespace: the "shocker" container escape.
    Rule("open_by_handle_at", 304, "opens files by handle, past the sandbox's root"),
    # Mounts: the instance's filesystem tree is made by the node, and stays as made.
    Rule("mount", 165, "the instance's mounts are the node's to make"),
    Rule("umount2", 166, "unmounting would uncover what the sandbox hides"),
    Rule("pivot_root", 155, "the instance's root is the node's to choose"),
    Rule("fsopen", 430, "new mount API"),
    Rule("fsconfig", 431, "new mount API"),
    Rule("fsmount", 432, "new mount API"),
    Rule("fspick", 433, "new mount API"),
    Rule("open_tree", 428, "new mount API"),
    Rule("move_mount", 429, "new mount API"),
    Rule("mount_setattr", 442, "new mount API: would clear read-only flags"),
    Rule("setns", 308, "entering other namespaces"),
    # Nested user namespaces hand out a fresh full capability set: the usual first step of
    # a kernel exploit. Other namespaces need CAP_SYS_ADMIN, which the instance lacks.
    Rule("unshare", 272, "nested user namespaces", deny_flags=CLONE_NEWUSER),
    Rule("clone", 56, "nested user namespaces", deny_flags=CLONE_NEWUSER),
    Rule("clone3", 435, "its flags are in memory, unreadable to seccomp", errno=errno.ENOSYS),
)

# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6]
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0_LO = 16


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


class UnsupportedArchitecture(RuntimeError):
    pass


def program() -> bytes:
    """The compiled filter (struct sock_filter[]), as bwrap's --seccomp reads it."""
    if platform.machine() not in ("x86_64", "AMD64"):
        # Fail closed: a table of another architecture's numbers would deny the wrong calls.
        raise UnsupportedArchitecture(f"no seccomp table for {platform.machine()}")
    out = [
        _insn(_LD_W_ABS, _OFF_ARCH),
        _insn(_JEQ_K, AUDIT_ARCH_X86_64, jt=1),
        _insn(_RET_K, RET_KILL_PROCESS),
        _insn(_LD_W_ABS, _OFF_NR),
        _insn(_JGE_K, X32_SYSCALL_BIT, jf=1),
        _insn(_RET_K, RET_KILL_PROCESS),
    ]
    for rule in DENIED:
        ret = _insn(_RET_K, RET_ERRNO | rule.errno)
        if not rule.deny_flags:
            out += [_insn(_JEQ_K, rule.nr, jf=1), ret]
        else:
            out += [
                _insn(_JEQ_K, rule.nr, jf=4),
                _insn(_LD_W_ABS, _OFF_ARG0_LO),
                _insn(_JSET_K, rule.deny_flags, jf=1),
                ret,
                _insn(_LD_W_ABS, _OFF_NR),
            ]
    out.append(_insn(_RET_K, RET_ALLOW))
    return b"".join(out)


_PROGRAM: bytes | None = None


def program_fd() -> int:
    """A fresh fd (memfd, at offset 0) holding the program; bwrap reads it to the end."""
    global _PROGRAM
    if _PROGRAM is None:
        _PROGRAM = program()
    fd = os.memfd_create("forkyard-seccomp")  # close-on-exec; passed on by pass_fds
    os.write(fd, _PROGRAM)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
