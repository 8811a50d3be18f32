"""Backends: one class per kind of instance, all implementing :class:`base.Backend`.

Modules are imported only when their backend is asked for, so that ``cvbench`` starts fast
and a missing optional dependency only matters to the backend that needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.backends.base import Backend, BackendError

REGISTRY = {
    "process": "harness.backends.process:ProcessBackend",
    "ours": "harness.backends.ours:OursBackend",
    "crun": "harness.backends.crun:CrunBackend",
    "runc": "harness.backends.runc:RuncBackend",
    "libvirt": "harness.backends.libvirt:LibvirtBackend",
}


def create(name: str, **options: Any) -> Backend:
    """Instantiate the backend called ``name``."""
    try:
        module_name, class_name = REGISTRY[name].split(":")
    except KeyError:
        known = ", ".join(REGISTRY)
        raise BackendError(f"unknown backend {name!r}, expected one of {known}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendError(f"backend {name!r} is not available: {error}") from None
    return getattr(module, class_name)(**options)
