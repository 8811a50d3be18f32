"""Cgroup scopes: each state directory owns the cgroup parent ``cvbench-<8 hex>``.

The parent is derived from the state directory's real path, so separate state directories
(a test's private one, say) never touch each other's cgroups. Each state directory in use
registers ``<cgroup parent> -> <state dir>`` under :func:`scopes_dir`, so that a sweep
finds both after a crash.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

from hostkit.paths import PREFIX, state_dir


def cgroup_parent(directory: Path | None = None) -> str:
    """``cvbench-<8 hex>``: the cgroup parent of a state directory (default: this one)."""
    key = os.path.realpath(directory or state_dir())
    return f"{PREFIX}{hashlib.sha1(key.encode()).hexdigest()[:8]}"


SHARDS = 16
SHARD_PREFIX = "shard-"


def _shard(index: int) -> str:
    return f"{SHARD_PREFIX}{index:x}"


def shard(name: str) -> str:
    """The shard of container ``name`` under its scope's parent: ``shard-0`` .. ``shard-f``."""
    return _shard(zlib.crc32(name.encode()) % SHARDS)


def shards(parent: str) -> list[str]:
    """Every shard of ``parent``: ``<parent>/shard-0`` .. ``<parent>/shard-f``."""
    return [f"{parent}/{_shard(index)}" for index in range(SHARDS)]


# The one cgroup layout of every container backend's containers (ours' and crun's and runc's),
# as :func:`container_cgroup` makes it; ``describe()`` records it for the methodology.
LAYOUT = f"<parent>/{SHARD_PREFIX}<crc32(name) mod {SHARDS}, hex>/<name>"


def container_cgroup(parent: str, name: str) -> str:
    """Container ``name``'s cgroup: ``<parent>/<shard>/<name>`` in every hierarchy.

    Sharded, not flat: the kernel walks a new cgroup's siblings when it makes one (v1 cpuset:
    ``cpuset_css_online`` checks every sibling for exclusive CPUs before it copies the
    parent's), so with every container a sibling of every other the cost of each launch grew
    with the number alive; sixteen shards divide it by sixteen
    (docs/findings/launch-profile.md). The same for
    every container backend: the harness gives crun's and runc's containers this layout too
    (``harness.backends.oci.cgroup``), under their parent ``cvbench-oci``."""
    return f"{parent}/{shard(name)}/{name}"


def scopes_dir() -> Path:
    """Where each state directory in use registers its cgroup parent."""
    return Path(os.environ.get("CVBENCH_SCOPES_DIR", "/run/cvbench-runtime/scopes"))


def register_scope() -> None:
    """Record ``<cgroup parent> -> <state dir>`` for this state directory (idempotent)."""
    link = scopes_dir() / cgroup_parent()
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(os.path.realpath(state_dir()), link)
        except FileExistsError:
            pass


def unregister_scope(parent: str) -> None:
    (scopes_dir() / parent).unlink(missing_ok=True)


def registered_scopes() -> dict[str, Path]:
    """cgroup parent -> state directory: this state directory's and every registered one."""
    scopes = {cgroup_parent(): Path(os.path.realpath(state_dir()))}
    if scopes_dir().is_dir():
        for link in os.scandir(scopes_dir()):
            try:
                scopes.setdefault(link.name, Path(os.readlink(link.path)))
            except OSError:
                continue
    return scopes
