"""The one table of backends: every other list of backends is derived from it.

Adding a backend is one module (a class implementing :class:`harness.backends.base.Backend`)
plus one :class:`BackendInfo` entry below: the scenario loader, ``--backend``, the runner,
normalisation, reports, ``cvbench doctor`` and ``cvbench clean`` all read this table.
This module imports nothing heavy, so the scenario loader can use it.

A *labelled* name, ``<backend>:<label>`` (``floor:namespaces``), is the same backend run a
second time in one run with options of its own (a scenario's ``[backend_options."floor:
namespaces"]``): everything that asks this table about it (its class, family, floor, doctor
checks, sweeper) is told about ``<backend>``'s entry, while its samples, ratios, report rows and
gate verdicts carry the whole name, as a series of its own.

Besides the built-ins, the table takes at run time the OCI runtimes a user names (a scenario
file's ``[runtimes]``, ``cvbench run --runtime NAME=PATH``): :func:`add_runtime` enters each
as one more entry of :class:`harness.backends.oci.backend.OciBackend`, the class crun and runc
are built on, with its name and path as the entry's ``args``. The binary itself is checked
before that by :mod:`harness.backends.oci.runtimes`.
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
    args: tuple[str, ...] = ()  # positional arguments of the class, set by the registry, not
    # by a scenario's [backend_options]: a user-named OCI runtime's name and path


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
        "docker-ours", "harness.backends.engines.docker.backend:DockerOursBackend", CONTAINER,
        "Docker (dockerd, containerd) running cvbench's own runtime as its OCI runtime "
        "(cvbench-runtime)",
        needs=("root", "cgroups", "docker", "cvbench-runtime", "seccomp profile", "image"),
        sweeper="harness.backends.engines.docker.sweeper:sweep",
    ),
    BackendInfo(
        "podman-ours", "harness.backends.engines.podman.backend:PodmanOursBackend", CONTAINER,
        "Podman (conmon) running cvbench's own runtime as its OCI runtime (cvbench-runtime)",
        needs=("root", "cgroups", "podman", "cvbench-runtime", "seccomp profile", "image"),
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


LABEL_SEPARATOR = ":"
LABEL = validate.Names(pattern=r"[a-z0-9][a-z0-9_.-]{0,31}",
                       meaning="a label of lower-case letters, digits, '_', '.' and '-' "
                               "(at most 32) after ':'")


def base(name: str) -> str:
    """The backend a (possibly labelled) name runs: ``floor:namespaces`` -> ``floor``."""
    return name.partition(LABEL_SEPARATOR)[0]


def label(name: str) -> str:
    """A labelled name's label (``floor:namespaces`` -> ``namespaces``), '' for a plain one."""
    return name.partition(LABEL_SEPARATOR)[2]


def register(backend: BackendInfo) -> None:
    """Add a backend at run time (a plug-in, or a test's fake backend)."""
    if backend.family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {backend.family!r}")
    _TABLE[backend.name] = backend


OCI_TARGET = "harness.backends.oci.backend:OciBackend"
OCI_SWEEPER = "harness.backends.oci.sweeper:sweep"
# A user-named runtime: a backend name, also a directory name under the state directory
RUNTIME_NAME = validate.Names(pattern=r"[a-z][a-z0-9_-]{0,31}",
                              meaning="a runtime name (a lowercase letter, then up to 31 "
                                      "lowercase letters, digits, '-' or '_')")


def runtime_needs(name: str) -> str:
    """The name of the `cvbench doctor` check of user-named runtime ``name``'s binary."""
    return f"runtime {name}"


def check_runtime_name(name: str) -> str:
    """``name`` if a user-named runtime may take it; :class:`validate.Invalid` if it is
    malformed or another backend's (a built-in, a plug-in): a user runtime's may be reused."""
    RUNTIME_NAME.check(name)
    if any(backend.name == name for backend in BACKENDS):
        raise validate.Invalid(f"{name!r} is a built-in backend, give the runtime another name")
    if name in _TABLE and not is_user_runtime(name):
        raise validate.Invalid(f"{name!r} is already a backend, give the runtime another name")
    return name


def add_runtime(name: str, path: str) -> BackendInfo:
    """Enter user-named OCI runtime ``name`` (the binary at ``path``, already checked by
    :func:`harness.backends.oci.runtimes.declare`) as a container backend: crun's entry with
    the crun binary's check replaced by one of ``path``. Declaring a user runtime's name
    again replaces it; :class:`validate.Invalid` if the name is malformed or another
    backend's (a built-in, a plug-in)."""
    check_runtime_name(name)
    entry = BackendInfo(
        name, OCI_TARGET, CONTAINER, f"the same image as an OCI bundle, run by {path}",
        needs=("root", "namespaces", "overlayfs", "cgroups", runtime_needs(name), "image"),
        sweeper=OCI_SWEEPER, args=(name, path),
    )
    _TABLE[name] = entry
    return entry


def is_user_runtime(name: str) -> bool:
    """Whether ``name`` is an OCI runtime a user named (not a built-in or a plug-in)."""
    entry = _TABLE.get(name)
    return entry is not None and entry.target == OCI_TARGET and bool(entry.args)


def user_runtimes() -> dict[str, str]:
    """name -> path of every user-named OCI runtime entered so far."""
    return {b.name: b.args[1] for b in _TABLE.values() if is_user_runtime(b.name)}


def unregister(name: str) -> None:
    if any(backend.name == name for backend in BACKENDS):
        raise ValueError(f"{name!r} is a built-in backend")
    _TABLE.pop(name, None)


def names() -> tuple[str, ...]:
    """Every backend name, built-ins in table order first."""
    return tuple(_TABLE)


def rank(name: str) -> int:
    """Where ``name`` sorts among backends: its backend's place in the table (labelled names
    beside their backend; unknown ones, e.g. of old runs, after every known one)."""
    order = names()
    return order.index(base(name)) if base(name) in order else len(order)


@dataclass(frozen=True)
class BackendNames(validate.Names):
    """A backend name, plain or labelled (``floor:namespaces``): the backend checked against
    the table, the label against :data:`LABEL`."""

    def check(self, name: object) -> str:
        if isinstance(name, str) and LABEL_SEPARATOR in name:
            backend, _, given = name.partition(LABEL_SEPARATOR)
            super().check(backend)
            try:
                LABEL.check(given)
            except validate.Invalid as error:
                raise validate.Invalid(f"backend {name!r}: {error}") from None
            return name
        return super().check(name)


# A backend name, and a list of them (``--backend a,b``), as the one validator checks them:
# against this table as it is when checked (plug-ins and tests' fakes included).
NAME = BackendNames(names, what="backend")
NAME_LIST = BackendNames(names, what="backend", separator=",")


def info(name: str) -> BackendInfo:
    """The entry of ``name`` (a labelled name's: its backend's); KeyError names the known
    backends."""
    try:
        return _TABLE[base(name)]
    except KeyError:
        raise KeyError(f"unknown backend {name!r}, expected one of {', '.join(_TABLE)}") from None


def family(name: str) -> str:
    """``container`` or ``vm`` (unknown names, e.g. of old runs, count as containers)."""
    return _TABLE[base(name)].family if base(name) in _TABLE else CONTAINER


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
