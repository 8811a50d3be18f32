"""The parts of a snapshot that need no QEMU: the guest made to be saved, and the copies of
its disk each restore gets before the clock."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vm import guest, hypervisor, snapshot
from vm.domain import DiskSpec, DomainSpec


@pytest.fixture
def private_state(monkeypatch) -> Iterator[Path]:
    """A state dir QEMU's user could reach (VM directories insist), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="cvbench-snaptest-"))
    root.chmod(0o755)
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(root / "state"))
    yield root
    shutil.rmtree(root)


def test_a_restorable_guest_boots_the_responder_first(tmp_path) -> None:
    initrd = tmp_path / "image.cpio"
    initrd.write_bytes(b"070701" + b"0" * 104)  # the content does not matter here
    domain = DomainSpec(name="cvbench-s", kernel=tmp_path / "vmlinuz", initrd=initrd,
                        cmdline="console=ttyS0 quiet")
    saved = snapshot.restorable(domain)
    assert saved.cmdline == f"console=ttyS0 quiet rdinit={guest.RESPONDER}"
    assert saved.initrd != initrd and saved.initrd.read_bytes().startswith(initrd.read_bytes())
    assert (saved.name, saved.kernel, saved.memory_mib) == ("cvbench-s", domain.kernel, 128)


def test_each_restore_gets_its_own_copy_of_the_saved_overlay(private_state) -> None:
    directory = snapshot.snapshot_dir("cvbench-s-snapshot")
    assert os.readlink(directory / "owner").startswith(f"{os.getpid()}:")
    overlay = directory / "disk.qcow2"
    overlay.write_bytes(b"saved overlay")
    overlay.chmod(0o444)
    volume = private_state / "volume.img"  # a disk outside the snapshot: shared, not copied
    volume.write_bytes(b"volume")
    state = directory / snapshot.STATE_FILE
    state.write_bytes(b"state")
    shot = snapshot.Snapshot(state, DomainSpec(
        name="cvbench-s-snapshot", kernel=Path("/k"), initrd=Path("/i"),
        disks=(DiskSpec(overlay, cache="none"), DiskSpec(volume, target="vdb", format="raw"))),
        sha256="-", size=5)
    first = snapshot.stage_disks(shot, "cvbench-r-1")
    second = snapshot.stage_disks(shot, "cvbench-r-2")
    for name, disks in (("cvbench-r-1", first), ("cvbench-r-2", second)):
        own = hypervisor.vms_dir() / name / "disk.qcow2"
        assert disks[0] == DiskSpec(own, cache="none")
        assert own.read_bytes() == b"saved overlay" and os.access(own, os.W_OK)
        assert disks[1].path == volume
    first[0].path.write_bytes(b"written by restore 1")
    assert overlay.read_bytes() == b"saved overlay"
    assert second[0].path.read_bytes() == b"saved overlay"
    diskless = snapshot.Snapshot(state, DomainSpec(name="cvbench-s-snapshot",
                                                   kernel=Path("/k"), initrd=Path("/i")), "-", 5)
    assert snapshot.stage_disks(diskless, "cvbench-r-3") == ()
    assert not (hypervisor.vms_dir() / "cvbench-r-3").exists()
