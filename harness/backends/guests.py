"""What the VM backends (``qemu``, ``libvirt``) share, so both boot the very same guest:
the guest-shaping options, the domain description built from an InstanceSpec, the guest
artifacts (kernel, initramfs and base disk per image digest), the guest's network and volume
(:class:`GuestDevices`) and the memory sample.

With ``disk`` the guest boots the image from its disk: a qcow2 overlay on the image's base
disk is ``vda``, the initramfs is :func:`vm.guest.boot_initramfs` (modules, mount, switch to
the disk's ``/init``), and disks are opened with ``cache=none`` (O_DIRECT on the host, as the
containers' ``direct=1`` I/O reaches the host's filesystem). With ``network = "bridge"`` the
guest gets a virtio-net device on a tap of ``cvbench0`` and an address of the containers'
subnet on ``eth0`` (no default route). A ``volume`` becomes a raw ext4 disk ``vdb``, mounted
on ``/data``.

An imported image (``spec.launch``) always boots from its disk (:func:`booted`), whatever the
scenario's ``disk``: its base disk is the image's rootfs plus cvbench's ``/.cvbench`` (busybox,
an init script, a static exec helper: :mod:`vm.guest`), keyed by the image and the launch
(:func:`guest_launch`: the argv and environment of :mod:`harness.backends.launch`, the
workdir, the user), and its init execs the image's process as the container backends do.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from harness.backends import launch as launches
from harness.backends.base import BackendError, InstanceSpec, MemorySample, NotReady
from harness.backends.readiness import check_exit, connect_ready
from harness.backends.ready_rule import TCP
from imagestore import imageconfig
from imagestore.image import Image
from vm import guest, hypervisor
from vm.accel import AccelChoice, detect_accel, host_tsc_khz
from vm.console import FAILURE, ConsoleError
from vm.domain import MICROVM, DiskSpec, DomainSpec, NicSpec, kernel_cmdline, virtio_transport
from vm.memory import VmMemory

DISK_CACHE = "none"  # a disk-booted guest's disks: no host page cache
BOOT_FAILURE = FAILURE.decode()  # how the disk boot's init says what went wrong

_SAMPLE_FIELDS = {f.name for f in fields(MemorySample)}
# The options a backend whose machine type is its point (``microvm``) sets itself; the other
# guest options it shares with every VM backend of a run (harness.runner.check_same_guest).
MACHINE_KEYS = ("machine", "acpi")
# The environment an imported image's process starts from in a guest, before the image's and
# the scenario's (harness.backends.launch.environment): the containers' default PATH and HOME.
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root")


# How a VM runs an imported image, in describe() (the report's methodology says it).
IMPORTED_GUEST = (
    "booted from a disk (a qcow2 overlay on a base disk made from the image's rootfs plus "
    "cvbench's /.cvbench: a static busybox, an init script, a static exec helper), whatever "
    "the scenario's disk; the disk boot's initramfs mounts it as root and switches to "
    "/.cvbench/init, which mounts /proc, /sys and /dev (devtmpfs, /dev/pts, /dev/shm), "
    "changes to the image's workdir and execs the helper: no supplementary groups, the "
    "image's gid and uid, then exec of entrypoint + cmd with exactly the image's and the "
    "scenario's environment (the program found on its PATH), as PID 1 with the serial "
    "console as stdin, stdout and stderr")


def booted(spec: InstanceSpec) -> InstanceSpec:
    """``spec`` as a guest boots it: an imported image (``spec.launch``) from its disk."""
    return replace(spec, disk=True) if spec.launch is not None and not spec.disk else spec


def guest_launch(spec: InstanceSpec) -> guest.GuestLaunch | None:
    """What the guest of an imported image runs (None for an image cvbench built): argv and
    environment by :mod:`harness.backends.launch`, the image's workdir and user."""
    if spec.launch is None:
        return None
    return guest.GuestLaunch(argv=launches.argv(spec),
                             env=tuple(launches.environment(spec, BASE_ENV)),
                             workdir=spec.launch.workdir, uid=spec.launch.uid,
                             gid=spec.launch.gid)


