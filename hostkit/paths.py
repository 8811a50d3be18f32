"""Where cvbench keeps its state on the host, and the prefix every kernel object carries."""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "cvbench-"


def state_dir() -> Path:
    """Root of everything cvbench writes on the host (images, containers, VMs, caches).

    Set ``CVBENCH_STATE_DIR`` to move it (tests use a private one).
    """
    return Path(os.environ.get("CVBENCH_STATE_DIR", "/var/lib/cvbench"))


def images_dir() -> Path:
    return state_dir() / "images"


def containers_dir() -> Path:
    return state_dir() / "containers"


def cache_dir() -> Path:
    """Downloaded and derived artifacts (guest kernel, initramfs); survives ``cvbench clean``."""
    return Path(os.environ.get("CVBENCH_CACHE_DIR", "/var/cache/cvbench"))
