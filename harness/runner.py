"""Run a suite: check inputs, prepare backends, run each scenario, always clean up.

Nothing is started before the suite, the image and every backend have been checked. Each
scenario is run by its kind's ``run`` function (:mod:`harness.kinds.registry`). Ctrl-C (or
SIGTERM) stops the run, stops every live instance, and marks the run ``incomplete``; the
samples gathered so far stay on disk. A clean-up step that fails is logged and recorded as a
line of the run's ``metadata["cleanup_failures"]``, and the clean-up goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from harness import backends as backend_registry
from harness import hostinfo, runlock
from harness.backends import launch as launches
from harness.backends import ready_rule, registry, restorable
from harness.backends.base import Backend, BackendError
from harness.context import RunContext
from harness.kinds import registry as kinds
from harness.normalize import write_normalized
from harness.results import RunWriter, new_run_id
from harness.scenario import Suite
from imagestore import image as images
from imagestore import imageconfig

log = logging.getLogger(__name__)


class RunInterrupted(Exception):
    """The run was stopped by a signal; it is marked incomplete."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def image_launch(image: images.Image) -> launches.Launch | None:
    """The process an imported image runs (its OCI config resolved against its rootfs), or
    None for an image cvbench built (it runs /init); BackendError (one line) if the config
    names a workdir or user the image lacks."""
    config = imageconfig.load(image)
    if config is None:
        return None
    try:
        return launches.resolve(config, image.rootfs)
    except launches.LaunchError as error:
        raise BackendError(f"image {image.name}: {error}") from None


def prepare_backends(suite: Suite, image: images.Image,
                     launch: launches.Launch | None = None) -> dict[str, Backend]:
    """Create and prepare every backend the suite uses; raise BackendError before any start.

    An imported image (``launch``) runs where a backend honours its workdir and user (its
    ``launch_fields``; the VMs boot it from its disk: harness.backends.guests), never from a
    VM snapshot; the rest is refused in one line."""
    created: dict[str, Backend] = {}
    try:
        for name in suite.backends:
            options = suite.options_for(name)
            try:
                backend = backend_registry.create(name, **options)
            except BackendError as error:
                raise BackendError(f"{suite.path}: [backend_options.{name}]: {error}") from None
            created[name] = backend
        for name, backend in created.items():  # a restore one cannot make, a readiness
            for scenario in suite.scenarios:   # rule it cannot keep: refused first
                if name not in suite.backends_for(scenario):
                    continue
                if line := restorable.refusal(name, backend, scenario,
                                              imported=launch is not None):
                    raise BackendError(line)
                if line := ready_rule.refusal(name, backend, scenario.ready_rule):
                    raise BackendError(f"scenario {scenario.name!r}: {line}")
            if line := launches.refusal(name, backend, launch):
                raise BackendError(line)
        for backend in created.values():
            backend.prepare(image)
        check_same_guest(created)
    except BaseException:
        for backend in created.values():
            backend.cleanup()
        raise
    return created


def check_same_guest(backends: dict[str, Backend]) -> None:
    """BackendError unless the VM backends of a suite boot the same guest (machine, TCG
    cache, balloon, kernel command line): their ratios would compare different work. A
    backend whose machine type is its point (``own_machine`` in its description: microvm)
    agrees with the others on all but its machine (:data:`guests.MACHINE_KEYS`)."""
    guests: dict[str, dict[str, Any]] = {}
    own: set[str] = set()  # backends whose machine type is their point
    for name, backend in backends.items():
        facts = backend.describe() if registry.family(name) == registry.VM else {}
        if facts.get("guest") is not None:
            guests[name] = facts["guest"]
            if facts.get("own_machine"):
                own.add(name)
    if len(guests) < 2:
        return
    from harness.backends.guests import MACHINE_KEYS  # loaded only where VM backends are

    def differ(views: list[dict[str, Any]]) -> bool:
        return len({repr(sorted(view.items())) for view in views}) > 1

    shared = [{k: v for k, v in guest.items() if k not in MACHINE_KEYS}
              for guest in guests.values()]
    if differ(shared) or differ([guest for name, guest in guests.items() if name not in own]):
        described = "; ".join(f"{name}: " + ", ".join(f"{k}={v!r}" for k, v in guest.items())
                              for name, guest in guests.items())
        raise BackendError("the VM backends must boot the same guest, give them the same "
                           f"[backend_options]: {described}")


