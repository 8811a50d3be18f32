"""sweep() and the libvirt backend's plumbing against libvirt's test:///default driver."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import libvirt
import pytest

from harness.backends.base import Backend, BackendError, InstanceSpec, NotReady
from harness.backends.libvirt import LibvirtBackend
from hostkit.procs import proc_start_time
from vm import hypervisor
from vm import sweep as vm_sweep
from vm.domain import DomainSpec, Owner, render

TEST_URI = "test:///default"


@pytest.fixture
def prefix() -> str:
    return f"cvbench-test-sweep-{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def private_state(monkeypatch):
    """A short private state dir (console socket paths must fit AF_UNIX's 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="cvbench-t"))
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_sweep_destroys_prefixed_domains_and_their_files(private_state, prefix) -> None:
    conn = libvirt.open(TEST_URI)  # the default test driver is shared within the process
    try:
        ours = [f"{prefix}{i}" for i in range(2)]
        for name in ours:
            conn.createXML(render(DomainSpec(name=name, kernel=Path("/k"), initrd=Path("/i"))))
            (hypervisor.vm_dir(name) / "console.sock").write_text("")
        stranger = conn.createXML(render(DomainSpec(name="cvbench-other-x", kernel=Path("/k"),
                                                    initrd=Path("/i"))))
        orphan_dir = hypervisor.vm_dir(f"{prefix}orphan")
        done = vm_sweep.sweep(TEST_URI, prefix=prefix)
        assert sorted(d for d in done if d.startswith("destroyed")) == [
            f"destroyed domain {name}" for name in ours]
        assert not orphan_dir.exists()
        assert not any(p.name.startswith(prefix) for p in hypervisor.vms_dir().iterdir())
        assert stranger.isActive()  # other prefixes are left alone
        stranger.destroy()
        assert vm_sweep.sweep(TEST_URI, prefix=prefix) == []
    finally:
        conn.close()


def _dead_owner() -> Owner:
    """The owner identity of a child process that has finished (and been reaped)."""
    child = subprocess.Popen(["sleep", "60"])
    start = proc_start_time(child.pid)
    child.kill()
    child.wait()
    assert start is not None and proc_start_time(child.pid) is None
    return Owner(child.pid, start)


def test_sweep_keeps_domains_of_live_owners(private_state, prefix) -> None:
    conn = libvirt.open(TEST_URI)
    try:
        owners = {"live": Owner.current(), "dead": _dead_owner(), "none": None,
                  "reused": Owner(os.getpid(), Owner.current().start + 1)}  # pid reused
        assert Owner.current() == Owner(os.getpid(), proc_start_time(os.getpid()))
        domains = {}
        for label, owner in owners.items():
            name = f"{prefix}{label}"
            domains[label] = conn.createXML(render(DomainSpec(
                name=name, kernel=Path("/k"), initrd=Path("/i"), owner=owner)))
            (hypervisor.vm_dir(name) / "console.sock").write_text("")
            assert hypervisor.domain_owner(domains[label]) == owner
        done = vm_sweep.sweep(TEST_URI, prefix=prefix)
        assert sorted(d for d in done if d.startswith("destroyed")) == [
            f"destroyed domain {prefix}{label}" for label in ("dead", "none", "reused")]
        assert domains["live"].isActive()
        assert (hypervisor.vms_dir() / f"{prefix}live" / "console.sock").exists()
        assert sorted(p.name for p in hypervisor.vms_dir().iterdir()) == [f"{prefix}live"]
        assert vm_sweep.sweep(TEST_URI, prefix=prefix) == []  # still kept
        domains["live"].destroy()
        assert vm_sweep.sweep(TEST_URI, prefix=prefix) == [
            f"removed {hypervisor.vms_dir() / (prefix + 'live')}"]
    finally:
        for domain in conn.listAllDomains():
            if domain.name().startswith(prefix):
                domain.destroy()
        conn.close()


def test_sweep_without_daemon_says_so(private_state, prefix) -> None:
    hypervisor.vm_dir(f"{prefix}left")
    uri = f"qemu+unix:///system?socket={private_state}/no-such-socket"
    done = vm_sweep.sweep(uri, prefix=prefix)
    assert "unreachable" in done[0]
    assert f"removed {hypervisor.vms_dir() / (prefix + 'left')}" in done


def test_sweep_refuses_foreign_prefixes() -> None:
    with pytest.raises(ValueError):
        vm_sweep.sweep(TEST_URI, prefix="")


@pytest.mark.timeout(30)
def test_backend_start_stop_on_test_driver(private_state, prefix, built_image,
                                           monkeypatch, tmp_path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    monkeypatch.setenv("CVBENCH_GUEST_KERNEL", str(kernel))
    monkeypatch.setenv("CVBENCH_CACHE_DIR", str(tmp_path / "cache"))
    backend = LibvirtBackend(uri=TEST_URI, autodestroy=False)
    assert isinstance(backend, Backend)
    facts = backend.describe()
    assert facts["hypervisor"] == "qemu" and facts["uri"] == TEST_URI
    assert {"libvirt_version", "qemu_version", "accel", "accel_reason"} <= set(facts)
    backend.prepare(built_image)
    name = f"{prefix}vm"
    instance = backend.start(InstanceSpec(name=name, image=built_image, guest_memory_mib=96))
    try:
        assert (hypervisor.vms_dir() / name / "console.sock").exists()
        xml = instance.handle.domain.XMLDesc()
        assert "<memory unit='KiB'>98304</memory>" in xml and "initramfs" in xml
        assert hypervisor.domain_owner(instance.handle.domain) == Owner.current()
        assert vm_sweep.sweep(TEST_URI, prefix=prefix) == []  # our own VM is spared
        with pytest.raises(NotReady, match="no console connection"):
            backend.wait_ready(instance, 0.2)  # the test driver runs nothing
    finally:
        backend.stop(instance)
        backend.remove(instance)
    assert not (hypervisor.vms_dir() / name).exists()
    with pytest.raises(BackendError, match="instance names"):
        backend.start(InstanceSpec(name="other", image=built_image))
    backend.cleanup()


def test_uri_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("CVBENCH_LIBVIRT_URI", "qemu+ssh://elsewhere/system")
    assert LibvirtBackend().uri == "qemu+ssh://elsewhere/system"
    assert LibvirtBackend(uri=TEST_URI).uri == TEST_URI
    monkeypatch.delenv("CVBENCH_LIBVIRT_URI")
    assert LibvirtBackend().uri == "qemu:///system"
    assert not hypervisor.is_local("qemu+ssh://elsewhere/system")
    assert hypervisor.is_local("qemu:///system")


def test_vm_dir_refuses_a_state_dir_qemu_cannot_reach(tmp_path, monkeypatch) -> None:
    hidden = tmp_path / "hidden"
    (hidden / "state").mkdir(parents=True)
    hidden.chmod(0o700)
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(hidden / "state"))
    with pytest.raises(ValueError, match="cannot traverse .*hidden"):
        hypervisor.vm_dir("cvbench-x")
