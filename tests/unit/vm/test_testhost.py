"""vm.testhost's failure message: a boot that never said READY explains itself."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from vm import testhost
from vm.console import ConsoleError


def test_a_failed_boot_says_where_the_console_stopped(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("".join(f"[ {n:3}.0] line {n}\n\n" for n in range(40)))
    error = ConsoleError("no READY within 600.0s", b"early\nsystemd waits for x\r\n")

    message = testhost.boot_failure(error, log)

    assert message.startswith("the test host did not boot: no READY within 600.0s")
    assert "host load " in message
    assert "systemd waits for x" in message
    body = message.split("lines:\n", 1)[1]
    assert body.splitlines()[0] == "[  15.0] line 15"  # the last 25 non-blank lines
    assert body.rstrip(")").splitlines()[-1] == "[  39.0] line 39"
    assert "line 14\n" not in message


def test_a_missing_console_log_is_named_not_raised(tmp_path: Path) -> None:
    message = testhost.boot_failure(RuntimeError("QEMU exited (1)"), tmp_path / "absent.log")

    assert "QEMU exited (1)" in message
    assert "(no console log: No such file or directory)" in message


class _FakeVM:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def _image(tmp_path: Path) -> testhost.HostImage:
    image = testhost.HostImage("tests", tmp_path)
    (tmp_path / "complete").write_text("1\n")
    return image


def test_a_stalled_boot_is_retried_once_and_reported(tmp_path: Path, monkeypatch) -> None:
    vm = _FakeVM()
    outcomes: list[object] = [testhost.TestHostError("no READY within 300.0s (console ...)"),
                              (vm, 2222)]

    def boot_once(image, spec, network, boot_timeout):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(testhost, "_boot_once", boot_once)
    monkeypatch.setattr(testhost, "_wait_for_ssh", lambda host, timeout: None)
    log = io.StringIO()
    with testhost.booted(_image(tmp_path), log=log) as host:
        assert host.port == 2222
        assert host.failed_boots == ["no READY within 300.0s (console ...)"]
    assert vm.stopped
    assert "boot 1 of 2 failed: no READY within 300.0s" in log.getvalue()


def test_a_boot_that_fails_every_attempt_raises_with_the_last_reason(
        tmp_path: Path, monkeypatch) -> None:
    calls = []

    def boot_once(image, spec, network, boot_timeout):
        calls.append(boot_timeout)
        raise testhost.TestHostError(f"stall {len(calls)}")

    monkeypatch.setattr(testhost, "_boot_once", boot_once)
    with pytest.raises(testhost.TestHostError) as failure:
        with testhost.booted(_image(tmp_path), boot_timeout=5.0, log=io.StringIO()):
            pass
    assert calls == [5.0, 5.0]
    assert str(failure.value) == "the test host did not boot in 2 attempt(s); the last: stall 2"
