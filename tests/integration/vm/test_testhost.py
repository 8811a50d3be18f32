"""The like-for-like proof on the kind of host cvbench's users have: a Debian 12 VM with
systemd as PID 1 and cgroup v2 only (vm/testhost.py), booted here under TCG.

The subset below runs inside it, from this working tree, and must pass with nothing skipped;
the VM is gone when the session ends, also when the harness is SIGKILLed (then `cvbench clean`
removes its files). The first run builds the image (a few minutes; cached under
/var/cache/cvbench/v2host/ afterwards); the time the VM part took is printed at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from vm import hypervisor, testhost

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.v2host]

REPOSITORY = Path(__file__).resolve().parents[3]
# What proves like for like on a v2 host: the isolation probe (ours cold and warm, crun, runc)
# and the same cgroups/devices/mounts/profile comparison, the limits, the OCI backends, the
# root switch, the device filter, the seccomp program the kernel holds, the overlay mounted
# outside the container's memory cgroup, and SIGKILL-then-`cvbench clean`.
SUBSET = (
    "tests/integration/harness/backends/test_isolation_probe.py",
    "tests/integration/runtime/test_cgroups.py",
    "tests/integration/runtime/test_isolation.py",
    "tests/integration/harness/backends/oci/test_backend.py",
    "tests/integration/harness/backends/test_cgroup_layout.py",
    "tests/integration/runtime/test_rootfs.py",
    "tests/integration/runtime/test_device_filter.py",
    "tests/integration/runtime/test_overlay_outside_cgroup.py",
    "tests/integration/hostkit/test_seccomp_readback.py",
    "tests/integration/harness/backends/test_warm_split.py",
    "tests/integration/harness/backends/oci/test_checkpoint.py",
    "tests/integration/harness/kinds/test_density_interrupt.py::test_interrupted_ramp_then_clean_restores_host[sigkill]",
)
JUNIT = "/tmp/cvbench-v2host-junit.xml"
LOGS = testhost.LOGS  # the subset's output is kept there too, for reading afterwards


@pytest.fixture(scope="session")
def v2_host(v2host_timings: list[str]) -> Iterator[testhost.TestHost]:
    """The tests image booted, with this working tree copied to /root/cvbench."""
    started = time.monotonic()
    image = testhost.ensure_image("tests", REPOSITORY)
    built = time.monotonic()
    with testhost.booted(image) as host:
        host.put_tree(REPOSITORY)
        v2host_timings.append(f"image {built - started:.0f} s, boot {host.boot_s:.0f} s"
                              + "".join(f"; a boot retried after: {failure}"
                                        for failure in host.failed_boots))
        yield host
    v2host_timings.append(f"whole VM part {time.monotonic() - started:.0f} s")


def test_the_host_runs_systemd_with_cgroup_v2_only(v2_host: testhost.TestHost) -> None:
    facts = testhost.host_kind_facts(v2_host)
    assert facts["init"] == "systemd"
    assert facts["cgroup_mounts"] == "/sys/fs/cgroup=cgroup2"  # no v1 hierarchy, no hybrid
    assert {"cpu", "memory", "pids"} <= set(facts["controllers"].split())


def test_the_like_for_like_proof_passes_there_with_nothing_skipped(
        v2_host: testhost.TestHost, v2host_timings: list[str]) -> None:
    command = (f"cd {testhost.GUEST_REPO} && rm -f {JUNIT} && PYTHONUNBUFFERED=1 "
               ".venv/bin/python -m pytest -p no:cacheprovider -q -rfEs "
               f"--junitxml={JUNIT} {' '.join(SUBSET)}")
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"pytest-{time.strftime('%Y%m%dT%H%M%S')}.log"
    with open(log, "w") as echo:
        result = v2_host.run(command, echo=echo)
    report = v2_host.run(f"cat {JUNIT}", timeout=60)
    v2host_timings.append(
        f"subset {result.seconds:.0f} s ({''.join(result.output.strip().splitlines()[-1:])})")
    assert report.returncode == 0, f"no junit report; pytest said:\n{result.output[-3000:]}"
    suite = ET.fromstring(report.output).find("testsuite")
    assert suite is not None
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    summary = f"{counts} (log: {log})\n{result.output[-3000:]}"
    assert counts["failures"] == counts["errors"] == 0, summary
    assert counts["skipped"] == 0, summary
    assert counts["tests"] >= 30, summary  # the subset was collected, not an empty run
    assert result.returncode == 0, summary


# The doomed starter: boots nothing to the end, only starts the test host's QEMU and waits.
STARTER = """
import sys, time
from pathlib import Path
from vm import testhost
image = testhost.HostImage("tests", Path(sys.argv[1]))
with testhost.booted(image, name=sys.argv[2], boot_timeout=600):
    pass
"""


@pytest.mark.timeout(300)
def test_a_sigkilled_starter_takes_the_vm_along_and_clean_removes_its_files(
        v2_host: testhost.TestHost, tmp_path: Path) -> None:
    name = f"cvbench-v2host-doomed-{os.getpid()}"
    directory = hypervisor.vms_dir() / name
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(v2_host.image.directory),
                                name], cwd=REPOSITORY)
    try:
        deadline = time.monotonic() + 60
        while not (directory / "qemu.pid").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        qemu = int((directory / "qemu.pid").read_text())
        starter.send_signal(signal.SIGKILL)
        starter.wait()
        deadline = time.monotonic() + 30
        while Path(f"/proc/{qemu}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{qemu}").exists(), "QEMU outlived its starter"
        assert directory.is_dir()  # the files stay until the sweep
        clean = subprocess.run([sys.executable, "-m", "harness.cli", "clean"], cwd=REPOSITORY,
                               capture_output=True, text=True, timeout=120)
        assert clean.returncode == 0, clean.stderr
        assert not directory.exists(), clean.stdout
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
