"""Reading a process's seccomp filters back (hostkit.seccomp_readback), comparing two stacks of
filters, and the methodology's line comparing the container backends' filters.

The readback test installs hand-written classic-BPF programs in a forked child and checks that
the bytes read back are the bytes installed, in the order installed, and that the child runs on
undisturbed afterwards.
"""

from __future__ import annotations

import os
import struct

import pytest

from harness import methodology
from hostkit import seccomp_readback, syscalls
from hostkit.seccomp_readback import Filter


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


RET_ALLOW = _insn(0x06, 0, 0, 0x7FFF0000)  # BPF_RET|BPF_K, SECCOMP_RET_ALLOW
# first installed: load the architecture, allow everything
FIRST = _insn(0x20, 0, 0, 4) + RET_ALLOW
# second: load the syscall number; 0xffff (no such syscall) gets ERRNO(ENOSYS); allow the rest
SECOND = (_insn(0x20, 0, 0, 0) + _insn(0x15, 0, 1, 0xFFFF) + _insn(0x06, 0, 0, 0x50026)
          + RET_ALLOW)


@pytest.mark.root  # PTRACE_SECCOMP_GET_FILTER needs CAP_SYS_ADMIN
def test_reads_back_the_programs_installed_in_a_child_in_install_order() -> None:
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: two filters, then wait for the parent
        try:
            os.close(ready_r)
            os.close(go_w)
            syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
            syscalls.seccomp_set_filter(FIRST)
            syscalls.seccomp_set_filter(SECOND)
            os.write(ready_w, b"r")
            got = os.read(go_r, 1)  # blocked here while the parent reads the filters
            os.write(ready_w, got)
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(ready_w)
    os.close(go_r)
    try:
        assert os.read(ready_r, 1) == b"r"
        filters = seccomp_readback.read_filters(pid)
        assert [f.program for f in filters] == [FIRST, SECOND]
        assert [f.instructions for f in filters] == [2, 4]
        assert [f.flags for f in filters] == [0, 0]
        # detached and undisturbed: the interrupted read restarts and gets the byte
        os.write(go_w, b"g")
        assert os.read(ready_r, 1) == b"g"
    finally:
        os.close(go_w)
        _, status = os.waitpid(pid, 0)
        os.close(ready_r)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.root
def test_a_process_without_filters_has_none() -> None:
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.read(go_r, 1)
        os._exit(0)
    os.close(go_r)
    try:
        assert seccomp_readback.read_filters(pid) == ()
    finally:
        os.close(go_w)
        os.waitpid(pid, 0)


def test_a_process_that_is_gone_cannot_be_read() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(seccomp_readback.ReadbackError):
        seccomp_readback.read_filters(pid)


def test_summary_round_trips_and_digests_the_stack() -> None:
    stack = (Filter(FIRST), Filter(SECOND, seccomp_readback.SECCOMP_FILTER_FLAG_LOG))
    summary = seccomp_readback.summary(stack)
    assert summary["filters"] == 2 and summary["instructions"] == 6
    assert summary["programs"][1]["flags"] == ["log"]
    assert seccomp_readback.from_summary(summary) == stack


def test_difference_names_what_differs() -> None:
    libseccomp = Filter(SECOND)
    stub = _insn(0x20, 0, 0, 0) + _insn(0x25, 0, 1, 0x1C0) + _insn(0x06, 0, 0, 0x50026)
    assert seccomp_readback.difference([libseccomp], [Filter(SECOND)]) is None
    assert seccomp_readback.difference([libseccomp], [Filter(stub + SECOND)]) == (
        "filter 0: 4 vs 7 instructions, first difference at instruction 1: "
        "{code 0x0015, jt 0, jf 1, k 0x0000ffff} vs {code 0x0025, jt 0, jf 1, k 0x000001c0}; "
        "the second ends with all 4 instructions of the other, after 3 of its own")
    assert seccomp_readback.difference([libseccomp], [Filter(FIRST), libseccomp]).startswith(
        "1 filters vs 2 (4 vs 2+4 instructions)")
    assert seccomp_readback.difference(
        [libseccomp], [Filter(SECOND, seccomp_readback.SECCOMP_FILTER_FLAG_LOG)]) == (
        "filter 0: flags none vs log")


def _metadata(**programs: dict[str, bytes]) -> dict:
    return {"backends": {name: {"security": {"kernel_filter": {
        **{variant: seccomp_readback.summary([Filter(program)])
           for variant, program in variants.items()},
        "runtime_additions": f"what {name} adds"}}}
        for name, variants in programs.items()}}


def test_methodology_says_the_programs_are_the_same() -> None:
    line = methodology.kernel_filters(_metadata(ours={"cold": SECOND, "warm": SECOND},
                                                crun={"cold": SECOND}))
    assert line is not None and "same program: **yes**" in line
    assert "ours cold, ours warm, crun cold: 1 filter, 4 instructions" in line
    assert "\n".join(methodology.section(_metadata(crun={"cold": SECOND}))).count(
        "same program: **yes**") == 1


def test_methodology_says_what_differs_and_what_the_runtime_adds() -> None:
    line = methodology.kernel_filters(_metadata(ours={"cold": SECOND},
                                                runc={"cold": FIRST + SECOND}))
    assert line is not None and "same program: **no**" in line
    assert ("runc cold: 1 filter, 6 instructions" in line
            and "against ours cold: filter 0: 4 vs 6 instructions" in line
            and "after 2 of its own" in line and "what runc adds: what runc adds" in line)


def test_methodology_says_when_a_filter_was_not_read() -> None:
    metadata = _metadata(ours={"cold": SECOND})
    metadata["backends"]["crun"] = {"security": {"kernel_filter": {"cold": {"error": "EPERM"}}}}
    line = methodology.kernel_filters(metadata)
    assert line is not None and "same program: **unknown**" in line
    assert "crun cold: not read (EPERM)" in line
    assert methodology.kernel_filters({"backends": {"process": {}}}) is None
