"""The seccomp filters the kernel holds for a running process, read back, and compared.

A runtime is given a seccomp *profile*; what confines its container is the classic-BPF program
the kernel was handed. Two runtimes given one profile may still install different programs
(their libseccomp, their rule order, rules of their own), so the benchmark reads the programs
back from a running container and compares those, not the JSON.

:func:`read_filters` seizes the process (PTRACE_SEIZE: no stop, no signal), stops it with
PTRACE_INTERRUPT (PTRACE_SECCOMP_GET_FILTER needs a ptrace-stopped tracee), reads every filter
(index 0, 1, ... until ENOENT) with its flags, and detaches, giving back any signal the stop
intercepted. The process is stopped for the few system calls that takes; a system call it
was blocked in is restarted. Needs CAP_SYS_ADMIN (root) and a caller not itself under seccomp.

Index 0 is the *first* installed filter: the kernel's get_nth_filter counts back from the
newest by (filters - index - 1). ptrace(2) says "the most recently installed filter has the
index 0"; the kernel does the opposite (tests/unit/hostkit/test_seccomp_readback.py installs
two filters and reads them back in install order).

:func:`difference` says precisely how two processes' filters differ (how many filters, their
instruction counts, the first differing instruction), or None when they are the same bytes.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hostkit import syscalls

_WALL = 0x40000000  # waitpid: any child or tracee, thread or process (linux/wait.h)
_INSTRUCTION = struct.Struct("<HBBI")  # struct sock_filter: code, jt, jf, k (x86_64)
SECCOMP_FILTER_FLAG_LOG = 2


class ReadbackError(OSError):
    """The process's filters could not be read (gone, not traceable, or not stoppable)."""


