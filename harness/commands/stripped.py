"""``ours`` with one isolation feature taken away: the backend variants of ``cvbench items``.

What a feature costs is the difference between ``ours`` as it is and this backend without it,
measured by the memory kind in one run. Registered for that run only
(:func:`harness.commands.experiment.registered`): a variant is never one of the compared
backends of a scenario file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.backends.base import BackendError, InstanceSpec
from harness.backends.containers import container_spec
from harness.backends.ours import OursBackend
from imagestore.image import Image
from runtime import cgroups
from runtime.container import Container, ContainerError
from runtime.spec import Spec


def _without_ipc_uts(spec: Spec) -> None:
    spec.linux.namespaces = [ns for ns in spec.linux.namespaces if ns.type not in ("ipc", "uts")]


def _without_seccomp(spec: Spec) -> None:
    spec.linux.seccomp = None


def _without_mounts(spec: Spec) -> None:
    """No /proc and /dev/pts, nor the masked and read-only paths inside them; /dev stays:
    the init opens /dev/null on it before it execs."""
    spec.mounts = [mount for mount in spec.mounts if mount.destination == "/dev"]
    spec.linux.masked_paths = []
    spec.linux.readonly_paths = []


def _unchanged(spec: Spec) -> None:
    """The cgroups variant changes the driver, not the spec."""


CHANGES: dict[str, Callable[[Spec], None]] = {  # `without` -> its change to the spec
    "ipc-uts": _without_ipc_uts,
    "seccomp": _without_seccomp,
    "mounts": _without_mounts,
    "cgroups": _unchanged,  # the memory hierarchy only (v1): the other eight are not joined
}


class StrippedBackend(OursBackend):
    """``ours`` whose containers lack ``without`` (a key of :data:`CHANGES`)."""

    name = "ours-stripped"

    def __init__(self, *, without: str) -> None:
        if without not in CHANGES:
            raise BackendError(f"without: expected one of {', '.join(CHANGES)}, got {without!r}")
        super().__init__()
        self.without = without

    def prepare(self, image: Image) -> None:
        if self.without == "cgroups":
            if not isinstance(self.runtime.cgroups, cgroups.V1Driver):
                raise BackendError("ours without 8 of its 9 cgroup hierarchies needs a cgroup "
                                   "v1 or hybrid host (a v2 container has one cgroup)")
            self.runtime.cgroups = cgroups.V1Driver(hierarchies=("memory",))
        super().prepare(image)

    def describe(self) -> dict[str, Any]:
        """``ours``' description, and what its containers lack (``without``)."""
        return {**super().describe(), "without": self.without}

    def _create(self, spec: InstanceSpec, spare: bool) -> Container:
        oci = container_spec(spec, readonly=self.readonly_root)
        CHANGES[self.without](oci)
        try:
            return self.runtime.create(oci, spec.name, spare=spare)
        except ContainerError as error:
            raise BackendError(f"{spec.name}: {error}") from None
