"""Thin ctypes bindings for the Linux syscalls Python 3.11 lacks. No policy here.

Every function raises :class:`OSError` with the kernel's errno on failure.
"""

from __future__ import annotations

import ctypes
import os


def _libc_name() -> str:
    """glibc's soname, tried first: ``ctypes.util.find_library`` runs ``ldconfig -p`` in a
    subprocess (milliseconds at every import: every fork server and ``cvbench-runtime``
    command); asked only where there is no ``libc.so.6`` (another C library)."""
    try:
        ctypes.CDLL("libc.so.6")
        return "libc.so.6"
    except OSError:
        from ctypes import util

        return util.find_library("c") or "libc.so.6"


LIBC = _libc_name()
_libc = ctypes.CDLL(LIBC, use_errno=True)

# clone/unshare flags (linux/sched.h)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS,
    "cgroup": CLONE_NEWCGROUP,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
}

# mount flags (linux/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

# umount2 flags
MNT_FORCE = 1
MNT_DETACH = 2

# prctl options
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

_SYS_PIVOT_ROOT = 155  # x86_64


def _check(result: int, what: str, detail: str = "") -> int:
    if result == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}" + (f" ({detail})" if detail else ""))
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            ctypes.c_ulong(flags),
            data.encode() if data is not None else None,
        ),
        "mount",
        target,
    )


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(
        _libc.syscall(ctypes.c_long(_SYS_PIVOT_ROOT), new_root.encode(), put_old.encode()),
        "pivot_root",
        new_root,
    )


_SYS_MOVE_MOUNT = 429  # x86_64, Linux 5.2+
AT_FDCWD = -100
MOVE_MOUNT_T_EMPTY_PATH = 0x00000040


def move_mount(from_path: str, to_fd: int) -> None:
    """Move the mount at ``from_path`` (with its submounts) onto the directory ``to_fd``
    refers to (``MOVE_MOUNT_T_EMPTY_PATH``): ``mount --move`` with the target as a descriptor."""
    _check(
        _libc.syscall(ctypes.c_long(_SYS_MOVE_MOUNT), ctypes.c_int(AT_FDCWD), from_path.encode(),
                      ctypes.c_int(to_fd), b"", ctypes.c_uint(MOVE_MOUNT_T_EMPTY_PATH)),
        "move_mount",
        from_path,
    )


# The file-descriptor-based mount API (linux/mount.h; Linux 5.2+): a filesystem configured
# through a context descriptor (fsopen, fsconfig), made into a mount that belongs to no mount
# namespace (fsmount), attached wherever its holder's namespace wants it (move_mount).
_SYS_FSOPEN = 430  # x86_64
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
FSOPEN_CLOEXEC = 0x00000001
FSCONFIG_SET_FLAG = 0  # a flag parameter: key, no value
FSCONFIG_SET_STRING = 1  # a string parameter: key and value
FSCONFIG_CMD_CREATE = 6  # create the superblock from the parameters given
FSMOUNT_CLOEXEC = 0x00000001
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004  # the source is the descriptor itself


def fsopen(fstype: str, flags: int = FSOPEN_CLOEXEC) -> int:
    """A filesystem context descriptor for a new ``fstype`` superblock (fsopen(2))."""
    return _check(_libc.syscall(ctypes.c_long(_SYS_FSOPEN), fstype.encode(),
                                ctypes.c_uint(flags)), "fsopen", fstype)


def fsconfig(fs_fd: int, cmd: int, key: str | None = None, value: str | None = None,
             aux: int = 0) -> None:
    """One parameter (``FSCONFIG_SET_*``: ``key``, ``value``) or command
    (``FSCONFIG_CMD_*``) for the filesystem context ``fs_fd`` (fsconfig(2))."""
    _check(
        _libc.syscall(ctypes.c_long(_SYS_FSCONFIG), ctypes.c_int(fs_fd), ctypes.c_uint(cmd),
                      key.encode() if key is not None else None,
                      value.encode() if value is not None else None, ctypes.c_int(aux)),
        "fsconfig",
        key or f"command {cmd}",
    )


def fsmount(fs_fd: int, flags: int = FSMOUNT_CLOEXEC, attr_flags: int = 0) -> int:
    """A descriptor of a new detached mount of the superblock created in ``fs_fd``
    (fsmount(2); ``attr_flags``: ``MOUNT_ATTR_*``, 0 is read-write with relatime, as
    mount(2) with no flags)."""
    return _check(_libc.syscall(ctypes.c_long(_SYS_FSMOUNT), ctypes.c_int(fs_fd),
                                ctypes.c_uint(flags), ctypes.c_uint(attr_flags)), "fsmount")