@dataclass(frozen=True)
class Filter:
    """One installed seccomp filter: its classic-BPF program and the flags the kernel kept."""

    program: bytes  # the sock_filter array, exactly as the installer passed it
    flags: int = 0  # SECCOMP_FILTER_FLAG_* the kernel reports (LOG only)

    @property
    def instructions(self) -> int:
        return len(self.program) // _INSTRUCTION.size

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.program).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        """For run metadata: size, digest, flags and the program itself (zlib, base64: ~5 KB
        for the default profile's 1,125 instructions), so that a report can say which
        instruction differs between two runtimes."""
        return {"instructions": self.instructions, "sha256": self.sha256,
                "flags": flag_names(self.flags),
                "bpf_zlib_base64": base64.b64encode(zlib.compress(self.program, 9)).decode()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Filter:
        """The inverse of :meth:`as_dict`."""
        flags = SECCOMP_FILTER_FLAG_LOG if "log" in (data.get("flags") or []) else 0
        return cls(zlib.decompress(base64.b64decode(data["bpf_zlib_base64"])), flags)


def read_filters(pid: int) -> tuple[Filter, ...]:
    """Every seccomp filter process ``pid`` runs under, in the order they were installed
    (the kernel evaluates all of them, the strictest verdict wins); empty if it has none.
    ReadbackError if it cannot be read."""
    try:
        syscalls.ptrace_seize(pid)
    except OSError as error:
        raise ReadbackError(error.errno, f"cannot trace pid {pid}: {error.strerror}") from None
    pending = 0  # a signal the stop intercepted, given back on detach
    try:
        syscalls.ptrace_interrupt(pid)
        _, status = os.waitpid(pid, _WALL)
        if not os.WIFSTOPPED(status):
            raise ReadbackError(errno.ESRCH, f"pid {pid} exited while its filters were read")
        if status >> 16 != syscalls.PTRACE_EVENT_STOP:  # a signal-delivery-stop came first
            pending = os.WSTOPSIG(status)
        stack: list[Filter] = []
        while True:
            try:
                program = syscalls.ptrace_seccomp_get_filter(pid, len(stack))
            except OSError as error:
                if error.errno == errno.ENOENT:  # past the last installed
                    break
                if error.errno == errno.EINVAL and not stack:  # no seccomp filter mode
                    break
                raise ReadbackError(error.errno, f"pid {pid}: {error.strerror}") from None
            stack.append(Filter(program, syscalls.ptrace_seccomp_get_metadata(pid, len(stack))))
    finally:
        try:
            syscalls.ptrace_detach(pid, pending)
        except ProcessLookupError:
            pass  # killed while stopped: nothing left to let go
    return tuple(stack)


def summary(filters: Sequence[Filter]) -> dict[str, Any]:
    """For run metadata: how many filters, how many instructions in all, one digest over
    every program in order, and each filter (:meth:`Filter.as_dict`)."""
    digest = hashlib.sha256()
    for item in filters:
        digest.update(item.program)
    return {"filters": len(filters), "instructions": sum(f.instructions for f in filters),
            "sha256": digest.hexdigest(), "programs": [f.as_dict() for f in filters]}


def from_summary(data: dict[str, Any]) -> tuple[Filter, ...]:
    """The filters of a :func:`summary`."""
    return tuple(Filter.from_dict(program) for program in data.get("programs") or [])


def instruction(program: bytes, index: int) -> str:
    """Instruction ``index`` of ``program`` as ``{code, jt, jf, k}`` (hex code and k), or
    ``none`` past its end."""
    if (index + 1) * _INSTRUCTION.size > len(program):
        return "none"
    code, jt, jf, k = _INSTRUCTION.unpack_from(program, index * _INSTRUCTION.size)
    return f"{{code 0x{code:04x}, jt {jt}, jf {jf}, k 0x{k:08x}}}"


def difference(left: Sequence[Filter], right: Sequence[Filter]) -> str | None:
    """None if ``left`` and ``right`` are the same programs with the same flags, in the same
    order; else one line: the filter counts if they differ, then for the first filter that
    differs its instruction counts, its first differing instruction and how many of its last
    instructions are the same (a runtime that prepends rules of its own to libseccomp's
    program shows as "the last N the same"), or its flags."""
    parts = []
    if len(left) != len(right):
        parts.append(f"{len(left)} filters vs {len(right)} "
                     f"({'+'.join(str(f.instructions) for f in left) or '0'} vs "
                     f"{'+'.join(str(f.instructions) for f in right) or '0'} instructions)")
    for number, (one, other) in enumerate(zip(left, right, strict=False)):
        if one.program != other.program:
            first = _common(one.program, other.program, 1)
            last = _common(one.program, other.program, -1)
            shorter = min(one.instructions, other.instructions)
            line = (f"filter {number}: {one.instructions} vs {other.instructions} instructions, "
                    f"first difference at instruction {first}: "
                    f"{instruction(one.program, first)} vs {instruction(other.program, first)}")
            if last == shorter:
                longer = "second" if other.instructions > one.instructions else "first"
                line += (f"; the {longer} ends with all {shorter} instructions of the other, "
                         f"after {abs(one.instructions - other.instructions)} of its own")
            elif last:
                line += f"; the last {last} instructions the same"
            parts.append(line)
            break
        if one.flags != other.flags:
            parts.append(f"filter {number}: flags {', '.join(flag_names(one.flags)) or 'none'}"
                         f" vs {', '.join(flag_names(other.flags)) or 'none'}")
            break
    return "; ".join(parts) or None


def _common(one: bytes, other: bytes, step: int) -> int:
    """How many instructions ``one`` and ``other`` share from the start (``step`` 1) or
    from the end (``step`` -1)."""
    size = _INSTRUCTION.size
    count, limit = 0, min(len(one), len(other)) // size
    while count < limit:
        at = count if step == 1 else -count - 1
        a = one[at * size: (at + 1) * size or None]
        b = other[at * size: (at + 1) * size or None]
        if a != b:
            break
        count += 1
    return count


def flag_names(flags: int) -> list[str]:
    """``SECCOMP_FILTER_FLAG_*`` bits as names (``log``; others in hex)."""
    names = ["log"] if flags & SECCOMP_FILTER_FLAG_LOG else []
    rest = flags & ~SECCOMP_FILTER_FLAG_LOG
    return names + ([f"0x{rest:x}"] if rest else [])
