"""What ``cvbench clean`` removes of ``cvbench-runtime``: containers a killed ``create`` left
half-made under the default ``--root``.

A ``create`` works in a directory named after itself (``.new-<pid>-<start time>-<id>``,
:meth:`runtime.oci.state.Store.make`) and renames it into place only once the container is
complete. Such a directory whose maker is gone is a leftover: its cgroup (named in its
``cgroup`` file, written once ``create`` made it) is emptied and removed, with any init the
killed ``create`` had launched, and the directory is removed. Containers that were made
belong to the engine that made them (it deletes them), as crun's under ``/run/crun`` do: the
sweep leaves them.
"""

from __future__ import annotations

import os
from pathlib import Path

from hostkit.procs import process_alive
from runtime import cgroups
from runtime.oci.state import CGROUP, CREATING_PREFIX, DEFAULT_ROOT, Store


def _maker(name: str) -> tuple[int, int | None] | None:
    """(pid, start time) of the ``create`` a temporary directory's name names."""
    parts = name.removeprefix(CREATING_PREFIX).split("-", 2)
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def sweep(root: Path = DEFAULT_ROOT, driver: cgroups.Driver | None = None) -> list[str]:
    """Remove half-made containers whose ``create`` is gone; one line per removal."""
    if not root.is_dir():
        return []
    lines = []
    for entry in os.scandir(root):
        if not entry.name.startswith(CREATING_PREFIX):
            continue
        maker = _maker(entry.name)
        if maker is not None and process_alive(*maker):
            continue  # a create at work
        directory = Path(entry.path)
        try:
            cgroup = (directory / CGROUP).read_text().strip()
        except OSError:
            cgroup = ""
        if cgroup:
            driver = driver or cgroups.driver()
            try:
                if driver.exists(cgroup):
                    driver.kill(cgroup)
                    driver.remove(cgroup)
                    lines.append(f"cvbench-runtime cgroup {cgroup}")
            except cgroups.CgroupError as error:
                lines.append(f"cvbench-runtime cgroup {cgroup}: {error}")
        Store.discard(directory)
        lines.append(f"half-made cvbench-runtime container {directory}")
    return lines
