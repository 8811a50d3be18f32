"""Fakes for testing the runner and the scenario kinds anywhere, without root.

``FakeBackend`` starts nothing: an instance is a record, READY and stop succeed or fail as
told. ``FakeHost`` stands in for the host's memory and KSM readings (``harness.metrics``), its
free memory falling by ``per_instance`` bytes for each fake instance alive. ``context()`` is a
``RunContext`` over fake backends writing a real run directory.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import memory_items, metrics
from harness.backends import registry
from harness.backends.base import (
    COLD,
    RESTORE,
    WARM,
    BackendError,
    Instance,
    InstanceSpec,
    MemorySample,
    Method,
    NotReady,
)
from harness.context import RunContext
from harness.results import RunWriter
from imagestore.image import Image

MIB = 1024 * 1024
GIB = 1024 * MIB
FAKE_BACKENDS = (
    registry.BackendInfo("fake", "fakes:FakeBackend", registry.CONTAINER,
                         "a record per instance, nothing started"),
    registry.BackendInfo("fakevm", "fakes:FakeVM", registry.VM,
                         "a record per instance, nothing started, counted as a VM"),
)


class FakeBackend:
    """A backend whose instances are records. Keyword options (also from a scenario file's
    ``[backend_options.<name>]``) say what fails and how long starts take."""

    name = "fake"
    variants = (COLD, WARM)

    def __init__(
        self, *, name: str = "", fail_ready_from: int = 0, fail_ready: Collection[int] = (),
        fail_stop: bool = False, fail_cleanup: bool = False, start_s: float = 0.0,
        ready_s: float = 0.0, events: list[tuple[str, str, str]] | None = None,
        restore: bool = False,
    ) -> None:
        self.name = name or self.name
        if restore:  # starts from a snapshot too
            self.variants = (*type(self).variants, RESTORE)
        self.fail_ready_from = fail_ready_from  # the n-th start and every later one fail READY
        self.fail_ready = set(fail_ready)  # these start numbers (from 1) fail READY
        self.fail_stop, self.fail_cleanup = fail_stop, fail_cleanup
        self.start_s, self.ready_s = start_s, ready_s
        self.events = [] if events is None else events  # (backend, action, instance name)
        self.live: dict[str, Instance] = {}
        self.starts = 0

    def prepare(self, image: Image) -> None:
        self.events.append((self.name, "prepare", image.name))

    def start(self, spec: InstanceSpec) -> Instance:
        self.starts += 1
        time.sleep(self.start_s)
        instance = Instance(spec.name, self.name, handle=self.starts,
                            phases={"fake_call_s": 0.000_5})
        self.live[spec.name] = instance
        self.events.append((self.name, "start", spec.name))
        return instance

    def create(self, spec: InstanceSpec, variant: str = WARM) -> Instance:
        if variant not in self.variants:
            raise BackendError(f"backend {self.name!r} has no {variant} start")
        self.starts += 1
        instance = Instance(spec.name, self.name, handle=self.starts, variant=variant)
        self.live[spec.name] = instance
        self.events.append((self.name, "create" if variant == WARM else f"create {variant}",
                            spec.name))
        return instance

    def resume(self, instance: Instance) -> None:
        time.sleep(self.start_s)
        self.events.append((self.name, "resume", instance.name))

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        time.sleep(self.ready_s)
        number = instance.handle
        if number in self.fail_ready or 0 < self.fail_ready_from <= number:
            raise NotReady(f"{instance.name} never printed READY")
        self.events.append((self.name, "ready", instance.name))

    def stop(self, instance: Instance) -> None:
        if self.fail_stop:
            raise BackendError(f"{instance.name} would not stop")
        self.events.append((self.name, "stop", instance.name))

    def remove(self, instance: Instance) -> None:
        self.live.pop(instance.name)
        self.events.append((self.name, "remove", instance.name))

    def memory(self, instance: Instance) -> MemorySample:
        if registry.family(self.name) == registry.VM:
            return MemorySample(pss=140 * MIB, uss=130 * MIB, rss=150 * MIB,
                                guest_ram=100 * MIB, vmm_overhead=40 * MIB)
        return MemorySample(pss=MIB, uss=MIB // 2, rss=2 * MIB, cgroup=MIB)

    def cleanup(self) -> None:
        self.events.append((self.name, "cleanup", ""))
        if self.fail_cleanup:
            raise BackendError("cleanup failed")
        self.live.clear()

    def describe(self) -> dict[str, Any]:
        method = Method(cold=("nothing", "a record"), warm=("a record", "an event"),
                        stop="an event", remove="the record")
        return {"accel": "none", "fake": True, "method": method.as_dict()}


class FakeVM(FakeBackend):
    name = "fakevm"


@dataclass
class FakeHost:
    """Host memory and KSM as ``harness.metrics`` reads them, following the fake instances, and
    the cost of an empty cgroup as ``harness.memory_items`` would measure it (no cgroup made)."""

    backends: list[FakeBackend]
    total: int = 16 * GIB
    per_instance: int = 100 * MIB
    ksm_on: bool = False
    scan_pages: int = 100
    empty_cgroup: int = 64 * 1024
    ksm_switches: list[bool] = field(default_factory=list)

    def alive(self) -> int:
        return sum(len(backend.live) for backend in self.backends)

    def host_memory(self) -> metrics.HostMemory:
        return metrics.HostMemory(mem_available=self.total - self.alive() * self.per_instance,
                                  committed_as=self.alive() * self.per_instance,
                                  ksm_pages_shared=0, ksm_pages_sharing=7 if self.ksm_on else 0)

    def memory_level(self, *_args: Any, **_kwargs: Any) -> metrics.MemoryLevel:
        used = self.alive() * self.per_instance
        return metrics.MemoryLevel(available=self.total - used, accounted=used)

    def set_ksm(self, on: bool) -> None:
        self.ksm_switches.append(on)
        self.ksm_on = on

    def set_scan_pages(self, pages: int) -> None:
        self.scan_pages = pages

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
        monkeypatch.setattr(metrics, "host_memory", self.host_memory)
        monkeypatch.setattr(metrics, "memory_level", self.memory_level)
        monkeypatch.setattr(metrics, "settled_memory_level", self.memory_level)
        monkeypatch.setattr(metrics, "ksm_running", lambda: self.ksm_on)
        monkeypatch.setattr(metrics, "ksm_scan_pages", lambda: self.scan_pages)
        monkeypatch.setattr(metrics, "set_ksm", self.set_ksm)
        monkeypatch.setattr(metrics, "set_ksm_scan_pages", self.set_scan_pages)
        monkeypatch.setattr(memory_items, "empty_cgroup_bytes", lambda: self.empty_cgroup)
        return self


def context(tmp_path: Path, *backends: FakeBackend) -> RunContext:
    """A quiet RunContext over ``backends``, writing ``tmp_path/run``."""
    writer = RunWriter.create(tmp_path, "run", {"suite": "test"})
    image = Image("fake", "sha256:" + "0" * 64, tmp_path)
    by_name = {backend.name: backend for backend in backends}
    return RunContext(writer, image, dict(by_name),
                      {name: backend.describe() for name, backend in by_name.items()}, quiet=True)


def samples(ctx: RunContext, metric: str | None = None, backend: str | None = None) -> list:
    """The samples recorded so far, optionally of one metric and one backend."""
    return [s for s in ctx.writer.samples
            if (metric is None or s.metric == metric) and (backend is None or s.backend == backend)]


def starts(events: list[tuple[str, str, str]]) -> list[str]:
    """The backends' names in the order they started instances."""
    return [backend for backend, action, _ in events if action == "start"]
