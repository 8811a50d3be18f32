"""Where the floor backend keeps what it makes: every name carries the ``cvbench-`` prefix
or lives under the state directory, so that :mod:`.sweeper` finds it after a crash."""

from __future__ import annotations

from pathlib import Path

from hostkit.paths import PREFIX, cache_dir, state_dir
from runtime import scopes

PARENT = f"{PREFIX}floor"  # the cgroup parent of every floor container, with its 16 shards
PID_FILE = "pid"  # in a container's directory: its init's host pid, for the sweeper


def launcher_path() -> Path:
    """The launcher set-up builds from ``launcher.c`` (scripts/setup.sh)."""
    return cache_dir() / "bin" / "cvbench-floor"


def containers_dir() -> Path:
    """One directory per container (the overlay's upper and work, the pid file)."""
    return state_dir() / "floor" / "containers"


def plans_dir() -> Path:
    """The plan files of the running harnesses."""
    return state_dir() / "floor" / "plans"


def cgroup_path(name: str) -> str:
    """Container ``name``'s cgroup: ``cvbench-floor/<shard>/<name>``, the layout of every
    container backend (:func:`runtime.scopes.container_cgroup`)."""
    return scopes.container_cgroup(PARENT, name)
