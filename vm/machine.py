"""One cvbench VM: a transient libvirt domain with its console and files, start to destroy.

Local URIs: the console is a unix socket in ``state_dir()/vms/<name>/`` that we listen on
and QEMU connects to; the QEMU pid is known, so memory is measured with psutil. Remote URIs
(``qemu+ssh://...``): the console is libvirt's console stream of a pty serial port (the
domain is created paused, the stream opened, then the domain resumed, so no output is
lost), and memory is libvirt's RSS figure for the QEMU process. The domain records this
process as its owner (unless the spec names one), so :func:`vm.sweep.sweep` leaves it alone
while this process lives.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import libvirt

from hostkit.procs import wait_exit
from vm import guest, hypervisor
from vm.console import MARKER, SocketConsole, StreamConsole
from vm.domain import DiskSpec, DomainSpec, Owner, render
from vm.memory import VmMemory, qemu_memory


@dataclass
class VirtualMachine:
    """A started VM; create with :meth:`start`, finish with :meth:`stop`."""

    spec: DomainSpec
    domain: libvirt.virDomain
    local: bool
    console: SocketConsole | StreamConsole | None = None
    pid: int | None = None
    started: float = field(default_factory=time.perf_counter)
    ready_output: bytes = b""
    create_s: float = 0.0  # seconds in libvirt's createXML: libvirt's own work
    paused: bool = False
    _destroying: _Background | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def start(cls, conn: libvirt.virConnect, spec: DomainSpec, *,
              disk_base: Path | None = None, autodestroy: bool = True,
              console: str = "auto", paused: bool = False,
              disk_cache: str | None = None) -> VirtualMachine:
        """Create the domain and return at once (not ready); files are removed on failure.

        ``console``: ``socket`` (local URIs only), ``stream`` (any URI) or ``auto`` (socket
        where the URI is local, else stream). ``spec.owner`` None: this process. With
        ``paused`` the domain is created with its kernel loaded but its CPUs stopped, until
        :meth:`resume` (a warm start). ``disk_base``: a qcow2 overlay on it becomes the first
        disk (``disk_cache`` its cache mode).
        """
        if spec.owner is None:
            spec = replace(spec, owner=Owner.current())
        local = hypervisor.is_local(conn.getURI())
        if console == "auto":
            console = "socket" if local else "stream"
        if console not in ("socket", "stream") or (console == "socket" and not local):
            raise ValueError(f"console {console!r} is not possible with {conn.getURI()}")
        listener: SocketConsole | None = None
        try:
            if local:
                directory = hypervisor.vm_dir(spec.name)
                if console == "socket":
                    listener = SocketConsole(directory / "console.sock")
                if disk_base is not None:  # the root disk first: the guest's vda
                    overlay = guest.create_overlay(disk_base, directory / "disk.qcow2")
                    spec = replace(spec, disks=(DiskSpec(overlay, cache=disk_cache),
                                                *spec.disks))
            elif disk_base is not None:
                raise ValueError("overlay disks need a local libvirt URI")
            spec = replace(spec, console_socket=listener.path if listener else None)
            flags = libvirt.VIR_DOMAIN_START_AUTODESTROY if autodestroy else 0
            if listener is None or paused:
                flags |= libvirt.VIR_DOMAIN_START_PAUSED
            xml = render(spec)
            started = time.perf_counter()
            domain = conn.createXML(xml, flags)
            create_s = time.perf_counter() - started
        except BaseException:
            if listener is not None:
                listener.close()
            if local:
                hypervisor.remove_files(spec.name)
            raise
        vm = cls(spec=spec, domain=domain, local=local, console=listener, started=started,
                 create_s=create_s, paused=paused)
        if local:
            vm.pid = hypervisor.qemu_pid(spec.name)
        if listener is None:
            try:
                vm.console = StreamConsole(lambda: _open_stream(conn, domain))
                if not paused:
                    domain.resume()
            except BaseException:
                vm.stop()
                raise
        return vm

    def resume(self) -> None:
        """Let a domain created ``paused`` run."""
        if self.paused:
            self.domain.resume()
            self.paused = False

    def wait_ready(self, timeout: float, marker: bytes = MARKER) -> bytes:
        """Block until the guest prints READY (or ``marker``: the line the workload's
        readiness rule waits for); raises ``vm.console.ConsoleError``.

        The console is closed on success, so a ready VM holds no descriptor of ours.
        """
        if self.console is None:
            return self.ready_output
        self.ready_output = self.console.wait_for(timeout, marker)
        self.close_console()
        return self.ready_output

    def console_fd(self, timeout: float) -> int | None:
        """The console socket's connection descriptor, for a wait that drains it (the
        ``tcp`` readiness rule: :meth:`close_console` after); None for a console stream
        (read by its own thread) or a closed console."""
        if isinstance(self.console, SocketConsole):
            return self.console.connection(timeout)
        return None

    def close_console(self) -> None:
        """Close the console once the wait for readiness is over."""
        if self.console is not None:
            self.console.close()
            self.console = None

    def memory(self) -> VmMemory:
        """PSS/USS/RSS and guest RAM vs VMM overhead (local); libvirt's RSS only (remote)."""
        if self.local and self.pid is not None:
            return qemu_memory(self.pid, self.spec.memory_mib)
        rss = self.domain.memoryStats().get("rss", 0) * 1024
        return VmMemory(pss=None, uss=None, rss=rss, guest_ram=None, vmm_overhead=None)

    def stop(self) -> None:
        """Destroy the domain and remove its files; idempotent."""
        self.halt()
        self.release()

    def halt(self) -> None:
        """Ask libvirt to destroy the domain; return once QEMU has exited.

        Locally QEMU's exit is observed through a pidfd while ``destroy()`` still runs in a
        thread (libvirt then polls for the process every 200 ms and cleans up: that part is
        :meth:`release`'s); remotely ``destroy()`` is waited for here.
        """
        if self.console is not None:
            self.console.close()
            self.console = None
        if self._destroying is not None:
            return
        if not self.local or self.pid is None:
            hypervisor.destroy(self.domain)
            return
        self._destroying = _Background(hypervisor.destroy, self.domain)
        wait_exit(self.pid, None)

    def release(self) -> None:
        """Wait until libvirt finished destroying the domain, then remove the VM's files."""
        if self._destroying is not None:
            self._destroying.result()
            self._destroying = None
        if self.local:
            hypervisor.remove_files(self.name)


class _Background:
    """A call running in a thread; :meth:`result` waits and re-raises its exception."""

    def __init__(self, function, *args) -> None:
        self._error: BaseException | None = None

        def run() -> None:
            try:
                function(*args)
            except BaseException as error:  # re-raised in result()
                self._error = error

        self._thread = threading.Thread(target=run, daemon=True, name="cvbench-destroy")
        self._thread.start()

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _open_stream(conn: libvirt.virConnect, domain: libvirt.virDomain) -> libvirt.virStream:
    stream = conn.newStream(0)
    domain.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
    return stream