def attach_mount(mount_fd: int, to_path: str) -> None:
    """Attach the mount ``mount_fd`` refers to (a detached one from :func:`fsmount`) at
    ``to_path`` in the caller's mount namespace: move_mount(2) with
    ``MOVE_MOUNT_F_EMPTY_PATH``."""
    _check(
        _libc.syscall(ctypes.c_long(_SYS_MOVE_MOUNT), ctypes.c_int(mount_fd), b"",
                      ctypes.c_int(AT_FDCWD), to_path.encode(),
                      ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)),
        "move_mount",
        to_path,
    )


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(
        _libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg2),
            ctypes.c_ulong(arg3),
            ctypes.c_ulong(arg4),
            ctypes.c_ulong(arg5),
        ),
        "prctl",
    )


# capabilities (linux/capability.h); added for the container runtime
_SYS_CAPSET = 126  # x86_64
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's capability sets (64-bit masks, version 3 ABI)."""
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(
        effective & 0xFFFFFFFF,
        permitted & 0xFFFFFFFF,
        inheritable & 0xFFFFFFFF,
        effective >> 32,
        permitted >> 32,
        inheritable >> 32,
    )
    _check(_libc.syscall(ctypes.c_long(_SYS_CAPSET), header, data), "capset")



# keyctl(2) (linux/keyctl.h): the session keyring a container's init joins, as crun and runc do
_SYS_KEYCTL = 250  # x86_64
KEYCTL_GET_KEYRING_ID = 0
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_DESCRIBE = 6
KEY_SPEC_SESSION_KEYRING = -3


def keyctl_join_session_keyring(name: str | None) -> int:
    """Join the session keyring called ``name`` (made if the caller can find none by that
    name; None: a new anonymous one) and return its serial. The keyring then replaces the
    inherited session keyring for the caller and the processes it starts."""
    return _check(_libc.syscall(ctypes.c_long(_SYS_KEYCTL),
                                ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING),
                                name.encode() if name is not None else None),
                  "keyctl(KEYCTL_JOIN_SESSION_KEYRING)", name or "")


def keyctl_session_keyring(create: bool = False) -> int:
    """The serial of the caller's session keyring (KEYCTL_GET_KEYRING_ID); with ``create``
    False and no session keyring of its own, the user session keyring's."""
    return _check(_libc.syscall(ctypes.c_long(_SYS_KEYCTL), ctypes.c_int(KEYCTL_GET_KEYRING_ID),
                                ctypes.c_int(KEY_SPEC_SESSION_KEYRING), ctypes.c_int(create)),
                  "keyctl(KEYCTL_GET_KEYRING_ID)")


def keyctl_describe(serial: int) -> str:
    """``type;uid;gid;perm;description`` of key ``serial`` (KEYCTL_DESCRIBE)."""
    buffer = ctypes.create_string_buffer(4096)
    _check(_libc.syscall(ctypes.c_long(_SYS_KEYCTL), ctypes.c_int(KEYCTL_DESCRIBE),
                         ctypes.c_int(serial), buffer, ctypes.c_size_t(len(buffer))),
           "keyctl(KEYCTL_DESCRIBE)")
    return buffer.value.decode(errors="replace")


# close_range(2) (linux/close_range.h), Linux 5.9; CLOSE_RANGE_CLOEXEC since 5.11
_SYS_CLOSE_RANGE = 436  # x86_64
CLOSE_RANGE_CLOEXEC = 1 << 2
MAX_FD = 0xFFFFFFFF  # ~0U: every descriptor from ``first`` up


def close_range(first: int, last: int = MAX_FD, flags: int = 0) -> None:
    """Close (or with ``CLOSE_RANGE_CLOEXEC`` mark close-on-exec) descriptors ``first`` to
    ``last``; OSError ENOSYS before Linux 5.9, EINVAL for a flag the kernel lacks."""
    _check(_libc.syscall(ctypes.c_long(_SYS_CLOSE_RANGE), ctypes.c_uint(first),
                         ctypes.c_uint(last), ctypes.c_uint(flags)), "close_range")


