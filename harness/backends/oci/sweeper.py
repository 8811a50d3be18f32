"""``sweep()``: remove what crashed harnesses left of the OCI backends (``cvbench clean``).

In this order: launchers with every command still in flight in their sessions (so no ``run``
caught mid-way creates a container after the sweep looked for containers), containers,
overlay mounts, then per container name its left processes, bundle and cgroup, and last the
shared cgroup parent with its empty shards (``cvbench-oci/<shard>/<name>``, :mod:`.cgroup`),
unless another state directory's containers still use it. Names come from the bundles (each is
made before its container) and the runtimes' state directories, never from the shared cgroup
tree: what another state directory's live run holds there is not this sweep's.

The runtimes swept are crun, runc and every one with a state directory or a record here
(:func:`.runtimes.known`: a runtime a user named included), each container deleted with the
binary its backend recorded; where that binary is gone, the container's processes are killed
through its cgroup and its state directory removed. A user-named runtime's record and empty
state directory go last.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal

from harness.backends.oci import cgroup, runtimes
from harness.backends.oci.bundle import Bundle, bundles_dir, runtime_root
from harness.backends.oci.launcher import ARGV_TAG, Launcher
from hostkit import helper, mountinfo, syscalls
from hostkit.paths import PREFIX
from hostkit.procs import signal_and_wait
from runtime import cgroups

KILL_TIMEOUT_S = 5.0


def sweep() -> list[str]:
    """Remove every OCI leftover under this state directory; return one line per object."""
    removed = [*remove_old_launcher_records(), *kill_launchers()]
    mode = cgroup.host_mode()
    names = {path.name for path in bundles_dir().iterdir()} if bundles_dir().is_dir() else set()
    known = runtimes.known()
    for runtime, binary in known.items():
        ids = containers(runtime)
        names |= set(ids)
        removed += delete_containers(runtime, ids, mode, binary)
    removed += unmount_bundles()
    driver = cgroup.driver(mode)
    for name in sorted(names):
        removed += remove_container_leftovers(driver, name)
    for runtime in known:
        removed += forget_runtime(runtime)
    if (driver.exists(cgroup.PARENT) and not driver.containers(cgroup.PARENT)
            and driver.remove_parent(cgroup.PARENT)):  # and its shards
        removed.append(f"cgroup {cgroup.PARENT} and its shards")
    return removed


def remove_old_launcher_records() -> list[str]:
    """The launcher records directory of an older cvbench (the gate's run of its baseline's
    code leaves it): its launchers ended with that run; the directory and records go."""
    old = runtimes.states_dir() / runtimes.OLD_LAUNCHER_RECORDS
    if not old.is_dir():
        return []
    count = sum(1 for _ in old.iterdir())
    shutil.rmtree(old, ignore_errors=True)
    return [f"oci launcher records of an older cvbench ({count}): {old}"]


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


def delete_containers(runtime: str, ids: list[str], mode: str,
                      binary: str | None) -> list[str]:
    """``<binary> delete -f`` each container, through a launcher of the sweep's own; with no
    binary, each container's state directory is removed (its processes are killed through
    its cgroup by :func:`remove_container_leftovers`)."""
    if not ids:
        return []
    root = runtime_root(runtime)
    if binary is None:
        for name in ids:
            shutil.rmtree(root / name, ignore_errors=True)
        return [f"{runtime} container {name}: state removed, no binary to delete it with"
                for name in ids]
    removed = []
    flavor = runtimes.flavor(binary)
    launcher = Launcher(cgroup.needs_private_view(flavor, mode), label=f"sweep-{runtime}")
    try:
        for name in ids:
            result = launcher.run([binary, "--root", str(root), *cgroup.manager_args(flavor),
                                   "delete", "-f", name])
            if result.returncode == 0:
                removed.append(f"{runtime} container {name}")
            else:
                removed.append(f"{runtime} container {name}: {result.stderr.strip()}")
                shutil.rmtree(root / name, ignore_errors=True)  # a half-made state dir
    finally:
        launcher.close()
    return removed


def forget_runtime(runtime: str) -> list[str]:
    """``runtime``'s record once none of its containers is left, and a user-named runtime's
    empty state directory (crun's and runc's stay, as their backends leave them)."""
    if containers(runtime):
        return []
    recorded = runtimes.record_path(runtime).exists()
    runtimes.forget(runtime)
    emptied = False
    if runtime not in runtimes.BUILT_IN:
        with contextlib.suppress(OSError):  # missing, or files not ours: left alone
            runtime_root(runtime).rmdir()
            emptied = True
    if not (recorded or emptied):
        return []
    return [f"runtime {runtime}: its record" + (" and state directory" if emptied else "")]


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
