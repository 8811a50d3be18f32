"""The ``qemu`` backend (bare QEMU, the VM floor): boot to READY, memory, stop, and the sweep
after the harness was SIGKILLed."""

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

from harness.backends.base import InstanceSpec, NotReady
from harness.backends.qemu import QemuBackend
from vm import bare_qemu, hypervisor
from vm import sweep as vm_sweep

pytestmark = [pytest.mark.root, pytest.mark.vm]
REPO = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="module")
def vm_env():
    with private_vm_state("qt") as env:
        yield env


@pytest.mark.timeout(180)
def test_boot_to_ready_measure_and_stop(vm_env) -> None:
    image, prefix = vm_env
    backend = QemuBackend()
    backend.prepare(image)
    instance = backend.start(InstanceSpec(name=f"{prefix}a", image=image, guest_memory_mib=96))
    try:
        pid = instance.pids[0]
        argv = psutil.Process(pid).cmdline()
        assert f"guest={prefix}a,debug-threads=on" in argv and "-sandbox" in argv
        backend.wait_ready(instance, 120)
        assert instance.handle.console is None  # no descriptor held once READY
        sample = backend.memory(instance)
        assert sample.pss and sample.guest_ram and sample.vmm_overhead
        assert sample.guest_ram <= 96 << 20
        assert vm_sweep.sweep(prefix=prefix) == []  # a live owner's VM is left alone
    finally:
        backend.stop(instance)
        backend.remove(instance)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert not (hypervisor.vms_dir() / f"{prefix}a").exists()
    assert backend.describe()["guest"] == {"machine": "pc", "tb_cache_mib": None,
                                           "balloon": False, "cmdline_extra": "", "acpi": False}
    backend.cleanup()


@pytest.mark.timeout(60)
def test_a_guest_that_never_boots_is_not_ready(vm_env, tmp_path, monkeypatch) -> None:
    image, prefix = vm_env
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"not a kernel")
    monkeypatch.setenv("CVBENCH_GUEST_KERNEL", str(kernel))
    backend = QemuBackend()
    instance = backend.start(InstanceSpec(name=f"{prefix}bad", image=image))
    try:
        with pytest.raises(NotReady):
            backend.wait_ready(instance, 5)
    finally:
        backend.stop(instance)
        backend.remove(instance)


HARNESS = """
import sys, time
from imagestore import image
from harness.backends.base import InstanceSpec
from harness.backends.qemu import QemuBackend
img = image.resolve()
backend = QemuBackend()
instance = backend.start(InstanceSpec(name=sys.argv[1] + "doomed", image=img))
print(instance.pids[0], flush=True)
time.sleep(600)
"""


@pytest.mark.timeout(60)
def test_qemu_dies_with_a_killed_harness_and_sweep_removes_its_files(vm_env) -> None:
    image, prefix = vm_env
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, prefix], cwd=REPO,
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    line = harness.stdout.readline()
    assert line, "the harness died before starting its VM"
    pid = int(line)
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


@pytest.mark.timeout(60)
def test_sweep_kills_a_bare_qemu_whose_owner_is_dead(vm_env) -> None:
    """Should a QEMU outlive its owner (no parent-death signal), the sweep kills it."""
    image, prefix = vm_env
    backend = QemuBackend()
    instance = backend.start(InstanceSpec(name=f"{prefix}orphan", image=image))
    vm = instance.handle
    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = vm.directory / bare_qemu.OWNER_LINK
    owner.unlink()
    owner.symlink_to(f"{dead.pid}:1")
    deadline = time.monotonic() + 10
    while not (vm.directory / bare_qemu.PID_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    done = vm_sweep.sweep(prefix=prefix)
    assert f"killed bare QEMU {prefix}orphan (pid {vm.pid})" in done
    assert vm.process.wait(10) == -signal.SIGKILL
    assert not vm.directory.exists()
    backend.live.clear()
