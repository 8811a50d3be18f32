"""The bare QEMU command line on each machine type, and the probe of a QEMU's machine types."""

from __future__ import annotations

from pathlib import Path

from fake_qemu import fake_qemu

from vm import bare_qemu
from vm.domain import DiskSpec, DomainSpec, NicSpec

DEVICES = dict(
    kernel=Path("/x/vmlinuz"), initrd=Path("/x/boot.cpio"), console_socket=Path("/x/c.sock"),
    disks=(DiskSpec(Path("/x/disk.qcow2"), cache="none"),),
    nics=(NicSpec("cvbench0", "cvbench-tap", "52:54:00:12:34:56", fd=9),), balloon=True)


def _device_models(argv: list[str]) -> list[str]:
    return [argv[i + 1].split(",")[0] for i, word in enumerate(argv) if word == "-device"]


def test_microvm_puts_every_virtio_device_on_mmio_and_none_on_pci() -> None:
    argv = bare_qemu.qemu_argv(DomainSpec(name="cvbench-m", machine="microvm", **DEVICES))
    machine = argv[argv.index("-machine") + 1]
    assert machine.startswith("microvm,isa-serial=off,")
    assert _device_models(argv) == ["isa-serial", "virtio-blk-device", "virtio-net-device",
                                    "virtio-balloon-device"]
    assert not any("pci" in model for model in _device_models(argv))
    assert "pcie" not in machine  # microvm's PCIe host stays off


def test_pc_keeps_its_virtio_devices_on_pci() -> None:
    argv = bare_qemu.qemu_argv(DomainSpec(name="cvbench-p", **DEVICES))
    assert argv[argv.index("-machine") + 1].startswith("pc,usb=off,")
    assert _device_models(argv) == ["isa-serial", "virtio-blk-pci", "virtio-net-pci",
                                    "virtio-balloon-pci"]


def test_machine_types_are_what_qemu_lists(tmp_path) -> None:
    assert bare_qemu.machine_types(str(fake_qemu(tmp_path, ("pc", "microvm")))) == {
        "pc", "microvm"}
    (tmp_path / "other").mkdir()
    assert "microvm" not in bare_qemu.machine_types(str(fake_qemu(tmp_path / "other")))
    assert bare_qemu.machine_types(str(tmp_path / "no-such-qemu")) == frozenset()


def _memory_object(argv: list[str]) -> str:
    return argv[argv.index("-object") + 1]


def test_guest_ram_is_anonymous_unless_a_file_is_named() -> None:
    argv = bare_qemu.qemu_argv(DomainSpec(name="cvbench-r", memory_mib=128, **DEVICES))
    assert _memory_object(argv) == "memory-backend-ram,id=pc.ram,size=134217728"


def test_a_snapshot_maps_its_ram_file_shared_and_a_restore_private() -> None:
    ram = Path("/x/guest.ram")
    saving = bare_qemu.qemu_argv(DomainSpec(name="cvbench-s", memory_mib=128, memory_file=ram,
                                            memory_shared=True, **DEVICES))
    restoring = bare_qemu.qemu_argv(DomainSpec(name="cvbench-t", memory_mib=128,
                                               memory_file=ram, **DEVICES))
    assert _memory_object(saving) == ("memory-backend-file,id=pc.ram,size=134217728,"
                                      "mem-path=/x/guest.ram,share=on")
    assert _memory_object(restoring) == ("memory-backend-file,id=pc.ram,size=134217728,"
                                         "mem-path=/x/guest.ram,share=off")
    assert "memory-backend=pc.ram" in restoring[restoring.index("-machine") + 1]
