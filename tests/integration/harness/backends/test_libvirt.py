"""A real VM through libvirtd: boot to READY under TCG/KVM, measure memory, destroy."""

from __future__ import annotations

import os
from pathlib import Path

import libvirt
import psutil
import pytest
from vm_env import private_vm_state

from harness.backends.base import InstanceSpec
from harness.backends.libvirt import LibvirtBackend
from vm import hypervisor

pytestmark = [pytest.mark.root, pytest.mark.vm,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root and libvirtd")]


@pytest.fixture(scope="module")
def vm_env():
    with private_vm_state("vt") as env:
        yield env


def _cpu_has_virt() -> bool:
    flags = Path("/proc/cpuinfo").read_text().split()
    return "vmx" in flags or "svm" in flags


@pytest.mark.timeout(180)
def test_boot_to_ready_measure_and_destroy(vm_env) -> None:
    image, prefix = vm_env
    backend = LibvirtBackend()
    try:
        backend.prepare(image)
        facts = backend.describe()
        assert facts["accel"] in ("kvm", "tcg") and facts["accel_reason"]
        if not _cpu_has_virt():
            assert facts["accel"] == "tcg"
        assert facts["libvirt_version"] and facts["qemu_version"]
        name = f"{prefix}boot"
        instance = backend.start(InstanceSpec(name=name, image=image, guest_memory_mib=128))
        (pid,) = instance.pids
        assert psutil.Process(pid).name().startswith("qemu-system")
        backend.wait_ready(instance, timeout=120)
        assert instance.handle.console is None  # no descriptor kept once READY
        assert not (hypervisor.vms_dir() / name / "console.sock").exists()

        sample = backend.memory(instance)
        assert 0 < sample.guest_ram <= 128 << 20
        assert sample.vmm_overhead > 0
        assert sample.pss == sample.guest_ram + sample.vmm_overhead
        assert sample.uss <= sample.pss <= sample.rss

        backend.stop(instance)

        backend.remove(instance)
        conn = hypervisor.connect()
        try:
            with pytest.raises(libvirt.libvirtError):
                conn.lookupByName(name)
        finally:
            conn.close()
        assert not (hypervisor.vms_dir() / name).exists()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    finally:
        backend.cleanup()
