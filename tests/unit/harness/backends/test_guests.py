"""VMs booting the image from a disk: the modules initramfs, the network device on a tap of
cvbench0, the volume disk, the environment on the kernel command line, and what the VM
backends share about them."""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest
from cpio import read_cpio

from harness.backends.base import BackendError, InstanceSpec
from harness.backends.guests import GuestDevices, GuestOptions, console_reason
from imagestore.image import Image
from vm import guest
from vm.bare_qemu import qemu_argv
from vm.domain import DiskSpec, DomainSpec, NicSpec, kernel_cmdline, render

MODULES = Path("/var/cache/cvbench/guest/modules")
KERNEL = Path("/var/cache/cvbench/guest/vmlinuz")
IMAGE = Image("workloads", "0" * 64, Path("/nonexistent/rootfs"))
NIC = NicSpec("cvbench0", "cvbench-1234567", "52:54:00:12:34:56", fd=9)
SPEC = DomainSpec(
    name="cvbench-unit-nic", kernel=KERNEL, initrd=Path("/x/boot.cpio"), vcpus=2,
    cmdline=kernel_cmdline(pci=True, env=("CVBENCH_IP=10.213.0.7/16", "CVBENCH_TOKEN=ab")),
    disks=(DiskSpec(Path("/x/disk.qcow2"), cache="none"),
           DiskSpec(Path("/x/volume.img"), target="vdb", format="raw", cache="none")),
    nics=(NIC,), console_socket=Path("/x/console.sock"))


def test_environment_goes_last_on_the_command_line_and_must_survive_it() -> None:
    line = kernel_cmdline(env=("CVBENCH_CONTROL=10.213.0.1:4000", "CVBENCH_VOLUME=1"))
    assert line.split()[-2:] == ["CVBENCH_CONTROL=10.213.0.1:4000", "CVBENCH_VOLUME=1"]
    for bad in ("cvbench.x=1", "NOEQUALS", "A=has space", "A='quoted'"):
        with pytest.raises(ValueError, match="kernel command line"):
            kernel_cmdline(env=(bad,))


def test_libvirt_gets_a_virtio_nic_on_the_bridge_and_uncached_disks() -> None:
    parsed = ET.fromstring(render(SPEC))
    nic = parsed.find("devices/interface")
    assert nic.get("type") == "bridge"
    assert nic.find("source").get("bridge") == "cvbench0"
    assert nic.find("target").get("dev") == "cvbench-1234567"
    assert nic.find("mac").get("address") == NIC.mac
    assert (nic.find("model").get("type"), nic.find("driver").get("name")) == ("virtio", "qemu")
    drivers = [d.find("driver") for d in parsed.findall("devices/disk")]
    assert [(d.get("type"), d.get("cache")) for d in drivers] == [("qcow2", "none"),
                                                                  ("raw", "none")]
    conn = libvirt.open("test:///default")
    try:
        domain = conn.createXML(render(SPEC), 0)
        kept = ET.fromstring(domain.XMLDesc())
        assert kept.find("devices/interface/source").get("bridge") == "cvbench0"
        domain.destroy()
    finally:
        conn.close()


def test_bare_qemu_gets_the_same_devices_and_the_tap_by_descriptor() -> None:
    argv = " ".join(qemu_argv(SPEC))
    assert "-netdev tap,id=hostnet0,fd=9" in argv
    assert "-device virtio-net-pci,netdev=hostnet0,id=net0,mac=52:54:00:12:34:56" in argv
    assert "driver=file,filename=/x/disk.qcow2,node-name=file0,cache.direct=on" in argv
    assert "driver=raw,file=file1,node-name=disk1,cache.direct=on" in argv
    assert argv.index("/x/disk.qcow2") < argv.index("/x/volume.img")  # vda is the root
    with pytest.raises(ValueError, match="descriptor"):
        qemu_argv(DomainSpec(name="cvbench-x", kernel=KERNEL, initrd=Path("/x"),
                             console_socket=Path("/x/c"), nics=(NicSpec("b", "t", "m"),)))


def test_modules_load_dependencies_first_and_skip_the_built_in() -> None:
    releases = sorted(MODULES.glob("*/modules.builtin"))
    if not releases:
        pytest.skip("no guest kernel modules (scripts/setup.sh extracts them)")
    order = [p.name for p in guest.module_load_order(directory=releases[0].parent)]
    assert {"virtio_pci.ko", "virtio_blk.ko", "virtio_net.ko"} <= set(order)
    assert order.index("virtio_ring.ko") < order.index("virtio.ko") < order.index(
        "virtio_pci.ko")
    assert order.index("failover.ko") < order.index("net_failover.ko") < order.index(
        "virtio_net.ko")
    assert "ext4.ko" not in order  # built into Debian's cloud kernel
    with pytest.raises(guest.GuestError, match="nosuchmodule"):
        guest.module_load_order(("nosuchmodule",), releases[0].parent)


