"""The workload suite on every backend, short: every figure there, positive, in its unit;
and a VM that cannot mount its disk fails in one clear line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from harness import runner, scenario
from harness.backends.base import InstanceSpec, NotReady
from harness.backends.libvirt import LibvirtBackend
from harness.backends.qemu import QemuBackend
from imagestore import image as images
from imagestore import workloads
from vm import sweep as vm_sweep

pytestmark = [pytest.mark.root, pytest.mark.vm, pytest.mark.slow]

BACKENDS = ("process", "ours", "crun", "runc", "qemu", "libvirt")
SUITE = """
[suite]
name = "workloads-test"
image = "workloads"
backends = {backends}
seed = 1

# VM guests with ACPI: without it a TCG guest has no HPET or ACPI PM timer and falls back to a
# 4 ms tick clock, and latencies timed inside it are ticks (the kind refuses such a clock).
[backend_options.qemu]
acpi = true

[backend_options.libvirt]
acpi = true

[[scenario]]
kind = "workload"
name = "workloads"
network = "bridge"
repetitions = 1
warmup = 0
duration_s = 1
fio_size_mib = 8
redis_requests = 2000
redis_clients = 4
timeout_s = 30
guest_memory_mib = 256
vcpus = 2

[scenario.overrides.vm]
timeout_s = 120
"""
UNITS = {"events_per_s": "events/s", "bandwidth_mib_s": "MiB/s", "iops": "IOPS",
         "latency_p50_s": "s", "latency_p99_s": "s", "throughput_mbit_s": "Mbit/s",
         "rtt_p50_s": "s", "rtt_p99_s": "s", "ops_per_s": "ops/s"}
CPUS = os.cpu_count() or 1
EXPECTED = {  # variant -> metrics
    "cpu threads=1": {"events_per_s"},
    f"cpu threads={CPUS}": {"events_per_s"},
    "memory access=seq block=1M op=write": {"bandwidth_mib_s"},
    "memory access=rnd block=64M op=write": {"bandwidth_mib_s"},
    **{f"fio {rw} bs=4k qd=1 target={t}": {"iops", "latency_p50_s", "latency_p99_s"}
       for rw in ("randread", "randwrite") for t in ("root", "volume")},
    **{f"fio {rw} bs=1M target={t}": {"bandwidth_mib_s"}
       for rw in ("read", "write") for t in ("root", "volume")},
    "iperf3 dir=host-to-instance": {"throughput_mbit_s"},
    "iperf3 dir=instance-to-host": {"throughput_mbit_s"},
    "sockperf tcp ping-pong": {"rtt_p50_s", "rtt_p99_s"},
    "redis op=SET clients=4": {"ops_per_s", "latency_p50_s", "latency_p99_s"},
    "redis op=GET clients=4": {"ops_per_s", "latency_p50_s", "latency_p99_s"},
}


@pytest.fixture(scope="module")
def state() -> Iterator[Path]:
    """A private state dir QEMU's user can traverse, with the workloads image in it."""
    path = Path(tempfile.mkdtemp(prefix="cvbench-wl"))
    path.chmod(0o755)
    previous = os.environ.get("CVBENCH_STATE_DIR")
    os.environ["CVBENCH_STATE_DIR"] = str(path)
    try:
        images.build()
        workloads.build()
        yield path
    finally:
        vm_sweep.sweep()
        if previous is None:
            os.environ.pop("CVBENCH_STATE_DIR", None)
        else:
            os.environ["CVBENCH_STATE_DIR"] = previous
        shutil.rmtree(path, ignore_errors=True)


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


@pytest.mark.timeout(900)
def test_every_figure_on_every_backend(state, tmp_path) -> None:
    before = links()
    text = SUITE.format(backends=json.dumps(list(BACKENDS)))
    run_dir = runner.run_suite(scenario.loads(text, tmp_path / "w.toml"), tmp_path / "results",
                               quiet=True)
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata.get("failures") is None, metadata["failures"]
    assert metadata["status"] == "complete"
    samples = pd.read_csv(run_dir / "samples.csv", keep_default_na=False)
    for backend in BACKENDS:
        mine = samples[samples.backend == backend]
        found = {variant: set(group.metric) for variant, group in mine.groupby("variant")}
        assert found == EXPECTED, backend
        assert (mine.value > 0).all(), backend
        assert all(UNITS[row.metric] == row.unit for row in mine.itertuples()), backend
        assert (run_dir / "raw" / "workloads" / backend / "rep0-cpu-1.txt").is_file()
    vms = samples[samples.backend.isin(["qemu", "libvirt"])]
    assert set(vms.network) == {"bridge"} and set(vms.accel) <= {"tcg", "kvm"}
    assert links() == before  # taps, veths and the bridge are gone
    assert not any((state / "workloads").iterdir())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["qemu", "libvirt"])
def test_a_vm_that_cannot_mount_its_disk_says_so(state, tmp_path, name) -> None:
    image = images.resolve("default")
    broken = tmp_path / "empty.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(broken), "64M"], check=True)
    broken.chmod(0o644)
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    backend = LibvirtBackend() if name == "libvirt" else QemuBackend()
    backend.prepare(image)
    backend.artifacts._bases[(image.digest, None)] = broken  # a disk without a filesystem
    instance = backend.start(InstanceSpec(name=f"cvbench-wl-nodisk-{name}", image=image,
                                          disk=True, guest_memory_mib=128))
    started = time.monotonic()
    try:
        with pytest.raises(NotReady, match="boot failed; last console line: 'cvbench-boot: "
                           "cannot mount /dev/vda"):
            backend.wait_ready(instance, 120)
        assert time.monotonic() - started < 60  # at once, not at the timeout
    finally:
        backend.stop(instance)
        backend.remove(instance)
        backend.cleanup()
