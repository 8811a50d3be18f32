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


def _section(*rules: dict) -> dict:
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                         *rules]}


def test_a_rule_libseccomp_rejects_fails_naming_it() -> None:
    """An errno libseccomp refuses (above 0xffff): the whole filter fails, the rule named
    (it was skipped silently before; crun and runc fail the container)."""
    bad = {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}
    with pytest.raises(seccomp.SeccompError) as caught:
        seccomp.compile_bpf(_section(bad))
    message = str(caught.value)
    assert "\n" not in message
    assert "rule 1" in message and "chroot" in message and "SCMP_ACT_ERRNO" in message


@pytest.mark.parametrize("rule, words", [
    ({"names": ["read"], "action": "SCMP_ACT_NOTIFY"}, "SCMP_ACT_NOTIFY"),
    ({"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}, "errno value"),
    ({"names": ["read"], "action": "SCMP_ACT_ALLOW",
      "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}, "index 6"),
    ({"names": ["read"], "action": "SCMP_ACT_ALLOW",
      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}, "SCMP_CMP_SOMETIMES"),
])
def test_what_crun_refuses_is_refused(rule, words) -> None:
    with pytest.raises(seccomp.SeccompError, match=words):
        seccomp.compile_bpf(_section(rule))


def test_an_unknown_architecture_is_refused() -> None:
    section = _section()
    section["architectures"].append("SCMP_ARCH_VAX")
    with pytest.raises(seccomp.SeccompError, match="SCMP_ARCH_VAX"):
        seccomp.compile_bpf(section)


def test_a_syscall_name_unknown_to_libseccomp_is_ignored_with_crun_s_warning(caplog) -> None:
    """As crun 1.8 (src/libcrun/seccomp.c): a name seccomp_syscall_resolve_name cannot
    resolve is skipped with "unknown seccomp syscall `NAME` ignored"; the rest compiles to
    the same program as without it."""
    with_unknown = _section({"names": ["chroot", "cvbench_no_such_syscall"],
                             "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    without = _section({"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    with caplog.at_level("WARNING", logger="runtime.seccomp"):
        program = seccomp.compile_bpf(with_unknown)
    assert program == seccomp.compile_bpf(without)
    assert "unknown seccomp syscall `cvbench_no_such_syscall` ignored" in caplog.text


def test_two_conditions_on_one_argument_become_two_rules() -> None:
    """libseccomp refuses two comparisons of one argument in a rule; crun adds one rule per
    comparison (either allows), and so does compile_bpf."""
    twice = {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
    apart = [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
              "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]} for value in (0, 8)]
    assert seccomp.compile_bpf(_section(twice)) == seccomp.compile_bpf(_section(*apart))


def test_the_default_profile_compiles_every_rule_without_a_warning(caplog) -> None:
    """Every name of the default profile resolves with this libseccomp, and no rule is
    refused, for the default capabilities and for a container holding every capability."""
    from runtime.caps import NAMES
    from runtime.spec import DEFAULT_CAPABILITIES

    for capabilities in (DEFAULT_CAPABILITIES, NAMES):
        with caplog.at_level("WARNING", logger="runtime.seccomp"):
            seccomp.compile_bpf(seccomp.to_oci(seccomp.load_profile(), capabilities))
    assert "unknown seccomp syscall" not in caplog.text