# seccomp (linux/seccomp.h, linux/filter.h)
_SYS_SECCOMP = 317  # x86_64
SECCOMP_SET_MODE_FILTER = 1


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter(program: bytes) -> None:
    """Install a classic-BPF seccomp program (an array of 8-byte ``sock_filter``) for the
    calling thread; it holds across ``execve``. Needs no_new_privs or CAP_SYS_ADMIN."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _check(_libc.syscall(ctypes.c_long(_SYS_SECCOMP), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                         ctypes.c_uint(0), ctypes.byref(fprog)), "seccomp")


# ptrace(2) (linux/ptrace.h): just what reading another process's seccomp filters needs
_SYS_PTRACE = 101  # x86_64
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
PTRACE_SECCOMP_GET_METADATA = 0x420D
PTRACE_EVENT_STOP = 128  # (status >> 16) of a waitpid stop caused by PTRACE_INTERRUPT
SOCK_FILTER_SIZE = 8  # bytes of one classic-BPF instruction (struct sock_filter)


def _ptrace(request: int, pid: int, addr: int, data: int | ctypes.c_void_p | None,
            what: str) -> int:
    """The raw system call (glibc's ptrace() wrapper treats PEEK requests specially)."""
    return _check(_libc.syscall(ctypes.c_long(_SYS_PTRACE), ctypes.c_long(request),
                                ctypes.c_int(pid), ctypes.c_void_p(addr), data),
                  what, f"pid {pid}")


def ptrace_seize(pid: int, options: int = 0) -> None:
    """Become ``pid``'s tracer without stopping it (PTRACE_SEIZE, Linux 3.4)."""
    _ptrace(PTRACE_SEIZE, pid, 0, ctypes.c_void_p(options), "ptrace(PTRACE_SEIZE)")


def ptrace_interrupt(pid: int) -> None:
    """Ask a seized tracee to stop (PTRACE_INTERRUPT); the stop is then seen with waitpid."""
    _ptrace(PTRACE_INTERRUPT, pid, 0, None, "ptrace(PTRACE_INTERRUPT)")


def ptrace_detach(pid: int, signal: int = 0) -> None:
    """Let a stopped tracee go (PTRACE_DETACH), delivering ``signal`` if not 0."""
    _ptrace(PTRACE_DETACH, pid, 0, ctypes.c_void_p(signal), "ptrace(PTRACE_DETACH)")


def ptrace_seccomp_get_filter(pid: int, index: int) -> bytes:
    """The classic-BPF program of a stopped tracee's seccomp filter ``index`` (0 is the first
    installed, whatever ptrace(2) says: see :mod:`hostkit.seccomp_readback`), as the
    ``sock_filter`` array it was installed with. Needs CAP_SYS_ADMIN and a caller not itself
    under seccomp; OSError ENOENT past the last filter, EINVAL if the tracee has none,
    EMEDIUMTYPE for an eBPF filter."""
    count = _ptrace(PTRACE_SECCOMP_GET_FILTER, pid, index, None,
                    "ptrace(PTRACE_SECCOMP_GET_FILTER)")
    buffer = ctypes.create_string_buffer(count * SOCK_FILTER_SIZE)
    got = _ptrace(PTRACE_SECCOMP_GET_FILTER, pid, index, ctypes.cast(buffer, ctypes.c_void_p),
                  "ptrace(PTRACE_SECCOMP_GET_FILTER)")
    return buffer.raw[: got * SOCK_FILTER_SIZE]


class _SeccompMetadata(ctypes.Structure):
    _fields_ = [("filter_off", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


def ptrace_seccomp_get_metadata(pid: int, index: int) -> int:
    """The ``SECCOMP_FILTER_FLAG_*`` flags filter ``index`` of a stopped tracee was installed
    with, as far as the kernel keeps them (PTRACE_SECCOMP_GET_METADATA, Linux 4.16:
    SECCOMP_FILTER_FLAG_LOG only)."""
    metadata = _SeccompMetadata(filter_off=index)
    _ptrace(PTRACE_SECCOMP_GET_METADATA, pid, ctypes.sizeof(metadata),
            ctypes.cast(ctypes.byref(metadata), ctypes.c_void_p),
            "ptrace(PTRACE_SECCOMP_GET_METADATA)")
    return int(metadata.flags)


# bpf(2) (linux/bpf.h): just what a cgroup device filter needs
_SYS_BPF = 321  # x86_64
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
BPF_F_ALLOW_MULTI = 2


class _BpfProgLoad(ctypes.Structure):
    """The BPF_PROG_LOAD member of ``union bpf_attr`` (up to ``expected_attach_type``)."""

    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16),
                ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32)]


class _BpfProgAttach(ctypes.Structure):
    """The BPF_PROG_ATTACH/DETACH member of ``union bpf_attr``."""

    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("replace_bpf_fd", ctypes.c_uint32)]


