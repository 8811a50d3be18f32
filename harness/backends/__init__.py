"""Backends: one class per kind of instance, all implementing :class:`base.Backend`, listed
once in :mod:`harness.backends.registry`.

Modules are imported only when their backend is asked for, so that ``cvbench`` starts fast
and a missing optional dependency only matters to the backend that needs it.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from harness.backends import registry
from harness.backends.base import Backend, BackendError


def backend_class(name: str) -> type:
    """The class of backend ``name`` (imported on demand); BackendError if unknown/missing."""
    try:
        module_name, class_name = registry.info(name).target.split(":")
    except KeyError as error:
        raise BackendError(str(error.args[0])) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendError(f"backend {name!r} is not available: {error}") from None
    return getattr(module, class_name)


def check_options(name: str, options: dict[str, Any]) -> None:
    """BackendError naming the first option ``name``'s constructor does not take."""
    parameters = inspect.signature(backend_class(name)).parameters
    accepted = [p for p, spec in parameters.items()
                if spec.kind is inspect.Parameter.KEYWORD_ONLY]
    for key in options:
        if key not in accepted:
            raise BackendError(f"unknown option {key!r} for backend {name!r}, expected one of "
                               f"{', '.join(accepted) or 'none'}")


def create(name: str, **options: Any) -> Backend:
    """Instantiate the backend called ``name`` with validated keyword options (and the
    registry's own positional ``args``: a user-named OCI runtime's name and path)."""
    check_options(name, options)
    return backend_class(name)(*registry.info(name).args, **options)
