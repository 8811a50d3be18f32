"""The seccomp filter the kernel holds for a container backend's containers, as
``describe()["security"]["kernel_filter"]`` reports it.

Every container backend is given one seccomp profile; what confines its containers is the
classic-BPF program the runtime hands the kernel, which depends on the runtime's libseccomp,
its rule order and any rules of its own. So ``describe()`` reads the program back from a
running probe container (:func:`hostkit.seccomp_readback.read_filters`: PTRACE_SEIZE,
PTRACE_INTERRUPT, PTRACE_SECCOMP_GET_FILTER, PTRACE_DETACH), once per backend and variant,
after ``prepare()`` and outside any timed section, and :mod:`harness.methodology` compares
the backends' programs in the report.
"""

from __future__ import annotations

import uuid
from typing import Any

from harness.backends.base import Backend, BackendError, InstanceSpec, launch
from hostkit import seccomp_readback
from hostkit.paths import PREFIX
from imagestore.image import Image

READY_S = 20.0
READ_FROM = ("read back from the init of a running probe container (PTRACE_SECCOMP_GET_FILTER), "
             "in describe(), outside any timed section")


def read(pid: int) -> dict[str, Any]:
    """:func:`hostkit.seccomp_readback.summary` of the filters of process ``pid``, or
    ``{"error": ...}`` if they could not be read."""
    try:
        return seccomp_readback.summary(seccomp_readback.read_filters(pid))
    except OSError as error:
        return {"error": f"pid {pid}: {error}"}


def probe(backend: Backend, image: Image, variant: str) -> dict[str, Any]:
    """Start one default container of ``backend`` (cold: ``start``; warm: ``create`` then
    ``resume``), read its init's filters once it printed READY, stop and remove it."""
    spec = InstanceSpec(name=f"{PREFIX}filter-{backend.name}-{variant}-{uuid.uuid4().hex[:8]}",
                        image=image)
    try:
        instance = launch(backend, spec, variant)
        try:
            backend.wait_ready(instance, READY_S)
            return read(instance.pids[0])
        finally:
            backend.stop(instance)
            backend.remove(instance)
    except BackendError as error:  # NotReady too
        return {"error": f"{variant} probe container: {error}"}


def described(found: dict[str, dict[str, Any]], additions: str) -> dict[str, Any]:
    """``security.kernel_filter``: the filters found per variant, where they were read, and
    what the runtime adds to libseccomp's program of the profile (``additions``)."""
    return {**found, "read_from": READ_FROM, "runtime_additions": additions}


def every_variant(backend: Backend, image: Image, additions: str) -> dict[str, Any]:
    """``security.kernel_filter`` of a backend that offers its variants as probe containers:
    one container of each variant started, read and removed (:func:`probe`)."""
    return described({variant: probe(backend, image, variant) for variant in backend.variants},
                     additions)


class EveryVariant:
    """:func:`every_variant` read once per backend object, on the first ``describe()`` after
    ``prepare()`` (before it there is no image, so nothing to start: None)."""

    def __init__(self, additions: str) -> None:
        self.additions = additions
        self.found: dict[str, Any] | None = None

    def of(self, backend: Backend, image: Image | None) -> dict[str, Any] | None:
        if self.found is None and image is not None:
            self.found = every_variant(backend, image, self.additions)
        return self.found