@dataclass(frozen=True)
class GuestOptions:
    """Scenario-file options that change the guest itself; VM backends compared in one run
    must agree on them (the runner checks ``describe()["guest"]``)."""

    machine: str = "pc"
    tb_cache_mib: int | None = None  # TCG translation-block cache; None: QEMU's default
    balloon: bool = False
    cmdline_extra: str = ""
    acpi: bool = False  # ACPI tables (and the timers they describe); off boots faster

    @property
    def virtio_transport(self) -> str:
        return virtio_transport(self.machine)

    def machine_cmdline(self, accel: str) -> str:
        """What the guest's kernel needs on the command line for this machine type.

        microvm under TCG: the TSC's rate (``tsc_early_khz``, the host's: TCG's guest TSC is
        the host's) and that it is reliable (``tsc=reliable``: every vCPU reads the one host
        TSC, constant where the rate is known). The microvm machine has no HPET or ACPI PM
        timer, and its PIT's interrupt does not reach the guest through its I/O APIC; so when
        the guest's own calibration against the PIT fails (a vCPU thread descheduled while it
        counts, on a busy host), the kernel marks the TSC unstable and waits for timer ticks
        that never come (about one boot in three with another process busy on a 2-core
        host). Told the rate, it still runs the same calibration (for the CPU's rate), and
        boots either way. And with two vCPUs under TCG the TSC's checks (its sync test, the
        watchdog against jiffies) fail and leave a 4 ms tick clock, with no HPET or PM timer
        to fall back to, where a workload's latencies would be ticks.
        """
        if self.machine != MICROVM or accel != "tcg":
            return ""
        khz = host_tsc_khz()
        return f"tsc_early_khz={khz} tsc=reliable" if khz else ""

    def domain(self, spec: InstanceSpec, accel: str, kernel: Path, initrd: Path,
               devices: GuestDevices | None = None) -> DomainSpec:
        """The domain description of ``spec`` (name, memory, vCPUs, kernel, command line,
        and the network and volume of ``devices``)."""
        devices = devices or GuestDevices()
        try:
            return DomainSpec(
                name=spec.name, kernel=kernel, initrd=initrd,
                memory_mib=spec.guest_memory_mib, vcpus=spec.vcpus,
                cmdline=kernel_cmdline(pci=self.machine != MICROVM and (
                                           spec.disk or self.balloon or bool(devices.nics)),
                                       acpi=self.acpi,
                                       extra=" ".join(filter(None, (
                                           self.machine_cmdline(accel), self.cmdline_extra))),
                                       env=devices.env),
                disks=devices.disks, nics=devices.nics,
                accel=accel, tb_cache_mib=self.tb_cache_mib, balloon=self.balloon,
                machine=self.machine, acpi=self.acpi,
            )
        except ValueError as error:
            raise BackendError(f"{spec.name}: {error}") from None

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GuestArtifacts:
    """The guest kernel, and the initramfs and base disk of each image (built once)."""

    _initrds: dict[str, Path] = field(default_factory=dict)
    _bases: dict[tuple[str, guest.GuestLaunch | None], Path] = field(default_factory=dict)

    def check(self, image: Image) -> None:
        """BackendError if the kernel is missing or the initramfs cannot be built (an
        imported image: if the guest's exec helper is missing)."""
        try:
            guest.kernel_path()
            if imageconfig.load(image) is not None:
                guest.exec_helper()
                return  # booted from its disk (made at the first start), no initramfs
            self.initrd(image)
        except guest.GuestError as error:
            raise BackendError(str(error)) from None

    @staticmethod
    def kernel() -> Path:
        return guest.kernel_path()

    def initrd(self, image: Image) -> Path:
        if image.digest not in self._initrds:
            self._initrds[image.digest] = guest.initramfs_for(image)
        return self._initrds[image.digest]

    def boot_initrd(self, spec: InstanceSpec, transport: str = "pci") -> Path:
        """The initramfs ``spec`` boots: the disk boot's (with the modules of the virtio
        ``transport``), or the image itself."""
        return guest.boot_initramfs(transport) if spec.disk else self.initrd(spec.image)

    def base_disk(self, spec: InstanceSpec) -> Path:
        """The base disk of ``spec``'s image (of an imported image: with its launch)."""
        launch = guest_launch(spec)
        key = (spec.image.digest, launch)
        if key not in self._bases:
            self._bases[key] = guest.base_disk_for(spec.image, launch)
        return self._bases[key]

    @staticmethod
    def kernel_package() -> str | None:
        package = guest.guest_dir() / "kernel-package"
        return package.read_text().strip() if package.is_file() else None


