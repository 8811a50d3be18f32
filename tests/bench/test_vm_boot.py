"""VM start → READY through libvirt against the same boot with a bare QEMU command.

Run with ``pytest tests/bench/test_vm_boot.py --benchmark-enable``. As a script,
``python tests/bench/test_vm_boot.py [N]`` boots both interleaved (libvirt, bare, libvirt,
...) N times each after one warm-up pair and prints the medians, their ratio and the bare
QEMU command.

Both boot the same kernel, initramfs, kernel command line, machine and device set
(:mod:`vm.domain` / :func:`vm.bare_qemu.qemu_argv`). The libvirt figure is what the runner
measures: ``LibvirtBackend.start`` (domain XML, ``createXML``) plus ``wait_ready``; the bare
figure is exec → READY on the serial socket. Stops are not timed (libvirt's destroy waits for
the QEMU pid to be reaped, which on hosts whose PID 1 reaps slowly takes up to ~2 s).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests"):  # also run as a script: python tests/bench/...
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from vm_env import private_vm_state  # noqa: E402

from harness.backends.base import InstanceSpec  # noqa: E402
from harness.backends.libvirt import LibvirtBackend  # noqa: E402
from vm import bare_qemu, guest  # noqa: E402
from vm.domain import DomainSpec, kernel_cmdline  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.vm, pytest.mark.timeout(600)]

MEMORY_MIB = 128


def vm_state():
    return private_vm_state("vb")


class LibvirtBoots:
    """start → READY through the backend; the previous VM is destroyed untimed."""

    def __init__(self, image, prefix: str) -> None:
        self.image, self.prefix = image, prefix
        self.backend = LibvirtBackend()
        self.backend.prepare(image)
        self.count = 0
        self.instance = None

    def boot(self) -> float:
        self.count += 1
        spec = InstanceSpec(name=f"{self.prefix}lv{self.count}", image=self.image,
                            guest_memory_mib=MEMORY_MIB)
        started = time.perf_counter()
        self.instance = self.backend.start(spec)
        self.backend.wait_ready(self.instance, 120)
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.instance is not None:
            self.backend.stop(self.instance)
            self.backend.remove(self.instance)
            self.instance = None

    def close(self) -> None:
        self.stop()
        self.backend.cleanup()


class BareBoots:
    """exec → READY of the equivalent bare QEMU command, then kill."""

    def __init__(self, image, prefix: str) -> None:
        self.kernel, self.initrd = guest.kernel_path(), guest.initramfs_for(image)
        self.prefix = prefix
        self.count = 0
        self.argv: list[str] = []

    def boot(self) -> float:
        self.count += 1
        spec = DomainSpec(name=f"{self.prefix}bq{self.count}", kernel=self.kernel,
                          initrd=self.initrd, memory_mib=MEMORY_MIB, cmdline=kernel_cmdline())
        result = bare_qemu.boot(spec, timeout=120)
        self.argv = result.argv
        return result.ready_s


def compare(n: int) -> dict[str, object]:
    """Interleaved libvirt/bare boots after a warm-up pair; medians in seconds."""
    times: dict[str, list[float]] = {"libvirt": [], "bare_qemu": []}
    with vm_state() as (image, prefix):
        libvirt_boots, bare_boots = LibvirtBoots(image, prefix), BareBoots(image, prefix)
        try:
            for i in range(n + 1):
                lv = libvirt_boots.boot()
                libvirt_boots.stop()
                bq = bare_boots.boot()
                if i:
                    times["libvirt"].append(lv)
                    times["bare_qemu"].append(bq)
        finally:
            libvirt_boots.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"medians": medians, "times": times,
            "ratio": medians["libvirt"] / medians["bare_qemu"], "argv": bare_boots.argv}


@pytest.fixture(scope="module")
def vm_env():
    with vm_state() as env:
        yield env


def test_libvirt_start_to_ready(benchmark, vm_env) -> None:
    boots = LibvirtBoots(*vm_env)
    try:
        benchmark.pedantic(boots.boot, setup=boots.stop, rounds=10, iterations=1,
                           warmup_rounds=1)
    finally:
        boots.close()
    assert boots.count >= 1


def test_bare_qemu_exec_to_ready(benchmark, vm_env) -> None:
    boots = BareBoots(*vm_env)
    benchmark.pedantic(boots.boot, rounds=10, iterations=1, warmup_rounds=1)
    benchmark.extra_info["argv"] = " ".join(boots.argv)
    assert boots.argv[0].startswith("qemu-system")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    result = compare(n)
    for name, values in result["times"].items():
        print(f"{name:9s} start->READY p50 {result['medians'][name]:.3f} s   "
              f"(n={n}: {' '.join(f'{v:.2f}' for v in values)})")
    print(f"ratio libvirt / bare QEMU = {result['ratio']:.3f}")
    print("bare QEMU command: " + " ".join(result["argv"]))


if __name__ == "__main__":
    main()
