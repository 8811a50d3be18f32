"""`cvbench clean`: remove every leftover of earlier runs, also after a SIGKILLed harness."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from harness import runlock

# Each module owns one kind of object and knows how to find its own leftovers by prefix.
SWEEPERS = (
    "harness.backends.process",
    "harness.backends.oci",
    "runtime.container",
    "vm.sweep",
)


def _sweeper(module_name: str) -> Callable[[], list[str]]:
    return importlib.import_module(module_name).sweep


def clean_all(force: bool = False) -> list[str]:
    """Run every sweeper; return one line per removed object (or per sweeper that failed).

    Refuses (RunInProgress) while a run holds the state directory, unless ``force``.
    """
    if force:
        return _sweep_all()
    with runlock.exclusive():
        return _sweep_all()


def _sweep_all() -> list[str]:
    lines: list[str] = []
    for module_name in SWEEPERS:
        try:
            lines.extend(_sweeper(module_name)())
        except Exception as error:  # one broken sweeper must not hide the others' work
            lines.append(f"{module_name}: sweep failed: {error}")
    if not lines:
        lines.append("nothing to clean")
    return lines
