"""Where ``ours``' overlay root is charged on cgroup v2 (root; hold the host lock).

    flock /tmp/cvbench-host.lock .venv/bin/python scripts/overlay_charge.py --instances 8

Starts ``--instances`` idle cold ``ours`` containers one after the other on the cgroup2 tree
(wherever it is mounted: ``/sys/fs/cgroup`` on a v2 host, the unified tree of a hybrid one),
reads each container cgroup's ``memory.current`` and ``memory.stat`` (slab, kernel, file)
right after READY, then removes them all, waits ``--settle`` seconds and reads
``nr_dying_descendants`` of the state directory's cgroup parent (counted before too, so only
these containers count). Why: a cold init that mounts its overlay while it is already in its
memory cgroup (born there by clone3 CLONE_INTO_CGROUP) gets the overlay's kernel objects
(superblock, dentries, inodes, the upper filesystem's work/work metadata) charged to that
cgroup, and pages of them keep the removed cgroup alive as a dying one; the fork server
mounting it outside (a detached mount, attached by the init) leaves the container neither.
On a host whose cgroup2 tree has no memory controller (a hybrid one) the memory figures are
absent and only the counts are printed. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hostkit import mountinfo  # noqa: E402
from imagestore import image as images  # noqa: E402
from runtime import cgroups  # noqa: E402
from runtime.container import Runtime  # noqa: E402
from runtime.spec import default_spec  # noqa: E402

STAT_KEYS = ("slab", "slab_reclaimable", "slab_unreclaimable", "kernel", "file", "anon")


def cgroup2_root() -> Path:
    """The cgroup2 mount point (the first one in /proc/self/mountinfo)."""
    points = mountinfo.cgroup2_points(mountinfo.read())
    if not points:
        raise SystemExit("overlay_charge: no cgroup2 hierarchy is mounted")
    return Path(points[0])


def memory_stat(directory: Path) -> dict[str, int]:
    """``memory.current`` and the :data:`STAT_KEYS` of ``memory.stat`` (empty: no memory
    controller in that cgroup)."""
    try:
        current = int((directory / "memory.current").read_text())
        lines = (directory / "memory.stat").read_text().splitlines()
    except OSError:
        return {}
    stat = dict(line.split() for line in lines)
    return {"current": current, **{key: int(stat[key]) for key in STAT_KEYS if key in stat}}


def dying(directory: Path) -> int:
    """``nr_dying_descendants`` of cgroup ``directory`` (0 if it is gone)."""
    try:
        lines = (directory / "cgroup.stat").read_text().splitlines()
    except OSError:
        return 0
    return int(dict(line.split() for line in lines)["nr_dying_descendants"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after removal")
    args = parser.parse_args()
    image = images.build()
    readings: list[dict[str, int]] = []
    with Runtime() as rt:
        rt.cgroups = cgroups.V2Driver(cgroup2_root())
        parent = rt.cgroups.root / rt.parent
        dying_before = dying(parent)
        started = []
        for index in range(args.instances):
            name = f"cvbench-ovlcharge-{os.getpid()}-{index}"
            container = rt.run(default_spec(image, name), name)
            started.append(container)
            readings.append(memory_stat(rt.cgroups.root / container.cgroup))
        for container in started:
            rt.destroy(container)
        time.sleep(args.settle)
        dying_after = dying(parent)
    keys = readings[0].keys() if readings else ()
    print(json.dumps({
        "cgroup2": str(rt.cgroups.root),
        "instances": args.instances,
        "median_after_ready": {key: statistics.median(r[key] for r in readings) for key in keys},
        "per_container_slab": [r.get("slab") for r in readings],
        "dying_descendants": {"before": dying_before, "after_settle": dying_after},
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
