"""The seccomp profile, resolved for one container, compiled once, installed in a child."""

from __future__ import annotations

import ctypes
import errno
import json
import os

import pytest

from hostkit import syscalls
from runtime import seccomp

PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                 "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
    "syscalls": [
        {"names": ["read", "write", "exit_group", "getpid"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["chroot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_CHROOT"]}},
        {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "excludes": {"caps": ["CAP_SYS_CHROOT"]}},
        {"names": ["sync_file_range2"], "action": "SCMP_ACT_ALLOW",
         "includes": {"arches": ["ppc64le"]}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
    ],
}


@pytest.fixture
def profile(tmp_path) -> seccomp.Profile:
    path = tmp_path / "seccomp.json"
    path.write_text(json.dumps(PROFILE))
    return seccomp.load_profile(path)


def test_conditions_are_resolved_for_the_containers_capabilities(profile) -> None:
    with_chroot = seccomp.to_oci(profile, {"CAP_SYS_CHROOT"}, machine="x86_64")
    without = seccomp.to_oci(profile, set(), machine="x86_64")
    assert with_chroot["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert with_chroot["defaultErrnoRet"] == 38
    chroot_rules = [r for r in with_chroot["syscalls"] if r["names"] == ["chroot"]]
    assert chroot_rules == [{"names": ["chroot"], "action": "SCMP_ACT_ALLOW"}]
    assert [r for r in without["syscalls"] if r["names"] == ["chroot"]] == [
        {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    assert not any("sync_file_range2" in r["names"] for r in without["syscalls"])
    personality = next(r for r in without["syscalls"] if r["names"] == ["personality"])
    assert personality["args"] == [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]


def test_missing_profile_names_the_package(tmp_path) -> None:
    with pytest.raises(seccomp.SeccompError, match="golang-github-containers-common"):
        seccomp.load_profile(tmp_path / "none.json")


def test_compiled_filter_denies_what_the_profile_denies(profile) -> None:
    program = seccomp.compile_bpf(seccomp.to_oci(profile, set()))
    assert program and len(program) % 8 == 0
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: install, then try a denied and an allowed call
        try:
            os.close(read_fd)
            syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
            syscalls.seccomp_set_filter(program)
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            denied = libc.chroot(b"/") == -1 and ctypes.get_errno() == errno.EPERM
            # getppid (110) is not in the profile: the default action, ENOSYS
            default = libc.syscall(110) == -1 and ctypes.get_errno() == errno.ENOSYS
            allowed = libc.syscall(39) == os.getpid()  # getpid is allowed
            os.write(write_fd, b"ok" if denied and default and allowed else b"no")
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    assert os.read(read_fd, 10) == b"ok"
    os.close(read_fd)


@pytest.mark.skipif(not seccomp.DEFAULT_PROFILE.exists(), reason="profile package not installed")
def test_the_default_profile_resolves_and_compiles() -> None:
    from runtime.spec import DEFAULT_CAPABILITIES

    section = seccomp.to_oci(seccomp.load_profile(), DEFAULT_CAPABILITIES)
    assert section["defaultAction"] == "SCMP_ACT_ERRNO"
    assert len(seccomp.compile_bpf(section)) > 1000
