"""The ``microvm`` backend (bare QEMU on QEMU's microvm machine) under TCG: boot to READY with
no PCI device, cold and warm, from the image's initramfs and from its disk on virtio-mmio, and
the sweep after the harness was SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from vm_env import private_vm_state

from harness.backends.base import InstanceSpec
from harness.backends.qemu import MicrovmBackend
from vm import bare_qemu, hypervisor
from vm import sweep as vm_sweep

pytestmark = [pytest.mark.root, pytest.mark.vm]
REPO = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="module")
def vm_env():
    with private_vm_state("mv") as env:
        yield env


def _devices(argv: list[str]) -> list[str]:
    return [argv[i + 1].split(",")[0] for i, word in enumerate(argv) if word == "-device"]


@pytest.mark.timeout(180)
def test_boot_to_ready_on_microvm_with_no_pci_measure_and_stop(vm_env) -> None:
    image, prefix = vm_env
    backend = MicrovmBackend(accel="tcg")
    backend.prepare(image)
    instance = backend.start(InstanceSpec(name=f"{prefix}a", image=image, guest_memory_mib=96))
    try:
        pid = instance.pids[0]
        argv = psutil.Process(pid).cmdline()
        machine = argv[argv.index("-machine") + 1]
        assert machine.split(",")[0] == "microvm" and "pcie=on" not in machine
        assert argv[argv.index("-accel") + 1] == "tcg"
        assert _devices(argv) == ["isa-serial"]
        assert "-no-acpi" not in argv  # the guest finds its APIC through microvm's ACPI
        backend.wait_ready(instance, 120)
        assert instance.handle.console is None
        sample = backend.memory(instance)
        assert sample.pss and sample.guest_ram and sample.guest_ram <= 96 << 20
        assert vm_sweep.sweep(prefix=prefix) == []  # a live owner's VM is left alone
    finally:
        backend.stop(instance)
        backend.remove(instance)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert not (hypervisor.vms_dir() / f"{prefix}a").exists()
    backend.cleanup()


@pytest.mark.timeout(240)
def test_warm_and_disk_boots_reach_ready_on_virtio_mmio(vm_env) -> None:
    image, prefix = vm_env
    backend = MicrovmBackend(accel="tcg")
    backend.prepare(image)
    try:
        warm = backend.create(InstanceSpec(name=f"{prefix}w", image=image))
        assert warm.handle.paused and "-S" in warm.handle.argv
        backend.resume(warm)
        backend.wait_ready(warm, 120)
        backend.stop(warm)
        backend.remove(warm)
        disk = backend.start(InstanceSpec(name=f"{prefix}d", image=image, disk=True))
        argv = disk.handle.argv
        assert _devices(argv) == ["isa-serial", "virtio-blk-device"]
        backend.wait_ready(disk, 120)  # the boot init loaded virtio_mmio and mounted vda
        backend.stop(disk)
        backend.remove(disk)
    finally:
        backend.cleanup()
    assert not any(hypervisor.vms_dir().glob(f"{prefix}[wd]"))


@pytest.mark.timeout(180)
def test_a_bridged_guest_gets_its_address_on_virtio_mmio_net(vm_env) -> None:
    """The disk boot's init loads virtio_net on virtio-mmio, finds eth0 and addresses it (it
    prints a cvbench-boot: line and reboots otherwise, which wait_ready reports)."""
    image, prefix = vm_env
    backend = MicrovmBackend(accel="tcg")
    backend.prepare(image)
    try:
        instance = backend.start(InstanceSpec(name=f"{prefix}n", image=image, disk=True,
                                              network="bridge"))
        assert _devices(instance.handle.argv) == ["isa-serial", "virtio-blk-device",
                                                  "virtio-net-device"]
        assert "CVBENCH_IP=" in instance.handle.spec.cmdline
        backend.wait_ready(instance, 120)
        backend.stop(instance)
        backend.remove(instance)
    finally:
        backend.cleanup()
    assert not (hypervisor.vms_dir() / f"{prefix}n").exists()


HARNESS = """
import sys, time
from imagestore import image
from harness.backends.base import InstanceSpec
from harness.backends.qemu import MicrovmBackend
img = image.resolve()
backend = MicrovmBackend(accel="tcg")
instance = backend.start(InstanceSpec(name=sys.argv[1] + "doomed", image=img))
print(instance.pids[0], flush=True)
time.sleep(600)
"""


@pytest.mark.timeout(60)
def test_microvm_dies_with_a_killed_harness_and_sweep_removes_its_files(vm_env) -> None:
    image, prefix = vm_env
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, prefix], cwd=REPO,
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    line = harness.stdout.readline()
    assert line, "the harness died before starting its VM"
    pid = int(line)
    assert psutil.Process(pid).cmdline()[psutil.Process(pid).cmdline().index("-machine") + 1
                                         ].startswith("microvm,")
    directory = hypervisor.vms_dir() / f"{prefix}doomed"
    deadline = time.monotonic() + 10
    while not (directory / bare_qemu.PID_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(harness.pid, signal.SIGKILL)
    harness.wait()
    deadline = time.monotonic() + 10  # PR_SET_PDEATHSIG: QEMU is killed with its parent
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie":
        assert time.monotonic() < deadline, "QEMU outlived the harness"
        time.sleep(0.05)
    assert directory.exists()
    done = vm_sweep.sweep(prefix=prefix)
    assert f"removed {directory}" in done
    assert not directory.exists()
    assert vm_sweep.sweep(prefix=prefix) == []