def test_the_boot_initramfs_holds_busybox_the_modules_and_an_init(tmp_path, monkeypatch) -> None:
    releases = sorted(MODULES.glob("*/modules.builtin"))
    if not releases or not guest.BUSYBOX.exists():
        pytest.skip("no guest kernel modules or busybox (scripts/setup.sh)")
    monkeypatch.setenv("CVBENCH_CACHE_DIR", str(tmp_path))
    (tmp_path / "guest").mkdir()
    (tmp_path / "guest" / "modules").symlink_to(MODULES)
    path = guest.boot_initramfs()
    assert guest.boot_initramfs() == path  # cached by content
    entries = read_cpio(path.read_bytes())
    init = entries["init"][1].decode()
    assert 'switch_root /newroot "$init"' in init and "init=/init\n" in init
    # an imported image's disk has cvbench's own init, which the boot switches to instead
    assert "[ -x /newroot/.cvbench/init ] && init=/.cvbench/init" in init
    loaded = entries["modules.load"][1].decode().split()
    assert loaded[-1].endswith("virtio_net.ko")
    assert all(f"lib/modules/{module}" in entries for module in loaded)
    assert {"bin/busybox", "bin/insmod", "bin/switch_root", "dev/console", "newroot"} <= set(
        entries)


def test_the_microvm_boot_initramfs_loads_virtio_mmio_instead_of_pci(tmp_path,
                                                                     monkeypatch) -> None:
    releases = sorted(MODULES.glob("*/modules.builtin"))
    if not releases or not guest.BUSYBOX.exists():
        pytest.skip("no guest kernel modules or busybox (scripts/setup.sh)")
    monkeypatch.setenv("CVBENCH_CACHE_DIR", str(tmp_path))
    (tmp_path / "guest").mkdir()
    (tmp_path / "guest" / "modules").symlink_to(MODULES)
    mmio = guest.boot_initramfs("mmio")
    assert mmio != guest.boot_initramfs("pci")
    loaded = [Path(m).name for m in read_cpio(mmio.read_bytes())["modules.load"][1].decode(
        ).split()]
    assert "virtio_mmio.ko" in loaded and "virtio_pci.ko" not in loaded
    assert loaded.index("virtio_mmio.ko") < loaded.index("virtio_blk.ko")


def test_a_volume_disk_is_a_sparse_ext4_file(tmp_path) -> None:
    path = guest.volume_disk(tmp_path, size_mib=64)
    assert guest.volume_disk(tmp_path, size_mib=64) == path
    with open(path, "rb") as handle:
        handle.seek(1024 + 0x38)
        assert struct.unpack("<H", handle.read(2))[0] == 0xEF53  # ext4's magic
    assert path.stat().st_blocks * 512 < path.stat().st_size


def test_what_a_guest_cannot_have_is_refused_in_one_line(tmp_path) -> None:
    def spec(**changes) -> InstanceSpec:
        return InstanceSpec(name="cvbench-unit-1", image=IMAGE, **changes)

    with pytest.raises(BackendError, match="volume needs disk = true"):
        GuestDevices.for_spec(spec(volume=tmp_path), own_tap=True)
    with pytest.raises(BackendError, match="bridge needs disk = true"):
        GuestDevices.for_spec(spec(network="bridge"), own_tap=True)
    with pytest.raises(BackendError, match="none or bridge"):
        GuestDevices.for_spec(spec(network="host"), own_tap=True)
    devices = GuestDevices.for_spec(spec(env=("CVBENCH_TOKEN=x",)), own_tap=True)
    options = GuestOptions()
    domain = options.domain(spec(env=("CVBENCH_TOKEN=x",)), "tcg", KERNEL, Path("/x"), devices)
    assert domain.cmdline.endswith("CVBENCH_TOKEN=x") and "pci=off" in domain.cmdline
    with pytest.raises(BackendError, match="kernel command line"):
        options.domain(spec(), "tcg", KERNEL, Path("/x"), GuestDevices(env=("A B=1",)))


def test_the_console_reason_prefers_the_disk_boots_own_words() -> None:
    output = (b"[    1.0] virtio_blk virtio0: [vda]\ncvbench-boot: cannot mount /dev/vda (the "
              b"image disk) as root\nreboot: Restarting system\n")
    assert console_reason(output) == "cvbench-boot: cannot mount /dev/vda (the image disk) as root"
    assert console_reason(b"a\nlast line\n") == "last line"
    assert console_reason(b"") == ""


