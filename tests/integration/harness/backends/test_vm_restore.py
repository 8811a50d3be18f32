"""The ``restore`` variant of the VM backends under TCG: a snapshot made once before the
clock, restores answered READY by the restored guest, the state file left as saved, a
corrupt state file failing that restore in one line, and the scenario-level refusals."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from vm_env import private_vm_state

from harness.backends.base import RESTORE, BackendError, InstanceSpec
from harness.backends.libvirt import LibvirtBackend
from harness.backends.qemu import MicrovmBackend, QemuBackend
from vm import hypervisor
from vm import sweep as vm_sweep
from vm.bare_qemu import BareVM
from vm.machine import VirtualMachine

pytestmark = [pytest.mark.root, pytest.mark.vm]
REPO = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="module")
def vm_env():
    with private_vm_state("rs") as env:
        yield env


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _restore_to_ready(backend, image, name: str, **options):
    """One restore, create (before the clock) then resume, to READY; the instance."""
    instance = backend.create(InstanceSpec(name=name, image=image, guest_memory_mib=128,
                                           **options), RESTORE)
    assert instance.variant == RESTORE and instance.pids == []  # nothing runs yet
    backend.resume(instance)
    backend.wait_ready(instance, 60)
    return instance


def _corrupt(path: Path) -> None:
    """Overwrite 4 KiB in the middle of the state file (as a damaged disk would)."""
    path.chmod(0o644)
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        handle.write(b"\xa5" * 4096)


@pytest.mark.timeout(300)
def test_qemu_restores_answer_ready_and_leave_the_snapshot_as_saved(vm_env) -> None:
    image, prefix = vm_env
    backend = QemuBackend()
    backend.prepare(image)
    try:
        first = _restore_to_ready(backend, image, f"{prefix}q1")
        (shot,) = backend.snapshots.made.values()
        assert stat.S_IMODE(shot.path.stat().st_mode) == 0o444
        saved = _sha256(shot.path)
        assert saved == shot.sha256
        vm = first.handle
        assert isinstance(vm, BareVM) and vm.console is None  # READY seen, console closed
        argv = psutil.Process(first.pids[0]).cmdline()
        assert argv[argv.index("-incoming") + 1] == "defer"
        assert "rdinit=/cvbench-restore" in argv[argv.index("-append") + 1]
        assert backend.memory(first).guest_ram > 0
        backend.stop(first)
        backend.remove(first)
        assert not psutil.pid_exists(first.pids[0]) or \
            psutil.Process(first.pids[0]).status() == psutil.STATUS_ZOMBIE

        second = _restore_to_ready(backend, image, f"{prefix}q2")  # the same snapshot again
        assert len(backend.snapshots.made) == 1
        backend.stop(second)
        backend.remove(second)
        assert _sha256(shot.path) == saved  # restores never write the state file

        method = backend.describe()["method"]["variants"]["restore"]
        assert "not dropped" in method["inside_clock"]

        _corrupt(shot.path)
        bad = backend.create(InstanceSpec(name=f"{prefix}q3", image=image), RESTORE)
        with pytest.raises(BackendError) as failure:
            backend.resume(bad)
        message = str(failure.value)
        assert "\n" not in message and f"restore of {shot.path} failed" in message
        backend.stop(bad)
        backend.remove(bad)
        assert not (hypervisor.vms_dir() / f"{prefix}q3").exists()
    finally:
        directories = [shot.path.parent for shot in backend.snapshots.made.values()]
        backend.cleanup()
    assert directories and not any(path.exists() for path in directories)


def _icmp_checksum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def _answers_ping(address: str, timeout: float = 5.0) -> bool:
    """An ICMP echo from the host to ``address`` on cvbench0 (the guest kernel answers it:
    nothing of userspace needed), answered within ``timeout``."""
    ident = os.getpid() & 0xFFFF
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.settimeout(0.5)
        deadline = time.monotonic() + timeout
        sequence = 0
        while time.monotonic() < deadline:
            sequence += 1
            header = struct.pack("!BBHHH", 8, 0, 0, ident, sequence)
            payload = b"cvbench-restore"
            packet = struct.pack("!BBHHH", 8, 0, _icmp_checksum(header + payload), ident,
                                 sequence) + payload
            sock.sendto(packet, (address, 0))
            try:
                while True:
                    data, (source, _) = sock.recvfrom(2048)
                    icmp = data[(data[0] & 0x0F) * 4:]
                    if source == address and icmp[0] == 0 and \
                            struct.unpack("!H", icmp[4:6])[0] == ident:
                        return True
            except TimeoutError:
                continue
    return False


@pytest.mark.timeout(400)
def test_a_restored_guest_answers_on_its_console_and_its_network(vm_env) -> None:
    image, prefix = vm_env
    backend = QemuBackend()
    backend.prepare(image)
    try:
        spec = InstanceSpec(name=f"{prefix}n1", image=image, guest_memory_mib=128,
                            network="bridge", disk=True)
        first = _restore_to_ready(backend, image, spec.name, network="bridge", disk=True)
        (shot,) = backend.snapshots.made.values()
        (held,) = backend.snapshots.held
        address = held.address
        assert address is not None
        (saved_disk,) = [d.path for d in shot.domain.disks if d.path.parent == shot.path.parent]
        disk_hash = _sha256(saved_disk)
        (own_disk,) = [d.path for d in first.handle.spec.disks]
        assert own_disk.parent == hypervisor.vms_dir() / spec.name  # its own copy
        assert _answers_ping(address)  # the restored guest's network, on the saved address
        argv = psutil.Process(first.pids[0]).cmdline()
        mac = shot.domain.nics[0].mac
        assert any(f"mac={mac}" in arg for arg in argv)
        backend.stop(first)
        backend.remove(first)
        assert not _answers_ping(address, timeout=1.0)  # gone with it

        second = _restore_to_ready(backend, image, f"{prefix}n2", network="bridge", disk=True)
        assert _answers_ping(address)
        backend.stop(second)
        backend.remove(second)
        assert _sha256(saved_disk) == disk_hash  # restores write their own copies only
        assert not (hypervisor.vms_dir() / f"{prefix}n2").exists()
    finally:
        backend.cleanup()


@pytest.mark.timeout(300)
def test_a_microvm_restores_as_a_microvm_and_answers_ready(vm_env) -> None:
    image, prefix = vm_env
    backend = MicrovmBackend()
    backend.prepare(image)
    try:
        first = _restore_to_ready(backend, image, f"{prefix}m1")
        (shot,) = backend.snapshots.made.values()
        saved = _sha256(shot.path)
        argv = psutil.Process(first.pids[0]).cmdline()
        assert argv[argv.index("-machine") + 1].startswith("microvm")
        assert argv[argv.index("-incoming") + 1] == "defer"
        backend.stop(first)
        backend.remove(first)

        second = _restore_to_ready(backend, image, f"{prefix}m2")  # the same snapshot again
        assert len(backend.snapshots.made) == 1
        backend.stop(second)
        backend.remove(second)
        assert _sha256(shot.path) == saved  # restores never write the state file
        assert not (hypervisor.vms_dir() / f"{prefix}m2").exists()
    finally:
        directories = [shot.path.parent for shot in backend.snapshots.made.values()]
        backend.cleanup()
    assert directories and not any(path.exists() for path in directories)


@pytest.mark.timeout(300)
def test_a_mapped_snapshot_restores_from_its_ram_file_and_never_writes_it(vm_env) -> None:
    image, prefix = vm_env
    backend = QemuBackend(restore_ram="mapped")
    backend.prepare(image)
    try:
        first = _restore_to_ready(backend, image, f"{prefix}p1")
        (shot,) = backend.snapshots.made.values()
        assert shot.memory is not None and shot.memory.parent == shot.path.parent
        assert stat.S_IMODE(shot.memory.stat().st_mode) == 0o444
        assert shot.memory.stat().st_size == 128 << 20  # the whole RAM, in its own file
        assert shot.size < 4 << 20  # the state file: the devices only
        ram = _sha256(shot.memory)
        argv = psutil.Process(first.pids[0]).cmdline()
        assert f"mem-path={shot.memory},share=off" in argv[argv.index("-object") + 1]
        assert argv[argv.index("-incoming") + 1] == "defer"
        backend.stop(first)
        backend.remove(first)

        second = _restore_to_ready(backend, image, f"{prefix}p2")
        backend.stop(second)
        backend.remove(second)
        assert _sha256(shot.memory) == ram  # copy-on-write: the restores never wrote it
        assert _sha256(shot.path) == shot.sha256
        method = backend.describe()["method"]["variants"]["restore"]
        assert "mapped private" in method["inside_clock"]
        assert backend.describe()["restore_ram"] == "mapped"
    finally:
        directories = [shot.path.parent for shot in backend.snapshots.made.values()]
        backend.cleanup()
    assert directories and not any(path.exists() for path in directories)


def _resident_bytes(path: Path) -> int:
    """How much of ``path`` the host's page cache holds (util-linux's fincore)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip())


