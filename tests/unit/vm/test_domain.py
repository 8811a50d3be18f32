"""DomainSpec rendering: golden XML files and libvirt's test:///default driver."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from vm.domain import OWNER_NS, DiskSpec, DomainSpec, Owner, kernel_cmdline, render
from vm.hypervisor import domain_owner

GOLDEN = Path(__file__).parent / "golden"
KERNEL = Path("/var/cache/cvbench/guest/vmlinuz")
INITRD = Path("/var/cache/cvbench/guest/initramfs/0123abcd-v1.cpio")

SPECS = {
    "domain_minimal": DomainSpec(name="cvbench-golden-minimal", kernel=KERNEL, initrd=INITRD,
                                 console_socket=Path("/var/lib/cvbench/vms/m/console.sock")),
    "domain_full": DomainSpec(
        name="cvbench-golden-full", kernel=KERNEL, initrd=INITRD, memory_mib=256, vcpus=2,
        cmdline=kernel_cmdline(pci=True, acpi=True, extra="loglevel=3"),
        disks=(DiskSpec(Path("/var/lib/cvbench/vms/f/disk.qcow2")),),
        console_socket=Path("/var/lib/cvbench/vms/f/console.sock"),
        tb_cache_mib=64, balloon=True, acpi=True, machine="q35",
    ),
    "domain_kvm_pty": DomainSpec(name="cvbench-golden-kvm", kernel=KERNEL, initrd=INITRD,
                                 accel="kvm", tb_cache_mib=64, memory_mib=96),
    "domain_owner": DomainSpec(name="cvbench-golden-owner", kernel=KERNEL, initrd=INITRD,
                               owner=Owner(pid=4242, start=123456)),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_render_matches_golden(name: str) -> None:
    """Set CVBENCH_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change."""
    path = GOLDEN / f"{name}.xml"
    rendered = render(SPECS[name])
    if os.environ.get("CVBENCH_UPDATE_GOLDEN"):
        path.write_text(rendered)
    assert rendered == path.read_text()


@pytest.fixture
def test_conn():
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_libvirt_accepts_and_keeps_every_setting(test_conn, name: str) -> None:
    spec = SPECS[name]
    domain = test_conn.createXML(render(spec), 0)
    try:
        parsed = ET.fromstring(domain.XMLDesc())
        assert parsed.get("type") == ("kvm" if spec.accel == "kvm" else "qemu")
        assert parsed.findtext("name") == spec.name
        assert int(parsed.findtext("memory")) == spec.memory_mib * 1024
        assert int(parsed.findtext("vcpu")) == spec.vcpus
        assert parsed.find("os/type").get("machine") == spec.machine
        assert parsed.findtext("os/kernel") == str(spec.kernel)
        assert parsed.findtext("os/initrd") == str(spec.initrd)
        assert parsed.findtext("os/cmdline") == spec.cmdline
        for event in ("on_poweroff", "on_reboot", "on_crash"):
            assert parsed.findtext(event) == "destroy"
        tb = parsed.find("features/tcg/tb-cache")
        if spec.accel == "tcg" and spec.tb_cache_mib:
            assert (tb.get("unit"), int(tb.text)) == ("KiB", spec.tb_cache_mib * 1024)
        else:
            assert tb is None
        assert (parsed.find("features/acpi") is not None) == spec.acpi
        cpu = parsed.find("cpu")
        assert (cpu is not None and cpu.get("mode")) == (spec.accel == "kvm" and
                                                         "host-passthrough")
        assert parsed.find("devices/controller[@type='usb']").get("model") == "none"
        balloon = parsed.find("devices/memballoon").get("model")
        assert balloon == ("virtio" if spec.balloon else "none")
        for tag in ("interface", "graphics", "video", "sound", "input[@bus='usb']"):
            assert parsed.find(f"devices/{tag}") is None
        serial = parsed.find("devices/serial")
        if spec.console_socket:
            assert serial.get("type") == "unix"
            source = serial.find("source")
            assert (source.get("mode"), source.get("path")) == ("connect",
                                                                 str(spec.console_socket))
        else:
            assert serial.get("type") == "pty"
        disks = parsed.findall("devices/disk")
        assert [d.find("source").get("file") for d in disks] == [str(d.path) for d in spec.disks]
        assert all(d.find("target").get("bus") == "virtio" for d in disks)
        owner = parsed.find(f"metadata/{{{OWNER_NS}}}owner")
        if spec.owner:
            assert (int(owner.get("pid")), int(owner.get("start"))) == (spec.owner.pid,
                                                                        spec.owner.start)
        else:
            assert owner is None and parsed.find("metadata") is None
        assert domain_owner(domain) == spec.owner
    finally:
        domain.destroy()


def test_cmdline_scans_pci_only_when_asked() -> None:
    assert "pci=off" in kernel_cmdline().split()
    assert "pci=off" not in kernel_cmdline(pci=True).split()
    assert "acpi=off" in kernel_cmdline().split()
    assert "acpi=off" not in kernel_cmdline(acpi=True).split()
    assert kernel_cmdline(extra="x=1").split()[-1] == "x=1"
    assert {"console=ttyS0", "quiet", "panic=-1"} <= set(kernel_cmdline().split())


@pytest.mark.parametrize("bad", [dict(accel="hvf"), dict(memory_mib=0), dict(vcpus=0),
                                 dict(tb_cache_mib=0)])
def test_invalid_spec_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        DomainSpec(name="cvbench-x", kernel=KERNEL, initrd=INITRD, **bad)


def test_names_and_paths_are_escaped_not_templated(test_conn) -> None:
    odd = Path("/tmp/a&b<c>'\"/console.sock")
    spec = DomainSpec(name="cvbench-odd", kernel=KERNEL, initrd=INITRD, console_socket=odd,
                      cmdline="console=ttyS0 x=\"<&>\"")
    parsed = ET.fromstring(render(spec))
    assert parsed.find("devices/serial/source").get("path") == str(odd)
    assert parsed.findtext("os/cmdline") == spec.cmdline


def test_libvirt_refuses_a_file_mapped_memory() -> None:
    spec = DomainSpec(name="cvbench-f", kernel=Path("/k"), initrd=Path("/i"),
                      memory_file=Path("/x/guest.ram"))
    with pytest.raises(ValueError, match="bare QEMU's only"):
        render(spec)
