"""The one table of backends: every other list of backends is derived from it.

Adding a backend is one module (a class implementing :class:`harness.backends.base.Backend`)
plus one :class:`BackendInfo` entry below: the scenario loader, ``--backend``, the runner,
normalisation, reports, ``cvbench doctor`` and ``cvbench clean`` all read this table.
This module imports nothing heavy, so the scenario loader can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostkit import validate

CONTAINER = "container"
VM = "vm"
FAMILIES = (CONTAINER, VM)


@dataclass(frozen=True)
class BackendInfo:
    """What the harness knows about a backend before importing it."""

    name: str
    target: str  # "module:Class" implementing the Backend protocol
    family: str  # CONTAINER or VM: ratios are taken within a family only
    summary: str  # one line: what an instance of this backend is
    floor: bool = False  # the family's floor: every ratio of the family is taken to it
    needs: tuple[str, ...] = ()  # names of `cvbench doctor` checks it depends on (those the
    # doctor did not run, e.g. the `--probe` ones without --probe, are skipped)
    sweeper: str | None = None  # "module:function" that `cvbench clean` runs


BACKENDS: tuple[BackendInfo, ...] = (
    BackendInfo(
        "process", "harness.backends.process:ProcessBackend", CONTAINER,
        "plain fork/exec of the image's /init, no isolation: the container floor",
        floor=True, needs=("image",), sweeper="harness.backends.process:sweep",
    ),
    BackendInfo(
        "ours", "harness.backends.ours:OursBackend", CONTAINER,
        "cvbench's own runtime: namespaces, overlayfs, root switch without pivot_root, cgroups",
        needs=("root", "namespaces", "overlayfs", "cgroups", "image"),
        sweeper="runtime.sweep:sweep_scopes",
    ),
    BackendInfo(
        "crun", "harness.backends.crun:CrunBackend", CONTAINER,
        "the same image as an OCI bundle, run by crun (C)",
        needs=("root", "namespaces", "overlayfs", "cgroups", "crun", "image"),
        sweeper="harness.backends.oci.sweeper:sweep",
    ),
    BackendInfo(
        "runc", "harness.backends.runc:RuncBackend", CONTAINER,
        "the same image as an OCI bundle, run by runc (Go)",
        needs=("root", "namespaces", "overlayfs", "cgroups", "runc", "image"),
        sweeper="harness.backends.oci.sweeper:sweep",
    ),
    BackendInfo(
        "floor", "harness.backends.floor.backend:FloorBackend", CONTAINER,
        "the kernel's floor: a static C launcher doing the shared spec's isolation steps only",
        needs=("root", "namespaces", "overlayfs", "cgroups", "image"),
        sweeper="harness.backends.floor.sweeper:sweep",
    ),
    BackendInfo(
        "docker", "harness.backends.engines.docker.backend:DockerBackend", CONTAINER,
        "Docker (dockerd, containerd, runc or crun), driven with the Docker SDK for Python",
        needs=("root", "cgroups", "docker", "seccomp profile", "image"),
        sweeper="harness.backends.engines.docker.sweeper:sweep",
    ),
    BackendInfo(
        "podman", "harness.backends.engines.podman.backend:PodmanBackend", CONTAINER,
        "Podman (conmon, crun or runc) through its REST API, a service the backend runs",
        needs=("root", "cgroups", "podman", "seccomp profile", "image"),
        sweeper="harness.backends.engines.podman.sweeper:sweep",
    ),
    BackendInfo(
        "lxc", "harness.backends.engines.lxc.backend:LxcBackend", CONTAINER,
        "LXC (liblxc through its Python binding), an overlay rootfs on the same image",
        needs=("root", "namespaces", "overlayfs", "cgroups", "lxc", "seccomp profile", "image"),
        sweeper="harness.backends.engines.lxc.sweeper:sweep",
    ),
    BackendInfo(
        "qemu", "harness.backends.qemu:QemuBackend", VM,
        "a bare qemu-system command booting the image as initramfs: the VM floor",
        floor=True, needs=("qemu", "accel", "guest kernel", "image"), sweeper="vm.sweep:sweep",
    ),
    BackendInfo(
        "microvm", "harness.backends.qemu:MicrovmBackend", VM,
        "the same bare QEMU on QEMU's microvm machine: virtio-mmio, no PCI, qboot firmware",
        needs=("qemu", "microvm", "accel", "guest kernel", "image"), sweeper="vm.sweep:sweep",
    ),
    BackendInfo(
        "libvirt", "harness.backends.libvirt:LibvirtBackend", VM,
        "the same guest as a transient libvirt domain (libvirt-python)",
        needs=("libvirtd", "kvm device", "libvirt create", "accel", "guest kernel", "image"),
        sweeper="vm.sweep:sweep",
    ),
)

_TABLE: dict[str, BackendInfo] = {backend.name: backend for backend in BACKENDS}


def register(backend: BackendInfo) -> None:
    """Add a backend at run time (a plug-in, or a test's fake backend)."""
    if backend.family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {backend.family!r}")
    _TABLE[backend.name] = backend


def unregister(name: str) -> None:
    if any(backend.name == name for backend in BACKENDS):
        raise ValueError(f"{name!r} is a built-in backend")
    _TABLE.pop(name, None)


def names() -> tuple[str, ...]:
    """Every backend name, built-ins in table order first."""
    return tuple(_TABLE)


# A backend name, and a list of them (``--backend a,b``), as the one validator checks them:
# against this table as it is when checked (plug-ins and tests' fakes included).
NAME = validate.Names(names, what="backend")
NAME_LIST = validate.Names(names, what="backend", separator=",")


def info(name: str) -> BackendInfo:
    """The entry of ``name``; KeyError names the known backends."""
    try:
        return _TABLE[name]
    except KeyError:
        raise KeyError(f"unknown backend {name!r}, expected one of {', '.join(_TABLE)}") from None


def family(name: str) -> str:
    """``container`` or ``vm`` (unknown names, e.g. of old runs, count as containers)."""
    return _TABLE[name].family if name in _TABLE else CONTAINER


def floors() -> dict[str, str]:
    """family -> the name of its floor backend."""
    return {backend.family: backend.name for backend in _TABLE.values() if backend.floor}


def floor_of(name: str) -> str:
    """The floor backend of ``name``'s family."""
    return floors()[family(name)]


def is_floor(name: str) -> bool:
    return name in floors().values()


def sweepers() -> tuple[str, ...]:
    """Every sweeper, once each, in table order."""
    return tuple(dict.fromkeys(b.sweeper for b in _TABLE.values() if b.sweeper))