class _BpfProgQuery(ctypes.Structure):
    """The BPF_PROG_QUERY member of ``union bpf_attr``."""

    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                ("query_flags", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("prog_ids", ctypes.c_uint64), ("prog_cnt", ctypes.c_uint32)]


def _bpf(cmd: int, attr: ctypes.Structure, what: str, detail: str = "") -> int:
    return _check(_libc.syscall(ctypes.c_long(_SYS_BPF), ctypes.c_int(cmd), ctypes.byref(attr),
                                ctypes.c_uint(ctypes.sizeof(attr))), what, detail)


def bpf_prog_load(prog_type: int, instructions: bytes, license: str = "GPL",
                  expected_attach_type: int = 0) -> int:
    """Load an eBPF program (``instructions``: 8-byte ``struct bpf_insn`` each); its fd
    (O_CLOEXEC, as the kernel makes every bpf fd). On a verifier refusal the load is retried
    once with the verifier's log, which ends the error message."""
    code = ctypes.create_string_buffer(instructions, len(instructions))
    licence = ctypes.create_string_buffer(license.encode())
    attr = _BpfProgLoad(prog_type=prog_type, insn_cnt=len(instructions) // 8,
                        insns=ctypes.addressof(code), license=ctypes.addressof(licence),
                        expected_attach_type=expected_attach_type)
    try:
        return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD)")
    except OSError as error:
        log = ctypes.create_string_buffer(1 << 16)
        attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
        try:
            return _bpf(BPF_PROG_LOAD, attr, "bpf(BPF_PROG_LOAD)")
        except OSError:
            text = log.value.decode(errors="replace").strip().splitlines()
            raise OSError(error.errno, f"{error.strerror}" + (f": {text[-1]}" if text else "")
                          ) from None


def bpf_prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """Attach program ``prog_fd`` to ``target_fd`` (a cgroup directory for cgroup types)."""
    attr = _BpfProgAttach(target_fd=target_fd, attach_bpf_fd=prog_fd, attach_type=attach_type,
                          attach_flags=flags)
    _bpf(BPF_PROG_ATTACH, attr, "bpf(BPF_PROG_ATTACH)")


def bpf_prog_query(target_fd: int, attach_type: int, capacity: int = 64
                   ) -> tuple[int, list[int]]:
    """The attach flags and the ids of the programs attached to ``target_fd`` directly (not
    inherited ones) for ``attach_type``."""
    ids = (ctypes.c_uint32 * capacity)()
    attr = _BpfProgQuery(target_fd=target_fd, attach_type=attach_type,
                         prog_ids=ctypes.addressof(ids), prog_cnt=capacity)
    _bpf(BPF_PROG_QUERY, attr, "bpf(BPF_PROG_QUERY)")
    return attr.attach_flags, list(ids[: attr.prog_cnt])


# clone3(2) (linux/sched.h), Linux 5.3+; CLONE_INTO_CGROUP since 5.7
_SYS_CLONE3 = 435  # x86_64
CLONE_INTO_CGROUP = 0x200000000


class _CloneArgs(ctypes.Structure):
    """``struct clone_args`` up to ``cgroup`` (CLONE_ARGS_SIZE_VER2, 88 bytes)."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
        "tls", "set_tid", "set_tid_size", "cgroup")]


# Called with the GIL held, as os.fork() calls fork(2): the child's copy of the interpreter
# then has the GIL held by its one thread, which is what PyOS_AfterFork_Child expects.
_pylibc = ctypes.PyDLL(LIBC, use_errno=True)


def clone3(flags: int, cgroup_fd: int | None = None, exit_signal: int = 17) -> int:
    """The raw clone3(2) system call without a new stack, i.e. a fork: 0 in the child, the
    child's pid in the parent. ``cgroup_fd``: a cgroup v2 directory the child is born in
    (adds CLONE_INTO_CGROUP). ``exit_signal`` 17 is SIGCHLD.

    Only the kernel's part of fork: no glibc fork handlers run and glibc's thread descriptor
    in the child keeps the parent's thread id; nor does Python's own after-fork work run.
    Callers see to both (:func:`runtime.forkserver.clone_into`)."""
    args = _CloneArgs(flags=flags, exit_signal=exit_signal)
    if cgroup_fd is not None:
        args.flags |= CLONE_INTO_CGROUP
        args.cgroup = cgroup_fd
    return _check(_pylibc.syscall(ctypes.c_long(_SYS_CLONE3), ctypes.byref(args),
                                  ctypes.c_size_t(ctypes.sizeof(args))), "clone3")
