"""The guest exec helper (vm/guest_exec.c), built here as set-up builds it: the user, the
groups, exactly the given environment, the program found on that environment's PATH."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[3] / "vm" / "guest_exec.c"


@pytest.fixture(scope="module")
def helper(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("exec") / "cvbench-guest-exec"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-static", "-o", str(path), str(SOURCE)],
                   check=True)
    return path


def test_it_execs_with_exactly_the_given_environment_found_on_its_path(helper,
                                                                        tmp_path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    program = bindir / "show"
    program.write_text('#!/bin/sh\necho "$0 $FOO"; /usr/bin/env\n')
    program.chmod(0o755)
    uid, gid = os.getuid(), os.getgid()
    out = subprocess.run([str(helper), str(uid), str(gid), f"PATH={bindir}", "FOO=a b", "--",
                          "show"], capture_output=True, text=True, timeout=10, check=True,
                         env={"LEAK": "1", "PATH": "/usr/bin:/bin"}).stdout
    lines = out.splitlines()
    assert lines[0] == f"{program} a b"
    assert "LEAK=1" not in lines and f"PATH={bindir}" in lines and "FOO=a b" in lines


@pytest.mark.skipif(os.geteuid() != 0, reason="setuid needs root")
def test_it_becomes_the_user_with_no_supplementary_groups(helper) -> None:
    out = subprocess.run([str(helper), "1000", "1001", "PATH=/usr/bin:/bin", "--", "sh", "-c",
                          'echo "$(id -u):$(id -g):$(id -G)"'], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    assert out.strip() == "1000:1001:1001"


def test_a_failed_exec_is_one_boot_line_and_no_exit(helper) -> None:
    process = subprocess.Popen([str(helper), str(os.getuid()), str(os.getgid()), "PATH=/none",
                                "--", "missing"], stderr=subprocess.PIPE, text=True)
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.5)  # PID 1 in a guest: it waits, the kernel would panic
    process.kill()
    _out, err = process.communicate()
    assert err == "cvbench-boot: cannot exec missing: No such file or directory\n"


@pytest.mark.parametrize("argv", [["x", "0"], ["x", "0", "A=1", "--"], ["1x", "0", "--", "sh"]])
def test_bad_arguments_are_one_boot_line(helper, argv) -> None:
    process = subprocess.Popen([str(helper), *argv[1:]] if argv[0] == "x" else
                               [str(helper), *argv], stderr=subprocess.PIPE, text=True)
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.5)
    process.kill()
    _out, err = process.communicate()
    assert err.startswith("cvbench-boot: ") and err.count("\n") == 1