def test_a_boot_failure_line_ends_the_wait_for_ready(tmp_path) -> None:
    import socket as sockets

    from vm.console import ConsoleError, SocketConsole

    console = SocketConsole(tmp_path / "c.sock")
    guest_end = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    try:
        guest_end.connect(str(tmp_path / "c.sock"))
        guest_end.sendall(b"booting\ncvbench-boot: no disk: /dev/vda did not appear\n")
        with pytest.raises(ConsoleError, match="boot failed") as caught:
            console.wait_for(30)
        assert console_reason(caught.value.output).endswith("/dev/vda did not appear")
    finally:
        guest_end.close()
        console.close()


def test_an_imported_image_boots_from_its_disk_with_its_launch(monkeypatch) -> None:
    from dataclasses import replace

    from harness.backends import guests
    from harness.backends.launch import Launch

    launch = Launch(entrypoint=("/bin/sh", "-c"), cmd=("echo hi",),
                    env=("PATH=/bin", "FOO=bar"), workdir="/work", uid=1000, gid=1000)
    built = InstanceSpec(name="cvbench-unit-built", image=IMAGE)
    imported = replace(built, launch=launch, env=("FOO=scenario", "X=1"))
    assert guests.booted(built) is built and guests.guest_launch(built) is None
    assert guests.booted(imported).disk and not imported.disk
    assert guests.guest_launch(imported) == guest.GuestLaunch(
        argv=("/bin/sh", "-c", "echo hi"),
        env=("PATH=/bin", "HOME=/root", "FOO=scenario", "X=1"),  # base, image, scenario
        workdir="/work", uid=1000, gid=1000)
    command = replace(imported, command=("echo other",))  # a kind's command replaces the cmd
    assert guests.guest_launch(command).argv == ("/bin/sh", "-c", "echo other")
    made: list[tuple[str, guest.GuestLaunch | None]] = []
    monkeypatch.setattr(guest, "base_disk_for", lambda image, launch=None: made.append(
        (image.digest, launch)) or Path(f"/x/{len(made)}.qcow2"))
    artifacts = guests.GuestArtifacts()
    disks = [artifacts.base_disk(spec) for spec in (built, imported, command, imported, built)]
    assert disks == [Path("/x/1.qcow2"), Path("/x/2.qcow2"), Path("/x/3.qcow2"),
                     Path("/x/2.qcow2"), Path("/x/1.qcow2")]  # one per image and launch
    assert made == [(IMAGE.digest, None), (IMAGE.digest, guests.guest_launch(imported)),
                    (IMAGE.digest, guests.guest_launch(command))]


def test_an_imported_image_needs_the_exec_helper_not_an_initramfs(tmp_path,
                                                                   monkeypatch) -> None:
    from harness.backends import guests
    from imagestore import imageconfig

    monkeypatch.setenv("CVBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CVBENCH_GUEST_KERNEL", str(tmp_path / "vmlinuz"))
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    monkeypatch.setattr(imageconfig, "load", lambda image: imageconfig.ImageConfig())
    artifacts = guests.GuestArtifacts()
    with pytest.raises(BackendError, match="cvbench-guest-exec missing"):
        artifacts.check(IMAGE)  # the rootfs does not exist: no initramfs is made of it
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "cvbench-guest-exec").write_bytes(b"\x7fELF")
    artifacts.check(IMAGE)
    assert not artifacts._initrds


@pytest.mark.parametrize(("status", "expected"), [
    ("00000000", None),
    ("00000300", r"^VM v: workload exited with status 3 \(output: 'booting\\r\\nran'\)$"),
    ("00000009", "workload exited with signal 9")])
def test_a_guests_exit_is_the_kernels_report_of_its_init(status, expected) -> None:
    from harness.backends.base import NotReady
    from harness.backends.guests import wait_guest_exit

    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"booting\r\nran\r\n[    2.1] Kernel panic - not syncing: Attempted to "
                           b"kill init! exitcode=0x" + status.encode() + b"\r\n")
        if expected is None:
            wait_guest_exit(read_fd, 1, "VM v")
        else:
            with pytest.raises(NotReady, match=expected):
                wait_guest_exit(read_fd, 1, "VM v")
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_a_guest_that_does_not_exit_or_fails_to_boot_is_not_ready() -> None:
    from harness.backends.base import NotReady
    from harness.backends.guests import wait_guest_exit

    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"READY\r\n")
        with pytest.raises(NotReady, match="still runs after 0.2 s"):
            wait_guest_exit(read_fd, 0.2, "VM v")
        os.write(write_fd, b"cvbench-boot: no disk: /dev/vda did not appear\r\n")
        with pytest.raises(NotReady, match="cvbench-boot: no disk"):
            wait_guest_exit(read_fd, 1, "VM v")
    finally:
        os.close(read_fd)
        os.close(write_fd)
