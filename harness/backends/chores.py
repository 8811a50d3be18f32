"""What every backend does the same way, written once: :class:`Chores` is the base class of
every built-in backend.

- the live map (:class:`Live`): the instances made and not yet removed, by name; the run's
  own record of them (:class:`harness.context.RunContext`) is the same kind of map;
- the cold/warm/restore split: :meth:`Chores.start` and :meth:`Chores.create` call the
  backend's one ``_launch(spec, variant)`` and track what it made, with its spec's readiness
  rule (``Instance.ready``; a rule whose kind the backend's ``ready_kinds`` lacks is refused
  before anything is made: the runner refuses it earlier, per scenario); :class:`SplitStart` is the
  split of an engine whose cold start is its own create step followed by its start step;
- the end of an instance: :meth:`Chores.remove` forgets it whatever its ``_remove`` did;
  :meth:`Chores._discard` stops and removes one that failed half-way, ignoring errors;
- :meth:`Chores.cleanup`: stop then remove every live instance, going on past errors, then
  the backend's own ``_close``.

The hooks (``_launch``, ``stop``, ``_remove``, ``_close``) are the backend's own work; nothing
here adds a step inside the clock beyond one call and one map entry.
"""

from __future__ import annotations

import logging

from harness.backends import ready_rule
from harness.backends.base import (
    COLD,
    WARM,
    BackendError,
    Instance,
    InstanceSpec,
    no_warm_start,
)

log = logging.getLogger(__name__)


class Live(dict[str, Instance]):
    """Instances by name, made and not yet removed."""

    def add(self, instance: Instance) -> Instance:
        self[instance.name] = instance
        return instance

    def drop(self, instance: Instance) -> None:
        self.pop(instance.name, None)


class Chores:
    """The base of a backend: the live map, cold/warm, remove, discard, clean-up."""

    name: str
    variants: tuple[str, ...] = (COLD, WARM)
    # the kinds of readiness rule honoured besides the default line (ready_rule.KINDS)
    ready_kinds: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.live = Live()

    # -- cold and warm ------------------------------------------------------------------------

    def start(self, spec: InstanceSpec) -> Instance:
        """Cold: ``_launch(spec, COLD)``, tracked."""
        self._check_ready(spec)
        instance = self._launch(spec, COLD)
        instance.ready = spec.ready
        return self.live.add(instance)

    def create(self, spec: InstanceSpec, variant: str = WARM) -> Instance:
        """Warm or restore, before the clock: ``_launch(spec, variant)``, tracked;
        :meth:`resume` runs it. BackendError for a variant the backend does not offer."""
        if variant == COLD or variant not in self.variants:
            raise no_warm_start(self.name, variant)
        self._check_ready(spec)
        instance = self._launch(spec, variant)
        instance.variant = variant
        instance.ready = spec.ready
        return self.live.add(instance)

    def _check_ready(self, spec: InstanceSpec) -> None:
        if line := ready_rule.refusal(self.name, self, spec.ready):
            raise BackendError(line)

    def _launch(self, spec: InstanceSpec, variant: str) -> Instance:
        """Make ``spec`` for ``variant``: running for COLD, prepared for WARM (and, where
        offered, staged for RESTORE)."""
        raise NotImplementedError

    def resume(self, instance: Instance) -> None:
        raise NotImplementedError

    # -- the end of an instance ---------------------------------------------------------------

    def stop(self, instance: Instance) -> None:
        raise NotImplementedError

    def remove(self, instance: Instance) -> None:
        """The backend's ``_remove``; the instance is forgotten even if that fails."""
        try:
            self._remove(instance)
        finally:
            self.live.drop(instance)

    def _remove(self, instance: Instance) -> None:
        raise NotImplementedError

    def _discard(self, instance: Instance) -> None:
        """Stop and remove an instance that failed half-way, each step whatever the other
        did; their errors are not the caller's (it has its own to raise)."""
        for step in (self.stop, self.remove):
            try:
                step(instance)
            except Exception as error:
                log.debug("%s: discarding %s: %s: %s", self.name, instance.name,
                          step.__name__, error)

    # -- the end of the run -------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop then remove every live instance (one that will not stop is not removed, and
        the next is tried), then ``_close``; idempotent."""
        for instance in list(self.live.values()):
            try:
                self.stop(instance)
                self.remove(instance)
            except Exception as error:
                log.debug("%s: clean-up of %s: %s", self.name, instance.name, error)
        self._close()

    def _close(self) -> None:
        """What the backend holds besides its instances (servers, networks, connections)."""


class SplitStart(Chores):
    """An engine whose cold start is its create step then its start step: cold times both
    (an instance whose start fails is discarded), warm leaves the start to :meth:`resume`."""

    def _launch(self, spec: InstanceSpec, variant: str) -> Instance:
        instance = self._create(spec)
        if variant == COLD:
            try:
                self.resume(instance)
            except BaseException:
                self._discard(instance)
                raise
        return instance

    def _create(self, spec: InstanceSpec) -> Instance:
        raise NotImplementedError
