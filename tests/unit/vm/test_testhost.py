"""vm.testhost's failure message: a boot that never said READY explains itself."""

from __future__ import annotations

from pathlib import Path

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
