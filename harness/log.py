"""Logging for cvbench: one compact stderr format, verbosity from ``-v``.

Modules log through ``logging.getLogger(__name__)`` and never configure anything; a command
line calls :func:`configure_logging` once. ``-v`` shows INFO, ``-vv`` DEBUG, default WARNING.
Only the project's own packages get louder: third-party libraries (matplotlib, pandas, ...)
stay at WARNING at any verbosity.
"""

from __future__ import annotations

import logging
import sys

PACKAGES = ("harness", "runtime", "vm", "imagestore", "hostkit")
FORMAT = "%(asctime)s.%(msecs)03d %(levelname).1s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"


def level_for(verbosity: int) -> int:
    """0 → WARNING, 1 → INFO, 2 or more → DEBUG."""
    if verbosity >= 2:
        return logging.DEBUG
    return logging.INFO if verbosity == 1 else logging.WARNING


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest swaps it per test)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(verbosity: int = 0) -> None:
    """Send log lines to stderr; the project's packages at :func:`level_for` ``verbosity``.

    Idempotent: calling it again replaces the handler and levels set by an earlier call.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    root.addHandler(handler)
    for package in PACKAGES:
        logging.getLogger(package).setLevel(level_for(verbosity))
