"""``create`` (and ``run``) of the OCI lifecycle, on top of runtime/.

``create`` reads the bundle (:mod:`runtime.oci.config`), makes the container's cgroup
(:mod:`runtime.cgroups`, at ``linux.cgroupsPath``), plans the launch (:mod:`runtime.planner`:
the bundle's root bound, the caller's stdin, stdout and stderr handed on, the seccomp program
compiled into the plan) and has a fork server (:mod:`runtime.forkserver`) fork the init,
which sets everything up as a warm container of ``ours`` does, up to no_new_privs, then says
so on the host channel and waits on the exec FIFO (:func:`runtime.child.wait_for_start`).
``create`` then records the container (:mod:`runtime.oci.state`), writes the pid file and
exits: the init outlives it (reparented to the nearest subreaper: conmon, containerd's shim,
or PID 1), as crun's does. ``start`` and the rest: :mod:`runtime.oci.lifecycle`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from hostkit.procs import proc_start_time, wait_exit
from hostkit.readiness import ERROR_PREFIX
from runtime import cgroups, child, seccomp
from runtime.forkserver import ForkServer, ForkServerError
from runtime.oci import config as oci_config
from runtime.oci import hooks
from runtime.oci.lifecycle import LifecycleError, delete, kill_and_wait, start
from runtime.oci.state import CGROUP, Record, Store
from runtime.plan import LaunchPlan
from runtime.planner import cgroup_limits, launch_plan

PREPARE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Stdio:
    """The descriptors the container's process gets as stdin, stdout and stderr."""

    stdin: int = 0
    stdout: int = 1
    stderr: int = 2


def create(store: Store, container_id: str, bundle: Path, server: ForkServer, *,
           pid_file: Path | None = None, stdio: Stdio = Stdio()) -> Record:
    """Create container ``container_id`` from ``bundle``; its init waits for ``start``.

    ConfigError (bad or unsupported config), StateError (the id is taken) or LifecycleError;
    on any of them nothing of the container is left. ``server``: the fork server that forks
    the init, left open (the caller closes it; ``run`` reaps through it); best started by
    the caller before it loads this module (:meth:`ForkServer.start_in_background`), since
    its start-up is the longest part of a ``create``."""
    bundle = bundle.resolve()
    data = oci_config.read(bundle)
    spec = oci_config.load(bundle)
    cgroup = oci_config.cgroups_path(data, container_id)
    driver = cgroups.driver()
    wanted = cgroup_limits(spec)
    temporary = store.make(container_id)
    merged = temporary / "rootfs"
    made = False
    # libseccomp's compile runs beside the rest (the cgroups, the plan), as the fork
    # server's start-up does: each costs tens of milliseconds, the command's start-up aside.
    compiler = seccomp.Compiler()
    program = (compiler.submit(spec.linux.seccomp.to_oci())
               if spec.linux.seccomp is not None else None)
    try:
        oci_config.cgroup_mounts(spec, driver, cgroup, str(merged))
        try:
            plan = launch_plan(spec, merged, driver.join_files(cgroup, wanted, by_itself=True),
                               cgroup_dir=driver.birth_directory(cgroup), keyring=container_id,
                               seccomp_follows=True, wait_for_start=True, bind_root=True,
                               stdio=True, start_fifo=str(temporary / "exec.fifo"),
                               sysctl=oci_config.sysctls(data.get("linux") or {}))
        except ValueError as error:
            raise oci_config.ConfigError(str(error)) from None
        try:
            driver.create(cgroup, wanted)
        except cgroups.CgroupError as error:
            raise LifecycleError(f"cannot create cgroup {cgroup}: {error}") from None
        made = True
        # ours now: the sweep removes it should create be killed (written after: a cgroup
        # that already existed, someone else's, is never named)
        (temporary / CGROUP).write_text(cgroup)
        try:
            compiled = program.result() if program is not None else None
        except seccomp.SeccompError as error:
            raise oci_config.ConfigError(f"linux.seccomp: {error}") from None
        pid = _launch(server, plan, stdio, container_id, compiled)
        stages = hooks.check(data.get("hooks"))
        state = {"ociVersion": spec.oci_version, "id": container_id, "status": "creating",
                 "pid": pid, "bundle": str(bundle), "annotations": dict(spec.annotations)}
        for stage in ("prestart", "createRuntime"):  # the init's namespaces exist now
            try:
                hooks.run(stage, stages, state)
            except hooks.HookError as error:
                kill_and_wait(pid)
                server.reap(pid)
                raise LifecycleError(f"{container_id}: {error}") from None
        score = data.get("process", {}).get("oomScoreAdj")
        if score is not None:
            _write(f"/proc/{pid}/oom_score_adj", str(score))
        record = Record(
            id=container_id, bundle=str(bundle), pid=pid, pid_start=proc_start_time(pid) or 0,
            cgroup=cgroup, created=_now(), annotations=dict(spec.annotations),
            oci_version=spec.oci_version,
            default_cgroup_parent=cgroup.startswith(oci_config.DEFAULT_CGROUP_PARENT + "/"),
            hooks={stage: entries for stage, entries in stages.items()
                   if stage in ("poststart", "poststop")},
        )
        store.commit(temporary, record)
        if pid_file is not None:
            _write_pid_file(pid_file, pid)
        return record
    except BaseException:
        if made:
            with contextlib.suppress(cgroups.CgroupError):
                driver.kill(cgroup)
                driver.remove(cgroup)
        store.discard(temporary)
        raise
    finally:
        compiler.close()