@pytest.mark.timeout(300)
def test_a_dropped_cache_restore_starts_with_its_files_out_of_the_page_cache(vm_env) -> None:
    image, prefix = vm_env
    backend = QemuBackend(restore_ram="mapped", restore_cache="dropped")
    backend.prepare(image)
    try:
        first = _restore_to_ready(backend, image, f"{prefix}d1")
        (shot,) = backend.snapshots.made.values()
        assert shot.memory is not None
        assert _resident_bytes(shot.memory) > 0  # the restored guest read its pages
        backend.stop(first)
        backend.remove(first)

        second = backend.create(InstanceSpec(name=f"{prefix}d2", image=image,
                                             guest_memory_mib=128), RESTORE)
        assert _resident_bytes(shot.path) == 0  # staged: both files out of the cache
        assert _resident_bytes(shot.memory) == 0
        backend.resume(second)
        backend.wait_ready(second, 60)
        backend.stop(second)
        backend.remove(second)
        method = backend.describe()["method"]["variants"]["restore"]
        assert "dropped from the host's page cache" in method["inside_clock"]
        assert "not dropped" not in method["inside_clock"]
    finally:
        backend.cleanup()


def test_an_unknown_restore_ram_is_one_line() -> None:
    with pytest.raises(BackendError) as failure:
        QemuBackend(restore_ram="lazy")
    assert str(failure.value) == "qemu: restore_ram must be one of stream, mapped, not 'lazy'"


