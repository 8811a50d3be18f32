"""The LXC monitor's end (harness.backends.engines.lxc.helper_process): it exits as its
container's init did, with the wait status read from liblxc's ``struct lxc_container``."""

from __future__ import annotations

import os
import signal

import pytest

from harness.backends.engines.lxc import helper_process


def _ended_as(status: int | None) -> int:
    """The wait status of a child that called end_as(status)."""
    pid = os.fork()
    if pid == 0:
        try:
            helper_process.end_as(status)
        finally:
            os._exit(99)  # never back into pytest
    _, waited = os.waitpid(pid, 0)
    return waited


@pytest.mark.parametrize("code", [0, 3, 255])
def test_a_monitor_exits_with_its_inits_exit_code(code) -> None:
    waited = _ended_as(code << 8)  # what waitpid gives for exit(code)
    assert os.WIFEXITED(waited) and os.WEXITSTATUS(waited) == code


@pytest.mark.parametrize("number", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_a_monitor_dies_of_its_inits_signal_without_a_core(number) -> None:
    waited = _ended_as(number)  # what waitpid gives for a death by that signal
    assert os.WIFSIGNALED(waited) and os.WTERMSIG(waited) == number
    assert not os.WCOREDUMP(waited)


def test_a_container_that_did_not_run_is_not_run() -> None:
    waited = _ended_as(None)
    assert os.WIFEXITED(waited) and os.WEXITSTATUS(waited) == helper_process.NOT_RUN


def test_liblxc_s_struct_is_found_behind_the_binding(tmp_path) -> None:
    lxc = pytest.importorskip("lxc", reason="the lxc binding is set-up's (scripts/setup.sh)")
    container = lxc.Container("cvbench-unit-head", str(tmp_path))
    head = helper_process.container_head(container)
    assert head is not None
    assert head.name == b"cvbench-unit-head"
    assert head.config_path == str(tmp_path).encode()
    assert head.error_num == 0  # nothing ran
    assert helper_process.init_status(container) == 0
    other = lxc.Container("cvbench-unit-other", str(tmp_path))
    assert helper_process.container_head(other).name == b"cvbench-unit-other"