@dataclass
class GuestDevices:
    """A VM's network and volume: the devices its domain gets, the environment its init
    gets, and what must be released when it is removed (address lease, tap descriptor)."""

    nics: tuple[NicSpec, ...] = ()
    disks: tuple[DiskSpec, ...] = ()
    env: tuple[str, ...] = ()
    address: str | None = None  # the guest's address on cvbench0, leased
    tap_fd: int | None = None  # a bare QEMU's tap, until QEMU holds its own copy
    bridged: ClassVar[bool] = False  # a guest of this process joined cvbench0

    @classmethod
    def for_spec(cls, spec: InstanceSpec, *, own_tap: bool) -> GuestDevices:
        """Lease, open and make what ``spec`` asks for; ``own_tap``: open the tap here and
        hand QEMU its descriptor (bare QEMU), else let the hypervisor make it (libvirt)."""
        devices = cls(env=tuple(spec.env))
        try:
            if spec.volume is not None:
                if not spec.disk:
                    raise BackendError(f"{spec.name}: a volume needs disk = true (the disk boot "
                                       "mounts it)")
                try:
                    path = guest.volume_disk(spec.volume)
                except (OSError, guest.GuestError) as error:
                    raise BackendError(f"{spec.name}: cannot make the volume disk: {error}"
                                       ) from None
                devices.disks = (DiskSpec(path, target="vdb", format="raw", cache=DISK_CACHE),)
                devices.env += ("CVBENCH_VOLUME=1",)
            if spec.network == "bridge":
                devices._bridge(spec, own_tap)
            elif spec.network != "none":
                raise BackendError(f"{spec.name}: VMs have network none or bridge, not "
                                   f"{spec.network!r}")
        except BaseException:
            devices.release()
            raise
        return devices

    def _bridge(self, spec: InstanceSpec, own_tap: bool) -> None:
        if not spec.disk:
            raise BackendError(f"{spec.name}: network = bridge needs disk = true (the disk "
                               "boot loads virtio_net)")
        # The containers' bridge and leases (imported here: VM backends load no container code
        # unless a guest joins the containers' bridge).
        from runtime import network

        tap = network.veth_name(f"tap:{spec.name}")
        digest = hashlib.sha1(spec.name.encode()).digest()
        mac = "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])
        try:
            self.address = network.allocate_address(str(hypervisor.vms_dir() / spec.name))
            if own_tap:
                self.tap_fd = network.open_tap(tap)
            else:
                network.bridge_up()
        except (OSError, network.NetworkError) as error:
            raise BackendError(f"{spec.name}: {error}") from None
        GuestDevices.bridged = True
        self.nics = (NicSpec(network.BRIDGE, tap, mac, self.tap_fd),)
        self.env += (f"CVBENCH_IP={self.address}/{network.SUBNET.prefixlen}",)

    def handed_over(self) -> None:
        """QEMU holds the tap now: close this process's descriptor."""
        if self.tap_fd is not None:
            os.close(self.tap_fd)
            self.tap_fd = None

    @classmethod
    def done_with_bridge(cls) -> None:
        """Remove ``cvbench0`` if a guest of this process used it and nothing is on it now
        (as the ``ours`` runtime does when it cleans up)."""
        if not cls.bridged:
            return
        from runtime import network

        try:
            network.remove_bridge_if_unused()
        except Exception:  # busy or gone meanwhile: `cvbench clean` removes it later
            return
        cls.bridged = False

    def release(self) -> None:
        """Close the tap descriptor (if still held) and free the address; idempotent."""
        self.handed_over()
        if self.address is not None:
            from runtime import network

            network.release_address(self.address)
            self.address = None