def raise_open_file_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit (density runs need many descriptors)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run_suite(suite: Suite, results_dir: Path, quiet: bool = False) -> Path:
    """Run every scenario of ``suite`` on its backends; return the run directory."""
    with runlock.running():
        return _run_suite(suite, results_dir, quiet)


def _run_suite(suite: Suite, results_dir: Path, quiet: bool) -> Path:
    image = images.load_verified(suite.image)
    launch = image_launch(image)
    raise_open_file_limit()
    backends = prepare_backends(suite, image, launch)
    descriptions = {name: backend.describe() for name, backend in backends.items()}
    metadata = {
        "suite": suite.name,
        "suite_file": str(suite.path),
        "scenario_text": suite.text,
        "scenarios": [s.name for s in suite.scenarios],
        # what READY meant in each scenario, the same for all its backends (ready_rule)
        "ready": {s.name: s.ready_rule.as_dict() for s in suite.scenarios},
        "backend_order": list(suite.backends),  # as the suite lists them (reports keep it)
        "backends": descriptions,
        "runtimes": suite.runtimes,  # user-named OCI runtimes: name -> binary
        "image": {"name": suite.image, "digest": image.digest,
                  # an imported image's process, as every backend ran it (None: its /init)
                  "launch": dataclasses.asdict(launch) if launch is not None else None},
        **hostinfo.collect(),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    writer = RunWriter.create(results_dir, new_run_id(suite.name), metadata)
    ctx = RunContext(writer, image, backends, descriptions, quiet=quiet, launch=launch)
    if suite.seed is not None:
        ctx.seed = suite.seed
    writer.metadata["order_seed"] = ctx.seed
    writer.write_metadata()
    status, error = "failed", None
    try:
        with _sigterm_as_interrupt():
            for scenario in suite.scenarios:
                kinds.info(scenario.kind).run(ctx, scenario, suite.backends_for(scenario))
        status = "incomplete" if ctx.incomplete else "complete"
    except KeyboardInterrupt:
        status, error = "incomplete", "interrupted"
        raise RunInterrupted(f"run {writer.run_id} interrupted; marked incomplete") from None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        with _ignore_interrupts():
            _clean_up(ctx, backends, status, error)
    return writer.directory


def _clean_up(ctx: RunContext, backends: dict[str, Backend], status: str,
              error: str | None) -> None:
    """Stop what is still live, clean every backend up, finish the run, write its ratios."""
    writer = ctx.writer
    for name, backend in backends.items():
        for instance in list(ctx.live.get(name, {}).values()):
            if _attempt(writer, f"stop {instance.name} on {name}", backend.stop, instance):
                _attempt(writer, f"remove {instance.name} on {name}", backend.remove, instance)
        _attempt(writer, f"clean-up of {name}", backend.cleanup)
    writer.finish(status, error)
    if not _attempt(writer, "normalized.csv", write_normalized, writer.directory):
        writer.write_metadata()  # finish() wrote it before this failure


def _attempt(writer: RunWriter, what: str, function: Callable[..., object], *args: Any) -> bool:
    """Call ``function``; if it fails, log it and record it in the metadata, and go on
    (`cvbench clean` removes what is left). True if it succeeded."""
    try:
        function(*args)
    except Exception as exc:
        line = f"{what}: {type(exc).__name__}: {exc}"
        log.warning("clean-up failed: %s", line)
        writer.metadata.setdefault("cleanup_failures", []).append(line)
        return False
    return True


@contextmanager
def _ignore_interrupts() -> Iterator[None]:
    """Let cleanup finish even if the user presses Ctrl-C again."""
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
