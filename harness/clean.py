"""`cvbench clean`: remove every leftover of earlier runs, also after a SIGKILLed harness."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from harness import runlock
from harness.backends import registry


def _sweeper(target: str) -> Callable[[], list[str]]:
    """The function a registry ``sweeper`` entry (``module:function``) names."""
    module_name, _, function = target.partition(":")
    sweeper: Callable[[], list[str]] = getattr(importlib.import_module(module_name), function)
    return sweeper


def clean_all(force: bool = False) -> list[str]:
    """Run every sweeper; return one line per removed object (or per sweeper that failed).

    Refuses (RunInProgress) while a run holds the state directory, unless ``force``.
    """
    if force:
        return _sweep_all()
    with runlock.exclusive():
        return _sweep_all()


# What scenario kinds, the gate and image builds or imports leave on the host besides
# instances (after the backends' sweepers), then what the backends share (the bridge's
# address leases, freed once their owners are gone).
KIND_SWEEPERS = ("harness.kinds.workload:sweep", "harness.gate.reference:sweep",
                 "imagestore.scratch:sweep")
SHARED_SWEEPERS = ("runtime.sweep:sweep_network",)
# What cvbench's tools used outside a run leave: cvbench-runtime's half-made containers.
TOOL_SWEEPERS = ("runtime.oci.sweep:sweep",)


def _sweep_all() -> list[str]:
    lines: list[str] = []
    # Each backend's sweeper owns one kind of object and finds its own leftovers by prefix.
    for target in (*registry.sweepers(), *KIND_SWEEPERS, *TOOL_SWEEPERS, *SHARED_SWEEPERS):
        try:
            lines.extend(_sweeper(target)())
        except Exception as error:  # one broken sweeper must not hide the others' work
            lines.append(f"{target}: sweep failed: {error}")
    if not lines:
        lines.append("nothing to clean")
    return lines
