"""Boot the guest with a bare ``qemu-system-x86_64`` command: the reference for libvirt.

Not a backend. The benchmark (tests/bench/test_vm_boot.py) times exec → ``READY`` here and
start → ``READY`` through libvirt, so the cost libvirt adds is visible. The argv mirrors
what libvirt generates for :mod:`vm.domain`'s trimmed domain (same machine, CPU, memory
backend, devices, kernel command line and serial socket), minus libvirt's monitor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from runtime import syscalls
from runtime.paths import PREFIX
from vm import hypervisor
from vm.console import SocketConsole
from vm.domain import DomainSpec

QEMU = "qemu-system-x86_64"


def qemu_argv(spec: DomainSpec, qemu: str = QEMU) -> list[str]:
    """The bare QEMU command equivalent to libvirt's rendering of ``spec``."""
    if spec.console_socket is None:
        raise ValueError("bare QEMU needs a console socket")
    accel = "kvm" if spec.accel == "kvm" else "tcg"
    if accel == "tcg" and spec.tb_cache_mib:
        accel += f",tb-size={spec.tb_cache_mib}"
    argv = [
        qemu, "-name", f"guest={spec.name}",
        "-machine", f"{spec.machine},usb=off,dump-guest-core=off,memory-backend=pc.ram",
        "-accel", accel,
        "-cpu", "host" if spec.accel == "kvm" else "qemu64",
        "-m", str(spec.memory_mib),
        "-object", f"memory-backend-ram,id=pc.ram,size={spec.memory_mib << 20}",
        "-overcommit", "mem-lock=off",
        "-smp", f"{spec.vcpus},sockets={spec.vcpus},cores=1,threads=1",
        "-display", "none", "-no-user-config", "-nodefaults",
        "-rtc", "base=utc", "-no-shutdown", "-boot", "strict=on",
        "-kernel", str(spec.kernel), "-initrd", str(spec.initrd), "-append", spec.cmdline,
        "-chardev", f"socket,id=charserial0,path={spec.console_socket}",
        "-device", "isa-serial,chardev=charserial0,id=serial0,index=0",
    ]
    if not spec.acpi:
        argv.append("-no-acpi")
    for index, disk in enumerate(spec.disks):
        argv += ["-blockdev", f"driver=file,filename={disk.path},node-name=file{index}",
                 "-blockdev", f"driver={disk.format},file=file{index},node-name=disk{index}"
                 + (",read-only=on" if disk.readonly else ""),
                 "-device", f"virtio-blk-pci,drive=disk{index},id={disk.target}"]
    if spec.balloon:
        argv += ["-device", "virtio-balloon-pci,id=balloon0"]
    return argv


@dataclass(frozen=True)
class BareBoot:
    """One bare boot: seconds from exec to ``READY``, and the command used."""

    ready_s: float
    argv: list[str]


def _die_with_parent() -> None:
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)


def boot(spec: DomainSpec, timeout: float = 60.0, extra: Sequence[str] = ()) -> BareBoot:
    """Exec QEMU, wait for ``READY`` on its serial socket, kill it; raise on failure.

    ``spec.name`` must carry the cvbench prefix; the console socket goes into the VM's
    directory under ``state_dir()/vms`` (removed afterwards, and by ``sweep``).
    """
    if not spec.name.startswith(PREFIX):
        raise ValueError(f"VM names start with {PREFIX!r}")
    directory = hypervisor.vm_dir(spec.name)
    socket_path = spec.console_socket or directory / "console.sock"
    if spec.console_socket is None:
        spec = DomainSpec(**{**vars(spec), "console_socket": socket_path})
    argv = [*qemu_argv(spec), *extra]
    with SocketConsole(socket_path) as console:
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        try:
            console.wait_for(timeout)
            ready = time.perf_counter() - start
        except Exception:
            process.kill()
            _, stderr = process.communicate()
            if stderr:
                raise RuntimeError(f"bare QEMU failed: {stderr.decode().strip()}") from None
            raise
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stderr:
                process.stderr.close()
    hypervisor.remove_files(spec.name)
    return BareBoot(ready_s=ready, argv=argv)


def main() -> None:
    """``python -m vm.bare_qemu [N]``: N bare boots of the default image, one time per line."""
    import sys

    from runtime import image
    from vm import guest

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    img = image.resolve()
    for run in range(runs):
        spec = DomainSpec(name=f"{PREFIX}bare-{os.getpid()}-{run}", kernel=guest.kernel_path(),
                          initrd=guest.initramfs_for(img))
        result = boot(spec)
        print(f"{result.ready_s:.3f}s  {' '.join(result.argv)}" if run == 0
              else f"{result.ready_s:.3f}s")


if __name__ == "__main__":
    main()
