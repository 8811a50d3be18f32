"""The qemu and microvm backends before anything starts: the machine type checked against the
host's QEMU (one line), what each describes, and which options microvm fixes itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_qemu import fake_qemu

from harness import backends
from harness.backends.base import BackendError, InstanceSpec
from harness.backends.qemu import MicrovmBackend, QemuBackend
from imagestore.image import Image

IMAGE = Image("default", "0" * 64, Path("/nonexistent/rootfs"))


def test_a_qemu_without_microvm_is_refused_in_one_line(tmp_path) -> None:
    backend = MicrovmBackend(binary=str(fake_qemu(tmp_path)))
    with pytest.raises(BackendError) as error:
        backend.prepare(IMAGE)
    message = str(error.value)
    assert "\n" not in message and "microvm" in message and str(tmp_path) in message
    assert backend.live == {}


def test_the_machine_type_of_qemu_is_checked_too(tmp_path) -> None:
    with pytest.raises(BackendError, match="no 'q35' machine"):
        QemuBackend(machine="q35", binary=str(fake_qemu(tmp_path, ("pc",)))).prepare(IMAGE)


def test_microvm_describes_its_own_machine_with_acpi() -> None:
    facts = MicrovmBackend().describe()
    assert facts["own_machine"] is True
    assert facts["guest"]["machine"] == "microvm" and facts["guest"]["acpi"] is True
    assert "-machine microvm" in facts["method"]["variants"]["cold"]["inside_clock"]
    assert "own_machine" not in QemuBackend().describe()


def test_microvm_takes_no_machine_or_acpi_option() -> None:
    with pytest.raises(BackendError, match="machine"):
        backends.create("microvm", machine="pc")
    with pytest.raises(BackendError, match="acpi"):
        backends.create("microvm", acpi=False)


def test_a_microvm_guest_has_no_pci_and_its_acpi_on_the_command_line() -> None:
    spec = InstanceSpec(name="cvbench-unit-m", image=IMAGE, disk=True)
    domain = MicrovmBackend().guest.domain(spec, "tcg", Path("/x/k"), Path("/x/i"))
    assert domain.machine == "microvm" and domain.virtio_transport == "mmio"
    words = domain.cmdline.split()
    assert "pci=off" in words and "acpi=off" not in words
    pc = QemuBackend().guest.domain(spec, "tcg", Path("/x/k"), Path("/x/i"))
    assert "pci=off" not in pc.cmdline.split() and "acpi=off" in pc.cmdline.split()


def test_a_tcg_microvm_guest_is_told_the_tsc_rate(monkeypatch) -> None:
    from harness.backends import guests

    monkeypatch.setattr(guests, "host_tsc_khz", lambda: 2596140)
    spec = InstanceSpec(name="cvbench-unit-t", image=IMAGE)
    microvm = MicrovmBackend(cmdline_extra="loglevel=7").guest
    words = microvm.domain(spec, "tcg", Path("/x/k"), Path("/x/i")).cmdline.split()
    assert words[-3:] == ["tsc_early_khz=2596140", "tsc=reliable", "loglevel=7"]
    assert "tsc_early_khz" not in microvm.domain(spec, "kvm", Path("/x/k"), Path("/x/i")).cmdline
    assert "tsc_early_khz" not in QemuBackend().guest.domain(spec, "tcg", Path("/x/k"),
                                                             Path("/x/i")).cmdline
    assert MicrovmBackend(accel="tcg").describe()["machine_cmdline"] == (
        "tsc_early_khz=2596140 tsc=reliable")
    monkeypatch.setattr(guests, "host_tsc_khz", lambda: None)
    assert "tsc_early_khz" not in microvm.domain(spec, "tcg", Path("/x/k"), Path("/x/i")).cmdline


def test_every_vm_backend_runs_an_imported_images_workdir_and_user() -> None:
    from harness.backends import launch as launches
    from harness.backends.libvirt import LibvirtBackend

    imported = launches.Launch(entrypoint=("/bin/sh",), workdir="/work", uid=1000, gid=1000)
    for backend in (QemuBackend, MicrovmBackend, LibvirtBackend):
        assert backend.launch_fields == launches.FIELDS
        assert launches.refusal(backend.name, backend, imported) is None