@pytest.mark.timeout(300)
def test_libvirt_restores_answer_ready_and_leave_the_snapshot_as_saved(vm_env) -> None:
    image, prefix = vm_env
    backend = LibvirtBackend()
    backend.prepare(image)
    try:
        first = _restore_to_ready(backend, image, f"{prefix}l1")
        (shot,) = backend.snapshots.made.values()
        assert stat.S_IMODE(shot.path.stat().st_mode) == 0o444
        saved = _sha256(shot.path)
        vm = first.handle
        assert isinstance(vm, VirtualMachine) and vm.console is None
        assert vm.domain.isActive() and vm.domain.name() == shot.domain.name
        assert psutil.Process(first.pids[0]).name().startswith("qemu-system")
        backend.stop(first)
        backend.remove(first)

        second = _restore_to_ready(backend, image, f"{prefix}l2")
        backend.stop(second)
        backend.remove(second)
        assert _sha256(shot.path) == saved

        _corrupt(shot.path)
        bad = backend.create(InstanceSpec(name=f"{prefix}l3", image=image), RESTORE)
        with pytest.raises(BackendError) as failure:
            backend.resume(bad)
        message = str(failure.value)
        assert "\n" not in message and f"restore of {shot.path} failed" in message
        backend.stop(bad)
        backend.remove(bad)
        conn = hypervisor.connect()
        try:
            assert shot.domain.name not in [d.name() for d in conn.listAllDomains()]
        finally:
            conn.close()
    finally:
        backend.cleanup()


RESTORE_SCENARIO = """
[suite]
name = "r"
backends = [{backends}]

[[scenario]]
kind = "startup"
repetitions = 1
warmup = 0
variants = ["cold", "restore"]
{extra}
"""


@pytest.mark.parametrize(("backends", "extra", "expected"), [
    ('"ours"', "", "backend 'ours' cannot restore: criu "),
    ('"process"', "", "backend 'process' cannot restore: criu "),
    ('"libvirt"', 'disk = true\nnetwork = "bridge"',
     "backend 'libvirt' cannot restore: restore takes network = \"none\" and disk = false"),
])
def test_a_restore_the_backend_cannot_make_is_one_line_and_exit_2(
        vm_env, tmp_path, backends, extra, expected) -> None:
    scenario = tmp_path / "r.toml"
    scenario.write_text(RESTORE_SCENARIO.format(backends=backends, extra=extra))
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(scenario),
                             "--results-dir", str(tmp_path / "results")],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "results").exists()  # refused before the run began


KILLED_HARNESS = """
import sys, time
from imagestore import image
from harness.backends.base import RESTORE, InstanceSpec
from harness.backends.libvirt import LibvirtBackend
from harness.backends.qemu import MicrovmBackend, QemuBackend
img = image.resolve()
for backend in (QemuBackend(), LibvirtBackend()):
    backend.create(InstanceSpec(name=sys.argv[1] + backend.name, image=img), RESTORE)
print("staged", flush=True)
time.sleep(600)
"""


@pytest.mark.timeout(300)
def test_sweep_removes_the_snapshots_a_killed_harness_left(vm_env) -> None:
    image, prefix = vm_env
    harness = subprocess.Popen([sys.executable, "-c", KILLED_HARNESS, prefix], cwd=REPO,
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    assert harness.stdout.readline() == "staged\n", "the harness died before its snapshots"
    snapshots = [hypervisor.vms_dir() / f"{prefix}{name}-snapshot" for name in ("qemu", "libvirt")]
    for directory in snapshots:
        assert (directory / "guest.state").is_file()
    harness.kill()
    harness.wait()
    done = vm_sweep.sweep(prefix=prefix)
    for directory in snapshots:
        assert f"removed {directory}" in done
        assert not directory.exists()