def _launch(server: ForkServer, plan: LaunchPlan, stdio: Stdio, container_id: str,
            program: bytes | None) -> int:
    """Fork the init, send it its seccomp ``program`` (the plan's ``seccomp_follows``: it
    reads it from its channel's buffer when it installs the filter, after ``start``); return
    its pid once it said it is set up and waits for start."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            pid = server.launch(plan, [stdio.stdin, stdio.stdout, stdio.stderr, theirs.fileno()])
        except ForkServerError as error:
            raise LifecycleError(f"cannot launch {container_id}: {error}") from None
        finally:
            theirs.close()
        if program is not None:
            with contextlib.suppress(OSError):  # the init is gone: it says why below
                child.send_program(ours, program)
        ours.settimeout(PREPARE_TIMEOUT_S)
        try:
            said = ours.recv(4096)
        except OSError as error:
            said = f"{error}".encode()
        if said[:1] == child.PREPARED:
            return pid
        kill_and_wait(pid)
        server.reap(pid)
        line = said.decode(errors="replace").strip().splitlines()
        problem = line[-1].removeprefix(ERROR_PREFIX.decode()) if line else "it exited"
        raise LifecycleError(f"{container_id}: the container's init failed: {problem}")
    finally:
        ours.close()


def run(store: Store, container_id: str, bundle: Path, server: ForkServer, *,
        pid_file: Path | None = None, detach: bool = False) -> tuple[int, list[str]]:
    """``create`` then ``start``; unless ``detach``, wait until the init exits (reaped
    through ``server``, left open), delete the container. The exit code the init had (128 +
    the signal that killed it; 0 detached) and the hooks' warnings."""
    create(store, container_id, bundle, server, pid_file=pid_file)
    warnings = start(store, container_id)
    if detach:
        return 0, warnings
    record = store.load(container_id)
    wait_exit(record.pid, None)
    status = server.reap(record.pid)
    warnings += delete(store, container_id, force=True)
    if status is None:
        return 1, warnings
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status), warnings
    return os.WEXITSTATUS(status), warnings


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as handle:
            handle.write(text)
    except OSError as error:
        raise LifecycleError(f"cannot write {path}: {error.strerror}") from None


def _write_pid_file(path: Path, pid: int) -> None:
    """Write ``pid`` to ``path`` atomically (a reader never sees it half-written)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(str(pid))
    os.rename(temporary, path)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
