"""What a scenario needs while it runs: backends, instance names, sample making, progress."""

from __future__ import annotations

import itertools
import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from harness.backends import registry
from harness.backends.base import WARM, Backend, Instance, InstanceSpec
from harness.backends.chores import Live
from harness.backends.launch import Launch
from harness.results import RunWriter, Sample
from harness.scenario import Scenario
from imagestore.image import Image


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold back SIGINT/SIGTERM raised inside the block; re-raise them once it is done.

    Only the main thread receives signals: elsewhere (a density batch's launch threads) this
    does nothing, and the main thread waits for the launches before it cleans up.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            raise KeyboardInterrupt(f"signal {pending[0]}")


@dataclass
class RunContext:
    """Shared state of one run; scenario modules receive it."""

    writer: RunWriter
    image: Image
    backends: dict[str, Backend]
    descriptions: dict[str, dict[str, Any]]
    console: Console = field(default_factory=lambda: Console(stderr=True))
    quiet: bool = False
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    seed: int = field(default_factory=lambda: secrets.randbits(32))  # the turn order's seed
    incomplete: bool = False  # a measurement failed: the run is marked incomplete
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    live: dict[str, Live] = field(default_factory=dict)  # backend → its instances, by name
    launch: Launch | None = None  # the imported image's process (harness.backends.launch)

    @property
    def run_id(self) -> str:
        return self.writer.run_id

    def spec(self, scenario: Scenario[Any]) -> InstanceSpec:
        """A fresh instance spec (unique ``cvbench-`` name) for ``scenario``."""
        return InstanceSpec(
            name=f"cvbench-{self.tag}-{next(self._counter)}",
            image=self.image,
            memory_limit_mib=scenario.memory_limit_mib,
            pids_limit=scenario.pids_limit,
            cpu_limit=scenario.cpu_limit,
            network=scenario.network,
            guest_memory_mib=scenario.guest_memory_mib,
            vcpus=scenario.vcpus,
            disk=scenario.disk,
            accel=scenario.accel,
            ready=scenario.ready_rule,
            launch=self.launch,
        )

    def accel(self, backend: str) -> str:
        return str(self.descriptions.get(backend, {}).get("accel", "none"))

    def sample(
        self, scenario: Scenario[Any], backend: str, metric: str, value: float, unit: str,
        **dims: Any,
    ) -> Sample:
        is_vm = registry.family(backend) == registry.VM
        return Sample(
            run_id=self.run_id,
            scenario=scenario.name,
            kind=scenario.kind,
            backend=backend,
            metric=metric,
            value=value,
            unit=unit,
            accel=self.accel(backend),
            network=scenario.network if not is_vm or scenario.network == "bridge" else "none",
            guest_memory_mib=scenario.guest_memory_mib if is_vm else "",
            image_digest=self.image.digest,
            **dims,
        )

    def record(self, samples: list[Sample]) -> None:
        self.writer.add(samples)

    def start(self, backend: str, scenario: Scenario[Any], spec: InstanceSpec | None = None
              ) -> Instance:
        """Cold-start one instance of ``scenario`` (or ``spec``, a kind's own variation of
        :meth:`spec`) on ``backend`` and track it for cleanup.

        An interrupt that arrives while the backend starts it is deferred until the instance
        is tracked, so it can never leave an instance nobody stops. (Signals are deferred in
        Python, not masked, because a mask would be inherited by the workload.)
        """
        with deferred_interrupts():
            instance = self.backends[backend].start(spec or self.spec(scenario))
            self.track(backend, instance)
        return instance

    def create(self, backend: str, scenario: Scenario[Any], variant: str = WARM) -> Instance:
        """Prepare one instance for a warm start or a restore (untimed), tracked like a
        started one."""
        with deferred_interrupts():
            instance = self.backends[backend].create(self.spec(scenario), variant)
            self.track(backend, instance)
        return instance

    def track(self, backend: str, instance: Instance) -> None:
        self.live.setdefault(backend, Live()).add(instance)

    def untrack(self, backend: str, instance: Instance) -> None:
        if backend in self.live:
            self.live[backend].drop(instance)

    def stop(self, backend: str, instance: Instance) -> None:
        """Stop a tracked instance, remove what it held, forget it."""
        self.backends[backend].stop(instance)
        self.backends[backend].remove(instance)
        self.untrack(backend, instance)

    def stop_all(self, backend: str, instances: list[Instance]) -> None:
        """Stop ``instances`` newest first, emptying the list as it goes."""
        while instances:
            self.stop(backend, instances.pop())

    def note_failure(self, scenario: Scenario[Any], backend: str, reason: str) -> None:
        failures = self.writer.metadata.setdefault("failures", [])
        failures.append({"scenario": scenario.name, "backend": backend, "reason": reason})
        if not self.quiet:
            self.console.print(f"[yellow]{backend}: {reason}[/yellow]")

    def fail(self, scenario: Scenario[Any], backend: str, reason: str) -> None:
        """A measurement that should have been made failed: note it, and mark the run
        incomplete (it goes on)."""
        self.incomplete = True
        self.note_failure(scenario, backend, reason)

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            disable=self.quiet,
            transient=False,
        )
        with progress:
            yield progress
