"""The ``ours`` backend: cvbench's own container runtime (``runtime/``).

Containers are forked by the runtime's fork server; this adapter maps the harness's
InstanceSpec onto an OCI-subset Spec and the runtime's errors onto BackendError/NotReady.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from harness.backends.base import (
    COLD,
    BackendError,
    Instance,
    InstanceSpec,
    MemorySample,
    NotReady,
    no_warm_start,
)
from harness.backends.containers import container_spec
from imagestore.image import Image, ImageError, verify
from runtime import cgroups
from runtime.container import (
    GRACE_S,
    VERSION,
    Container,
    ContainerError,
    NotReadyError,
    Runtime,
)


class OursBackend:
    """Start/stop containers with cvbench's runtime; one fork server per backend."""

    name = "ours"
    variants: tuple[str, ...] = (COLD,)

    def create(self, spec: InstanceSpec) -> Instance:
        raise no_warm_start(self.name)

    def resume(self, instance: Instance) -> None:
        raise no_warm_start(self.name)

    def __init__(self, *, grace_s: float = GRACE_S, readonly_root: bool = False) -> None:
        self.grace_s = grace_s
        self.readonly_root = readonly_root
        self._runtime: Runtime | None = None
        self.live: dict[str, Instance] = {}

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            if os.geteuid() != 0:
                raise BackendError("the ours backend needs root (namespaces, cgroups)")
            try:
                self._runtime = Runtime()
            except cgroups.CgroupError as error:
                raise BackendError(f"ours: {error}") from None
        return self._runtime

    def prepare(self, image: Image) -> None:
        try:
            verify(image)
        except ImageError as error:
            raise BackendError(str(error)) from None
        self.runtime.server.start()  # fork the server now, not during the first start

    def start(self, spec: InstanceSpec) -> Instance:
        oci = container_spec(spec, readonly=self.readonly_root)
        try:
            container = self.runtime.create(oci, spec.name)
        except ContainerError as error:
            raise BackendError(f"{spec.name}: {error}") from None
        try:
            pid = self.runtime.start(container)
        except ContainerError as error:
            self._destroy(container)
            raise BackendError(str(error)) from None
        instance = Instance(spec.name, self.name, container, [pid])
        self.live[spec.name] = instance
        return instance

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        try:
            self.runtime.wait_ready(instance.handle, timeout)
        except NotReadyError as error:
            raise NotReady(str(error)) from None

    def stop(self, instance: Instance) -> None:
        try:
            self.runtime.stop(instance.handle, grace=self.grace_s)
        except ContainerError as error:
            raise BackendError(str(error)) from None

    def remove(self, instance: Instance) -> None:
        try:
            self.runtime.destroy(instance.handle)
        except ContainerError as error:
            raise BackendError(str(error)) from None
        finally:
            self.live.pop(instance.name, None)

    def memory(self, instance: Instance) -> MemorySample:
        from harness import metrics

        container: Container = instance.handle
        pids = self.runtime.pids(container) or instance.pids
        sample = metrics.process_memory(pids, include_children=False)
        return dataclasses.replace(sample, cgroup=self.runtime.memory_usage(container))

    def cleanup(self) -> None:
        for instance in list(self.live.values()):
            try:
                self.stop(instance)
                self.remove(instance)
            except BackendError:
                continue
        if self._runtime is not None:
            self._runtime.cleanup()
            self._runtime.close()
            self._runtime = None

    def describe(self) -> dict[str, Any]:
        try:
            mode = cgroups.detect_mode()
        except cgroups.CgroupError:
            mode = "none"
        return {
            "runtime": "cvbench",
            "version": VERSION,
            "cgroup_mode": mode,
            "launcher": "fork server (python -S): unshare + fork, overlay inside the mount ns",
        }

    def _destroy(self, container: Container) -> None:
        try:
            self.runtime.destroy(container)
        except ContainerError:
            pass