def console_reason(output: bytes) -> str:
    """What a VM's console says went wrong: the disk boot's own line, else its last line."""
    lines = [line.strip() for line in output.decode(errors="replace").splitlines()
             if line.strip()]
    own = [line for line in lines if line.startswith(BOOT_FAILURE)]
    return (own or lines or [""])[-1]


def accel_for(spec: InstanceSpec, default: AccelChoice) -> AccelChoice:
    """The backend's accel, unless the scenario forces one for this instance."""
    return default if spec.accel == "auto" else detect_accel(spec.accel)


def memory_sample(usage: VmMemory) -> MemorySample:
    """A VM's memory views as the harness's sample."""
    return MemorySample(**{name: value for name, value in asdict(usage).items()
                           if name in _SAMPLE_FIELDS})


# The guest kernel's own report that its PID 1 (the image's /init) exited, with the wait
# status it exited with (kernel/exit.c: "Attempted to kill init! exitcode=0x%08x"), printed as
# the panic that follows it (KERN_EMERG: shown with `quiet` too).
INIT_EXITED = re.compile(rb"Attempted to kill init! exitcode=0x([0-9a-fA-F]+)")


def wait_console_rule(vm: Any, instance: Any, devices: GuestDevices | None,
                      timeout: float) -> None:
    """A VM's ``exit`` or ``tcp`` rule (``instance.ready``), for qemu and libvirt alike;
    ``vm`` is the backend's handle (its ``console_fd``, ``close_console`` and ``pid``).

    ``exit``: :func:`wait_guest_exit` on the console. ``tcp``: a connection from the host to
    the guest's leased address on the bridge (``devices.address``), the console drained
    meanwhile so that a boot failure's line or QEMU's exit ends the wait. Either closes the
    console after; a console error is NotReady in one line."""
    name = f"VM {instance.name}"
    address = devices.address if devices is not None else None
    if instance.ready.kind == TCP and address is None:
        raise NotReady(f"{name}: no address to connect to (network must be bridge)")
    try:
        fd = vm.console_fd(timeout)
        if instance.ready.kind == TCP:
            assert address is not None  # refused above
            connect_ready(address, instance.ready.port, fd, timeout, name, vm.pid, FAILURE)
            return
        if fd is None:
            raise NotReady(f"{name}: its console is closed already")
        wait_guest_exit(fd, timeout, name)
    except ConsoleError as error:
        raise NotReady(f"{name}: {error}") from None
    finally:
        vm.close_console()


def wait_guest_exit(fd: int, timeout: float, name: str) -> None:
    """The ``exit`` rule on a VM: read its serial console (``fd``) until the guest kernel
    reports that PID 1 exited; NotReady (one line) unless with status 0, on a disk boot's
    failure line, when the console closes first (QEMU exited) or on timeout.

    PID 1 is the image's ``/init`` (the disk boot's init execs it with ``switch_root``); a
    failed switch exits with 127, so no boot failure reads as a status of 0."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    text = b""
    while True:
        found = INIT_EXITED.search(text)
        if found is not None:
            try:
                code = os.waitstatus_to_exitcode(int(found.group(1), 16))
            except ValueError:
                raise NotReady(f"{name}: the guest kernel reports an exit status it cannot "
                               f"have: {found.group(0).decode()}") from None
            before = text[:found.start()].rsplit(b"\n", 1)[0]  # the panic's line left out
            check_exit(name, code, before[-200:], timeout)
            return
        if FAILURE in text:
            raise NotReady(f"{name}: {console_reason(text)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise NotReady(f"{name}: workload still runs after {timeout:g} s (no exit)")
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            raise NotReady(f"{name}: console closed (QEMU exited) before the guest kernel "
                           f"reported its init's exit; last line: {console_reason(text)!r}")
        text = (text + chunk)[-16384:]
