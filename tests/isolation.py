"""The isolation probe shared by the tests that run it (``tests/isolation_probe.sh`` and the
compiled checks of ``tests/probe_syscalls.c``): its script, how its binary is built and how
its verdicts are read back from a container."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PROBE = (TESTS / "isolation_probe.sh").read_text()
PROBE_SOURCE = TESTS / "probe_syscalls.c"
PROBE_BINARY = "probe_syscalls"  # the name isolation_probe.sh runs from the volume (/data)


def build_probe(directory: Path) -> Path:
    """``directory`` (made readable by all) holding ``probe_syscalls.c`` built static with the
    system gcc (the image has no libc), for the containers' volume. RuntimeError without gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is not installed: run scripts/setup.sh, which installs it")
    directory.chmod(0o755)
    binary = directory / PROBE_BINARY
    subprocess.run([gcc, "-static", "-O2", "-o", str(binary), str(PROBE_SOURCE)], check=True,
                   capture_output=True, text=True, timeout=60)
    binary.chmod(0o755)
    return directory


def probe_results(pid: int) -> dict[str, tuple[str, str]]:
    """``check -> (verdict, what was seen)`` from the probe's output file in the container
    whose process is ``pid``."""
    results = {}
    for line in Path(f"/proc/{pid}/root/tmp/probe.out").read_text().splitlines():
        check, verdict, seen = (line.split(" ", 2) + [""])[:3]
        results[check] = (verdict, seen)
    return results
