"""``sweep()``: remove what crashed harnesses left of the OCI backends (``cvbench clean``).

In this order: launchers with every command still in flight in their sessions (so no ``run``
caught mid-way creates a container after the sweep looked for containers), containers,
overlay mounts, then per container name its left processes, bundle and cgroup, and last the
shared cgroup parent with its empty shards (``cvbench-oci/<shard>/<name>``, :mod:`.cgroup`),
unless another state directory's containers still use it. Names come from the bundles (each is
made before its container) and the runtimes' state directories, never from the shared cgroup
tree: what another state directory's live run holds there is not this sweep's.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal

from harness.backends.oci import cgroup
from harness.backends.oci.bundle import RUNTIMES, Bundle, bundles_dir, runtime_root
from harness.backends.oci.launcher import ARGV_TAG, Launcher
from hostkit import helper, mountinfo, syscalls
from hostkit.paths import PREFIX
from hostkit.procs import signal_and_wait
from runtime import cgroups

KILL_TIMEOUT_S = 5.0


def sweep() -> list[str]:
    """Remove every OCI leftover under this state directory; return one line per object."""
    removed = kill_launchers()
    mode = cgroup.host_mode()
    names = {path.name for path in bundles_dir().iterdir()} if bundles_dir().is_dir() else set()
    for runtime in RUNTIMES:
        ids = containers(runtime)
        names |= set(ids)
        removed += delete_containers(runtime, ids, mode)
    removed += unmount_bundles()
    driver = cgroup.driver(mode)
    for name in sorted(names):
        removed += remove_container_leftovers(driver, name)
    if (driver.exists(cgroup.PARENT) and not driver.containers(cgroup.PARENT)
            and driver.remove_parent(cgroup.PARENT)):  # and its shards
        removed.append(f"cgroup {cgroup.PARENT} and its shards")
    return removed


def kill_launchers() -> list[str]:
    """SIGKILL every recorded launcher and the processes of its session (the runtime commands
    in flight); forget the records."""
    removed = []
    for record in helper.records(ARGV_TAG):
        if record.running():
            members = session_members(record.pid)
            for member in members:
                signal_and_wait(member, signal.SIGKILL, KILL_TIMEOUT_S)
            removed.append(f"oci launcher (pid {record.pid}) and {len(members) - 1} "
                           "process(es) in its session")
        record.remove()
    return removed


def session_members(sid: int) -> list[int]:
    """Every process of session ``sid``, ``sid`` first."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    members.append(int(entry.name))
            except ProcessLookupError:
                continue
    return sorted(members, key=lambda pid: pid != sid)


def containers(runtime: str) -> list[str]:
    """The ids of ``runtime``'s containers (ours only), by its state directory."""
    root = runtime_root(runtime)
    ids = sorted(path.name for path in root.iterdir()) if root.is_dir() else []
    return [name for name in ids if name.startswith(PREFIX)]


def delete_containers(runtime: str, ids: list[str], mode: str) -> list[str]:
    """``<runtime> delete -f`` each container, through a launcher of the sweep's own."""
    binary = shutil.which(runtime)
    if not ids or binary is None:
        return []
    removed = []
    root = runtime_root(runtime)
    launcher = Launcher(cgroup.needs_private_view(binary, mode), label=f"sweep-{runtime}")
    try:
        for name in ids:
            result = launcher.run([binary, "--root", str(root), *cgroup.manager_args(runtime),
                                   "delete", "-f", name])
            if result.returncode == 0:
                removed.append(f"{runtime} container {name}")
            else:
                removed.append(f"{runtime} container {name}: {result.stderr.strip()}")
                shutil.rmtree(root / name, ignore_errors=True)  # a half-made state dir
    finally:
        launcher.close()
    return removed


def unmount_bundles() -> list[str]:
    """Unmount anything mounted under the bundles in the host's mount table."""
    removed = []
    for point in mountinfo.points_under(bundles_dir()):
        try:
            syscalls.umount2(point, syscalls.MNT_DETACH)
            removed.append(f"mount {point}")
        except OSError as error:
            if error.errno != errno.EINVAL:  # EINVAL: unmounted meanwhile
                removed.append(f"mount {point}: {error.strerror}")
    return removed


def remove_container_leftovers(driver: cgroups.Driver, name: str) -> list[str]:
    """Kill what is left in container ``name``'s cgroup, remove its bundle and cgroup."""
    removed = []
    path = cgroup.path(name)
    if driver.exists(path):
        killed = driver.kill(path, KILL_TIMEOUT_S)
        if killed:
            removed.append(f"processes {' '.join(map(str, killed))} of {name}")
    bundle = Bundle.for_name(name)
    if bundle.dir.exists():
        shutil.rmtree(bundle.dir, ignore_errors=True)
        removed.append(f"bundle {bundle.dir}")
    if driver.exists(path):
        try:
            driver.remove(path)
            removed.append(f"cgroup {path}")
        except cgroups.CgroupError as error:
            removed.append(f"cgroup {path}: {error}")
    return removed
