"""What the experiment subcommands (``items``, ``profile``, ``idle``) share: a run, made by the
runner as ``cvbench run`` makes one, of a scenario the subcommand builds from its options.

An experiment is a run: the runner holds the state directory's lock (``cvbench clean``
refuses meanwhile), checks the image, creates and prepares the backends through the backend
registry, writes ``metadata.json`` (host, backends, seed) and ``samples.csv`` into
``<out>/<run-id>/``, and always stops what was started and cleans every backend up. Its
measuring code is a scenario kind's ``run`` function (the memory kind's, or the experiment's
own, registered for the call), and it launches through the kinds' own code (the density
kind's batch launch), so what it measures is launched as a run launches it. Backend
variants an experiment compares (``ours`` with one feature taken away) are registered for
the call too, so that every sample names what ran.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.commands.base import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, UsageError
from hostkit import validate

if TYPE_CHECKING:
    from harness.backends.registry import BackendInfo
    from harness.kinds.registry import KindInfo
    from harness.scenario import Scenario


def options(out: str, timeout_s: float, option_help: str = "") -> argparse.ArgumentParser:
    """A parent parser (``parents=[...]``) with what every experiment takes: ``--timeout``
    (each READY), ``--out`` (where its run directory goes), ``--quiet`` and, given its help,
    ``--option KEY=VALUE`` (backend options, read by :func:`backend_options`)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--timeout", type=validate.TIMEOUT_S, default=timeout_s,
                        help=f"wait for each READY, {validate.TIMEOUT_S.describe()} "
                             f"(default {timeout_s:g})")
    if option_help:
        parent.add_argument("--option", type=validate.BACKEND_OPTION, action="append",
                            default=[], metavar="KEY=VALUE", help=option_help)
    parent.add_argument("--out", type=validate.PATH, default=out,
                        help=f"where the run directory is written (default {out})")
    parent.add_argument("--quiet", action="store_true", help="no progress bars")
    return parent


def backend_options(items: Iterable[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` items as a backend's keyword options: VALUE read as a TOML value
    where it is one (``true``, ``2.5``, ``"x"``), as in a scenario's ``[backend_options]``,
    else taken as the text (``cmdline_extra=tsc=reliable``)."""
    options: dict[str, Any] = {}
    for item in items:
        key, _, text = item.partition("=")
        try:
            options[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            options[key] = text
    return options


@contextmanager
def registered(kinds: Iterable[KindInfo] = (), backends: Iterable[BackendInfo] = ()
               ) -> Iterator[None]:
    """The experiment's own kind and backend variants, in the registries for the block."""
    from harness.backends import registry
    from harness.kinds import registry as kind_registry

    kinds, backends = tuple(kinds), tuple(backends)
    for kind in kinds:
        kind_registry.register(kind)
    for backend in backends:
        registry.register(backend)
    try:
        yield
    finally:
        for backend in backends:
            registry.unregister(backend.name)
        for kind in kinds:
            kind_registry.unregister(kind.name)


def run(command: str, scenario: Scenario[Any], backends: tuple[str, ...],
        options: dict[str, dict[str, Any]], out: Path, *, quiet: bool = False,
        seed: int | None = None) -> Path | int:
    """Run ``scenario`` on ``backends`` (constructed with ``options``) into ``out`` for
    ``cvbench command``: the run directory, or ``EXIT_INTERRUPTED``. The metadata's
    ``scenario_text`` says what ran, every value included (defaults too). Bad input (a
    backend option, a missing image or backend, a host whose cgroups cvbench cannot use) is a
    UsageError raised before anything starts."""
    from harness import backends as backend_registry
    from harness import hostkind, runner
    from harness.backends.base import BackendError
    from harness.scenario import Suite
    from imagestore.image import ImageError

    text = (f"cvbench {command}\nbackends = {list(backends)}\nbackend_options = {options}\n"
            f"scenario = {scenario!r}\n")
    suite = Suite(path=Path(f"cvbench {command}"), name=scenario.name, text=text,
                  backends=backends,
                  scenarios=(scenario,), backend_options=options, seed=seed)
    try:
        for backend, given in options.items():
            backend_registry.check_options(backend, given)
        hostkind.check()
        return runner.run_suite(suite, out, quiet=quiet)
    except (ImageError, BackendError, hostkind.HostKindError) as error:
        raise UsageError(str(error)) from None
    except runner.RunInterrupted as error:
        print(f"cvbench: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED


def exit_code(run_dir: Path) -> int:
    """EXIT_OK for a complete run in which nothing failed; else one line per failure on
    stderr and EXIT_INCOMPLETE (a kind may note a backend's failure and go on: an experiment
    whose figures miss a backend says so)."""
    from harness import results

    metadata = results.read_metadata(run_dir)
    failures = results.failure_lines(metadata)
    if metadata.get("status") == "complete" and not failures:
        return EXIT_OK
    print(f"cvbench: run {run_dir.name} is {metadata.get('status')}: {len(failures)} "
          "failure(s)", file=sys.stderr)
    for line in failures:
        print(f"cvbench: {line}", file=sys.stderr)
    return EXIT_INCOMPLETE
