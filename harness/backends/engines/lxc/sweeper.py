"""``cvbench clean`` for LXC: every container under the state dir's lxcpath, the helpers a
killed run left, the bridge and the ``cvbench-lxc`` cgroups."""

from __future__ import annotations

import contextlib
import shutil
import signal

from harness.backends.base import BackendError
from harness.backends.engines import common
from harness.backends.engines.lxc.backend import STOPPED_TIMEOUT_S
from harness.backends.engines.lxc.config import BRIDGE, CGROUP_PARENT, import_lxc, lxcpath
from harness.backends.engines.lxc.helper import HELPER_TAG
from hostkit import helper
from hostkit.paths import PREFIX
from hostkit.procs import signal_and_wait
from runtime import network


def sweep() -> list[str]:
    """Stop and destroy every container under the state dir's lxcpath (while their helper,
    if a killed run left one, still reaps their monitors), then end such helpers, remove the
    bridge and the ``cvbench-lxc`` cgroups."""
    removed: list[str] = []
    directory = lxcpath()
    if directory.is_dir():
        try:
            lxc = import_lxc()
        except BackendError as error:
            lxc = None
            removed.append(str(error))
        for entry in sorted(directory.iterdir()):
            if entry.name.startswith(".seccomp-"):
                entry.unlink(missing_ok=True)
            if not entry.is_dir() or not entry.name.startswith(PREFIX):
                continue
            if lxc is not None:
                container = lxc.Container(entry.name, str(directory))
                with contextlib.suppress(Exception):
                    if container.running:
                        container.stop()
                        container.wait("STOPPED", STOPPED_TIMEOUT_S)
                with contextlib.suppress(Exception):
                    if container.defined:
                        container.destroy()
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(f"lxc container {entry.name}")
    for record in helper.records(HELPER_TAG):
        if record.running():
            signal_and_wait(record.pid, signal.SIGKILL, 5.0)
            removed.append(f"lxc helper (pid {record.pid})")
        record.remove()
    with contextlib.suppress(Exception):
        if network.delete_link(BRIDGE):
            removed.append(f"bridge {BRIDGE}")
    return [*removed, *common.sweep_cgroups([CGROUP_PARENT])]
