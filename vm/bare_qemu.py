"""VMs started with a bare ``qemu-system-x86_64`` command: the VM family's floor.

The argv mirrors what libvirt generates for :mod:`vm.domain`'s trimmed domain: the same
machine, CPU, memory backend, devices, kernel, initramfs, kernel command line, serial socket,
QMP monitor, audio and seccomp sandbox. What libvirt adds on top (its daemon round trips,
the domain's cgroup and ``/dev`` namespace, running QEMU as ``libvirt-qemu``) is what a
libvirt/QEMU ratio shows.

A :class:`BareVM` is started by this process and dies with it (``PR_SET_PDEATHSIG``); its
directory ``vms_dir()/<name>/`` holds the console and monitor sockets, QEMU's own pid file
and an ``owner`` link naming this process, so :func:`vm.sweep.sweep` removes what a killed
harness left and never what a live one still runs.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from hostkit import syscalls
from hostkit.procs import signal_and_wait
from vm import guest, hypervisor
from vm.console import MARKER, SocketConsole
from vm.domain import MICROVM, DiskSpec, DomainSpec, Owner
from vm.memory import VmMemory, qemu_memory
from vm.monitor import MonitorError, QmpMonitor

QEMU = "qemu-system-x86_64"
PID_FILE = "qemu.pid"
MONITOR = "qmp.sock"
STDERR_LOG = "qemu.log"
OWNER_LINK = "owner"
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
GRACE_S = 10.0  # SIGTERM, then SIGKILL (libvirt's destroy waits as long)


class BareQemuError(Exception):
    """QEMU could not be started, or exited before it was asked to."""


# The virtio device models of each transport (DomainSpec.virtio_transport): PCI functions on
# pc and q35, virtio-mmio transports on the microVM machine.
VIRTIO_DEVICE = {"pci": "pci", "mmio": "device"}
# The microVM machine's own serial port off: the serial port is ours, as on pc and q35 (the
# same -device isa-serial on the console socket).
MACHINE_OPTIONS = {MICROVM: "isa-serial=off,"}


def _memory_backend(spec: DomainSpec) -> str:
    """The guest RAM's backend: anonymous memory, or ``spec.memory_file`` mapped shared or
    private (QEMU's ``memory-backend-file``: a private mapping is copy-on-write, so the file
    is read on demand and never written)."""
    size = spec.memory_mib << 20
    if spec.memory_file is None:
        return f"memory-backend-ram,id=pc.ram,size={size}"
    share = "on" if spec.memory_shared else "off"
    return f"memory-backend-file,id=pc.ram,size={size},mem-path={spec.memory_file},share={share}"


def qemu_argv(spec: DomainSpec, qemu: str = QEMU, *, monitor: Path | None = None,
              pid_file: Path | None = None, paused: bool = False) -> list[str]:
    """The bare QEMU command equivalent to libvirt's rendering of ``spec`` (on the microVM
    machine, which libvirt does not render here: the same command with its virtio devices
    on virtio-mmio)."""
    if spec.console_socket is None:
        raise ValueError("bare QEMU needs a console socket")
    accel = "kvm" if spec.accel == "kvm" else "tcg"
    if accel == "tcg" and spec.tb_cache_mib:
        accel += f",tb-size={spec.tb_cache_mib}"
    virtio = VIRTIO_DEVICE[spec.virtio_transport]
    argv = [qemu, "-name", f"guest={spec.name},debug-threads=on"]
    if paused:
        argv.append("-S")
    argv += [
        "-machine", f"{spec.machine},{MACHINE_OPTIONS.get(spec.machine, '')}usb=off,"
                    "dump-guest-core=off,memory-backend=pc.ram",
        "-accel", accel,
        "-cpu", "host" if spec.accel == "kvm" else "qemu64",
        "-m", str(spec.memory_mib),
        "-object", _memory_backend(spec),
        "-overcommit", "mem-lock=off",
        "-smp", f"{spec.vcpus},sockets={spec.vcpus},cores=1,threads=1",
        "-display", "none", "-no-user-config", "-nodefaults",
    ]
    if monitor is not None:  # we listen, QEMU connects (as to the serial console)
        argv += ["-chardev", f"socket,id=charmonitor,path={monitor}",
                 "-mon", "chardev=charmonitor,id=monitor,mode=control"]
    argv += [
        "-rtc", "base=utc", "-no-shutdown", "-boot", "strict=on",
        "-kernel", str(spec.kernel), "-initrd", str(spec.initrd), "-append", spec.cmdline,
        "-chardev", f"socket,id=charserial0,path={spec.console_socket}",
        "-device", "isa-serial,chardev=charserial0,id=serial0,index=0",
        "-audiodev", "none,id=audio1",
        "-sandbox", SANDBOX,
        "-msg", "timestamp=on",
    ]
    if not spec.acpi:
        argv.append("-no-acpi")
    for index, disk in enumerate(spec.disks):
        cache = ",cache.direct=on" if disk.cache == "none" else ""
        argv += ["-blockdev", f"driver=file,filename={disk.path},node-name=file{index}{cache}",
                 "-blockdev", f"driver={disk.format},file=file{index},node-name=disk{index}"
                 + cache + (",read-only=on" if disk.readonly else ""),
                 "-device", f"virtio-blk-{virtio},drive=disk{index},id={disk.target}"]
    for index, nic in enumerate(spec.nics):
        if nic.fd is None:
            raise ValueError(f"bare QEMU needs the descriptor of tap {nic.tap}")
        argv += ["-netdev", f"tap,id=hostnet{index},fd={nic.fd}",
                 "-device",
                 f"virtio-net-{virtio},netdev=hostnet{index},id=net{index},mac={nic.mac}"]
    if spec.balloon:
        argv += ["-device", f"virtio-balloon-{virtio},id=balloon0"]
    if pid_file is not None:
        argv += ["-pidfile", str(pid_file)]
    return argv


@functools.cache
def machine_types(qemu: str = QEMU) -> frozenset[str]:
    """The machine types ``qemu -machine help`` lists (empty if it cannot be run): whether
    this QEMU has, e.g., the microVM machine."""
    try:
        out = subprocess.run([qemu, "-machine", "help"], capture_output=True, text=True,
                             check=False, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(line.split()[0] for line in out.splitlines()[1:] if line.strip())


def _die_with_parent(parent: int) -> None:
    """In the child before exec: SIGKILL when the parent dies (also if it just did)."""
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


@dataclass
class BareVM:
    """A QEMU process started by this process; create with :meth:`start`."""

    spec: DomainSpec
    process: subprocess.Popen
    directory: Path
    console: SocketConsole | None
    argv: list[str]
    monitor: QmpMonitor | None = None
    paused: bool = False
    started: float = field(default_factory=time.perf_counter)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(cls, spec: DomainSpec, *, disk_base: Path | None = None, paused: bool = False,
              qemu: str = QEMU, extra: Sequence[str] = (),
              disk_cache: str | None = None) -> BareVM:
        """Exec QEMU and return at once (not ready); with ``paused`` the guest waits for
        :meth:`resume` (QEMU's ``-S``). ``disk_base``: a qcow2 overlay on it becomes the
        first disk (``disk_cache`` its cache mode). Taps of ``spec.nics`` are handed to QEMU
        by descriptor. Files are removed on failure."""
        directory = hypervisor.vm_dir(spec.name)
        console = monitor = None
        try:
            owner = Owner.current()
            os.symlink(f"{owner.pid}:{owner.start}", directory / OWNER_LINK)
            console = SocketConsole(directory / "console.sock")
            monitor = QmpMonitor(directory / MONITOR)
            spec = replace(spec, console_socket=console.path)
            if disk_base is not None:  # the root disk first: the guest's vda
                overlay = guest.create_overlay(disk_base, directory / "disk.qcow2")
                spec = replace(spec, disks=(DiskSpec(overlay, cache=disk_cache), *spec.disks))
            argv = [*qemu_argv(spec, qemu, monitor=directory / MONITOR,
                               pid_file=directory / PID_FILE, paused=paused), *extra]
            with open(directory / STDERR_LOG, "wb") as log:
                process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                    pass_fds=tuple(nic.fd for nic in spec.nics if nic.fd is not None),
                    start_new_session=True,  # a Ctrl-C to the harness does not reach it
                    preexec_fn=functools.partial(_die_with_parent, os.getpid()),
                )
        except BaseException:
            for handle in (console, monitor):
                if handle is not None:
                    handle.close()
            hypervisor.remove_files(spec.name)
            raise
        return cls(spec, process, directory, console, argv, monitor, paused)

    def wait_paused(self, timeout: float = 30.0) -> None:
        """For a VM started ``paused``: return once QEMU is up with the guest loaded and its
        CPUs stopped (QEMU connected to its monitor and answered)."""
        assert self.monitor is not None
        try:
            self.monitor.connect(timeout)
        except (MonitorError, OSError) as error:
            raise BareQemuError(f"{error}; QEMU said: {self._stderr_tail()}") from None

    def resume(self) -> None:
        """Let a paused guest run (QMP ``cont``)."""
        if not self.paused:
            return
        assert self.monitor is not None
        try:
            self.monitor.connect(30.0)  # normally done by wait_paused, before the clock
            self.monitor.execute("cont")
        except (MonitorError, OSError) as error:
            raise BareQemuError(str(error)) from None
        self.paused = False

    def wait_ready(self, timeout: float, marker: bytes = MARKER) -> bytes:
        """Block until the guest prints READY (or ``marker``: the line the workload's
        readiness rule waits for); raises ``vm.console.ConsoleError``.

        The console is closed once READY is seen, so a ready VM holds no descriptor of ours.
        """
        if self.console is None:
            return b""
        try:
            return self.console.wait_for(timeout, marker)
        except Exception:
            if self.process.poll() is not None:
                raise BareQemuError(f"QEMU exited ({self.process.returncode}): "
                                    f"{self._stderr_tail()}") from None
            raise
        finally:
            self.close_console()

    def console_fd(self, timeout: float) -> int | None:
        """The serial console connection's descriptor, for a wait that drains it (the
        ``tcp`` readiness rule: :meth:`close_console` after); None if closed already."""
        return None if self.console is None else self.console.connection(timeout)

    def close_console(self) -> None:
        """Close the console and the monitor once the wait for readiness is over: a ready VM
        holds no descriptor of ours (QEMU connected to both long before)."""
        if self.console is not None:
            self.console.close()
            self.console = None
        self._close_monitor()

    def memory(self) -> VmMemory:
        return qemu_memory(self.pid, self.spec.memory_mib)

    def stop(self, grace: float = GRACE_S) -> None:
        """:meth:`halt` then :meth:`release`. Idempotent."""
        self.halt(grace)
        self.release()

    def halt(self, grace: float = GRACE_S) -> None:
        """SIGTERM (as libvirt's destroy does), SIGKILL after ``grace``; return once QEMU
        has exited and been reaped."""
        if self.console is not None:
            self.console.close()
            self.console = None
        self._close_monitor()
        if self.process.poll() is None:
            terminate(self.process, grace)

    def release(self) -> None:
        """Remove the VM's files (sockets, pid file, overlay disk)."""
        hypervisor.remove_files(self.name)

    def _close_monitor(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None

    def _stderr_tail(self) -> str:
        try:
            text = (self.directory / STDERR_LOG).read_text(errors="replace").strip()
        except OSError:
            return "no output"
        return text.splitlines()[-1] if text else "no output"


def terminate(process: subprocess.Popen, grace: float = GRACE_S) -> None:
    """SIGTERM, then SIGKILL after ``grace``; return once ``process`` exited and was reaped
    (observed through a pidfd, so no polling step hides in the figure)."""
    if not signal_and_wait(process.pid, signal.SIGTERM, grace):
        signal_and_wait(process.pid, signal.SIGKILL, None)
    process.wait()


# --- ownership ---------------------------------------------------------------------------


def owner_alive(directory: Path) -> bool:
    """Whether the process that started the bare VM of ``directory`` still runs."""
    try:
        pid, start = (int(x) for x in os.readlink(directory / OWNER_LINK).split(":"))
    except (OSError, ValueError):
        return False
    return Owner(pid, start).alive()


# --- the reference boot ------------------------------------------------------------------


@dataclass(frozen=True)
class BareBoot:
    """One bare boot: seconds from exec to ``READY``, and the command used."""

    ready_s: float
    argv: list[str]


def boot(spec: DomainSpec, timeout: float = 60.0) -> BareBoot:
    """Start, wait for ``READY``, stop; raise on failure (the benchmark's reference)."""
    started = time.perf_counter()
    vm = BareVM.start(spec)
    try:
        vm.wait_ready(timeout)
        ready = time.perf_counter() - started
        return BareBoot(ready_s=ready, argv=vm.argv)
    finally:
        vm.stop()


def main() -> None:
    """``python -m vm.bare_qemu [N]``: N bare boots of the default image, one time per line."""
    import sys

    from imagestore import image as images

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    img = images.resolve()
    for run in range(runs):
        spec = DomainSpec(name=f"cvbench-bare-{os.getpid()}-{run}", kernel=guest.kernel_path(),
                          initrd=guest.initramfs_for(img))
        result = boot(spec)
        print(f"{result.ready_s:.3f}s  {' '.join(result.argv)}" if run == 0
              else f"{result.ready_s:.3f}s")


if __name__ == "__main__":
    main()
