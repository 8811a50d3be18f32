"""A small fork server: the process every container is forked from.

It is a fresh ``python -S`` that imports only the standard library and the light runtime
modules (no pyroute2, psutil or harness), so forking it is cheap whatever its owner imported.
It is a helper process of :mod:`hostkit.helper` (its protocol, its client, the ``{"id": n,
"error": ...}`` answer of a refused request); these are its handlers, one per ``op``. It is no
reaper: its children (the containers' inits, spares) are reaped on request only, so that a
container's pid stays its own until the runtime asked. Descriptors come close-on-exec to the
server and to spares.

- ``{"op": "launch", "plan": {...}}`` (:meth:`runtime.plan.LaunchPlan.to_dict`) + fds
  ``[stdout_w]`` or ``[stdout_w, host channel]`` (a ``stdio`` plan: ``[stdin, stdout,
  stderr]`` then the channel) -> ``{"pid": n}``. Cold: the server decodes
  the plan (a malformed one is the reply's error), unshare(CLONE_NEWPID), forks (the child is PID 1
  of the new namespace and runs :func:`runtime.child.run`), then setns back to its own pid
  namespace so the next fork is unaffected. With a cgroup v2 directory in the plan, the
  server first mounts the container's overlay root as a detached mount (fsopen, fsconfig,
  fsmount: in the server's own cgroup, its owner's), then clones the child straight into that
  cgroup (clone3 ``CLONE_INTO_CGROUP``); the child attaches the mount (move_mount) in its new
  mount namespace, and the server closes its descriptor right after the clone. Without one
  (cgroup v1, hybrid, or no detached mount possible) the child mounts the overlay itself
  before it writes ``cgroup.procs``: on every path the overlay is made outside the
  container's memory cgroup. With ``"spare": pid`` the request (plan and fds)
  goes to that spare instead, which decodes the plan (a malformed one is reported on the
  READY pipe) and does the rest (a warm plan: all of it but what crun's ``start`` does, then
  it waits for the host on the channel, :func:`runtime.child.wait_for_start`); a spare that
  is gone is an error, never a cold launch.
- ``{"op": "spare", "new_pid": b, "unshare": flags, "loopback": b, "overlay": [mount point,
  options] or null}`` -> ``{"pid": n}`` once the spare is ready: a child forked for one warm
  container, which has unshared those namespaces (the cgroup one excepted), brought loopback
  up and mounted the overlay root (:func:`runtime.child.spare`).
  Spares are made only on request, one per request: never in the background.
- ``{"op": "discard", "pid": n}`` -> ``{"status": wait status or null}``: end an unused spare
  (waiting for its plan, or handed it and not started).
- ``{"op": "reap", "pid": n}`` -> ``{"status": wait status or null}`` (non-blocking).
- ``{"op": "ping"}`` -> ``{"pid": server pid, "spares": [pids]}``.

At start the server moves into a private mount namespace whose root is an empty read-only
tmpfs, with the host's tree at ``/host`` where it chroots (:func:`runtime.rootfs.enter_skeleton`):
each container's mount namespace is a copy of it, so a container can switch into its root
without pivot_root(2)'s walk over every thread on the host.

Containers are children of the server, which keeps no per-container state or descriptor
(but one socket per spare not yet used). It exits when its owner closes the socket (or
dies); containers then live on, reparented, and unused spares exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from hostkit import helper
from runtime.plan import LaunchPlan, Rootfs

REQUEST_TIMEOUT_S = 30.0


class ForkServerError(Exception):
    """The fork server is gone or refused a request."""


SPARE_TIMEOUT_S = 10.0
TAG = "cvbench-forkserver"  # on the server's command line


def main(fd: int) -> None:
    """The fork server process's body: serve on ``fd`` until its owner hangs up."""
    from hostkit import syscalls as sc
    from runtime import child, rootfs
    from runtime.caps import last_cap

    sock = socket.socket(fileno=fd)
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    cap_last = last_cap()
    rootfs.enter_skeleton()  # once: containers' mount namespaces are copies of this one
    spares: dict[int, socket.socket] = {}  # pid -> socket of a spare waiting for its plan
    handed: set[int] = set()  # spares handed their plan, not yet reaped: ours to discard

    def fork_child(new_pid: bool, target: Callable[..., object], *args: object,
                   cgroup_dir: str = "", overlay: Rootfs | None = None,
                   namespaces: int = 0) -> int:
        """Fork ``target(*args)`` as PID 1 of a new pid namespace (if asked).

        ``cgroup_dir``: a cgroup v2 directory to clone the child into (:func:`clone_into`),
        with the other ``namespaces`` (CLONE_NEW* flags) made by that same clone3, as crun
        does: their kernel objects are charged to this server's cgroup, not the container's.
        ``overlay``: the child's overlay root, built here first as a detached mount
        (:func:`_detached_overlay`), charged to this server's cgroup (its owner's) likewise.
        ``target`` then gets two more arguments: whether the child was born in its cgroup
        with its namespaces (else it unshares them and joins by itself), and the detached
        overlay's descriptor, which the child attaches (None: the child mounts its overlay
        itself, before it joins). Where no detached overlay can be built, the child is forked
        outside the cgroup and joins after mounting. The descriptor is closed here right
        after the fork: the server keeps none per container."""
        cgroup = _open_cgroup(cgroup_dir) if cgroup_dir else None
        detached = (_detached_overlay(overlay) if cgroup is not None and overlay is not None
                    else None)
        if cgroup is not None and overlay is not None and detached is None:
            os.close(cgroup)  # the child must mount before it is in the cgroup: fork + join
            cgroup = None
        if new_pid:
            sc.unshare(sc.CLONE_NEWPID)
        try:
            born_in = False
            pid = -1
            if cgroup is not None:
                pid = clone_into(cgroup, namespaces)
                born_in = pid >= 0
            if pid < 0:
                pid = os.fork()
            if pid == 0:
                sock.close()
                for other in spares.values():
                    other.close()
                if cgroup is not None:
                    os.close(cgroup)
                if cgroup_dir:
                    target(*args, born_in, detached)  # never returns
                target(*args)  # never returns
        finally:
            if new_pid:
                sc.setns(own_pidns, sc.CLONE_NEWPID)
            if cgroup is not None:
                os.close(cgroup)
            if detached is not None:
                os.close(detached)  # the child holds its own copy until it attached it
        return pid

    def make_spare(request: dict[str, Any]) -> int:
        new_pid, unshare, loopback = request["new_pid"], request["unshare"], request["loopback"]
        overlay = request.get("overlay")
        if not (isinstance(new_pid, bool) and isinstance(unshare, int)
                and isinstance(loopback, bool)):
            raise ValueError("spare: new_pid and loopback must be booleans, unshare an int")
        if overlay is not None and not (isinstance(overlay, list) and len(overlay) == 2
                                        and all(isinstance(part, str) for part in overlay)):
            raise ValueError("spare: overlay must be [mount point, options]")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = fork_child(new_pid, _run_spare, ours, theirs, cap_last,
                             unshare & ~sc.CLONE_NEWCGROUP, loopback,
                             None if overlay is None else (overlay[0], overlay[1]))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(SPARE_TIMEOUT_S)
        try:
            ready = ours.recv(16)
        except OSError:
            ready = b""
        if ready != child.SPARE_READY:
            ours.close()
            end(pid)
            raise RuntimeError(f"spare {pid} failed to prepare its namespaces")
        ours.settimeout(None)
        spares[pid] = ours
        return pid

    def end(pid: int) -> int | None:
        """Kill and reap our child ``pid`` (a spare); its wait status."""
        try:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1]
        except (ProcessLookupError, ChildProcessError):
            return None

    def launch(request: helper.Request) -> dict[str, Any]:
        message, fds = request.message, request.fds
        spare_pid = message.get("spare")
        if spare_pid is None:
            plan = LaunchPlan.from_dict(message["plan"])
            target: Callable[..., object] = child.run
            if plan.stdio:  # stdin, stdout, stderr, then the channel
                if len(fds) < 3:
                    raise ValueError("launch: a stdio plan needs stdin, stdout and stderr")
                target = functools.partial(child.run, stdin_fd=fds[0], stderr_fd=fds[2])
                fds = fds[1:2] + fds[3:]
            return {"pid": fork_child(
                plan.new_pid,
                target,
                plan,
                fds[0],
                fds[1] if len(fds) > 1 else None,
                cap_last,
                False,  # not prepared by a spare
                cgroup_dir=plan.cgroup_dir,
                overlay=None if plan.rootfs.bind else plan.rootfs,  # a bind root: no superblock
                namespaces=plan.unshare & ~sc.CLONE_NEWCGROUP,
            )}
        spare = spares.pop(spare_pid, None)
        if spare is None:
            raise LookupError(f"no spare {spare_pid}")
        try:
            socket.send_fds(spare, [request.data], fds)  # the request has the plan
        except OSError:
            end(spare_pid)
            raise LookupError(f"spare {spare_pid} is gone") from None
        finally:
            spare.close()
        handed.add(spare_pid)
        return {"pid": spare_pid}

    def discard(request: helper.Request) -> dict[str, Any]:
        pid = request.message["pid"]
        spare = spares.pop(pid, None)
        if spare is not None:
            spare.close()
        known = spare is not None or pid in handed
        handed.discard(pid)
        return {"status": end(pid) if known else None}

    def reap(request: helper.Request) -> dict[str, Any]:
        pid = request.message["pid"]
        handed.discard(pid)
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return {"status": None}
        return {"status": status if reaped else None}

    helper.serve(sock, {
        "launch": launch,
        "spare": lambda request: {"pid": make_spare(request.message)},
        "discard": discard,
        "reap": reap,
        "ping": lambda request: {"pid": os.getpid(), "spares": sorted(spares)},
    })


_CLONE3_UNSUPPORTED = (errno.ENOSYS, errno.E2BIG, errno.EINVAL)  # kernel < 5.3, < 5.7
_clone3_usable = True


def _open_cgroup(directory: str) -> int | None:
    """A descriptor of the cgroup v2 ``directory`` to clone into; None if clone3 is known not
    to work here, or the directory cannot be opened (then the child joins by itself)."""
    if not _clone3_usable:
        return None
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


def _detached_overlay(overlay: Rootfs) -> int | None:
    """The container's overlay root mounted by the server as a detached mount
    (:func:`runtime.rootfs.overlay_mount_if_supported`): a descriptor, or None where it cannot
    be built (a kernel without the new mount API, remembered; or any error, which the child's
    own mount(2) then reports on the READY pipe as before)."""
    from runtime import rootfs

    try:
        return rootfs.overlay_mount_if_supported(overlay.overlay)
    except OSError:
        return None


def clone_into(cgroup: int, namespaces: int = 0) -> int:
    """Fork the calling (single-threaded) fork server into the cgroup v2 directory ``cgroup``
    with clone3(2) and ``CLONE_INTO_CGROUP``, in new ``namespaces`` (CLONE_NEW* flags), as crun
    1.7+ starts a container's init on cgroup v2 with its cgroupfs manager (clone3 with
    CLONE_INTO_CGROUP and every namespace to create but the cgroup and time ones): the
    namespaces' kernel objects are allocated by the caller, so charged to its cgroup; the child
    exists in its cgroup from its first instant, and nobody writes ``cgroup.procs`` (whose first
    write after an idle spell waits for an RCU grace period under the cgroup threadgroup lock:
    docs/findings/like-for-like.md). 0 in the child, the child's pid in the parent; -1 if the
    kernel refused (too old: clone3 or CLONE_INTO_CGROUP unknown, remembered; or that cgroup
    refused: a domain cgroup with children, a threaded one), and then the caller forks and the
    child joins by writing ``cgroup.procs``, as crun falls back to clone(2) and then joins.

    Python around a raw clone3: os.fork() is fork(2) between PyOS_BeforeFork() and
    PyOS_AfterFork_Child()/PyOS_AfterFork_Parent() (the import lock, the GIL and thread
    states, the signal state, os.register_at_fork callbacks); this does the same around
    clone3, called with the GIL held as os.fork() calls fork(2). What glibc's fork() would
    also do is not needed here: its atfork handlers and lock resets matter only when another
    thread may hold a lock, and the fork server has one thread; its thread descriptor keeps
    the parent's thread id in the child, which only pthread_kill(3) on another thread and
    error-checking or robust mutexes read (glibc's raise(3) asks gettid(2); checked: the
    child raises signals, forks and execs normally), and the child execs soon after.
    """
    from hostkit import syscalls as sc

    global _clone3_usable
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    try:
        pid = sc.clone3(namespaces, cgroup)
    except OSError as error:
        api.PyOS_AfterFork_Parent()
        if error.errno in _CLONE3_UNSUPPORTED:
            _clone3_usable = False
        return -1
    if pid == 0:
        api.PyOS_AfterFork_Child()
    else:
        api.PyOS_AfterFork_Parent()
    return pid


def _run_spare(ours: socket.socket, theirs: socket.socket, cap_last: int, unshare: int,
               loopback: bool, overlay: tuple[str, str] | None) -> None:
    from runtime import child

    ours.close()
    child.spare(theirs, cap_last, unshare, loopback, overlay)


class ForkServer:
    """Client side: starts the server on first use and talks to it (thread-safe)."""

    def __init__(self) -> None:
        self._client: helper.Client | None = None
        self._lock = threading.Lock()
        self._starting: threading.Thread | None = None  # start_in_background's

    @property
    def pid(self) -> int | None:
        return self._client.pid if self._client else None

    def start(self) -> None:
        """Start the server (again, if it died); return once it serves."""
        with self._lock:
            if self._client is not None and self._client.alive():
                return
            if self._client is not None:  # the previous server died
                self._client.close(kill_after=0.0)
            try:
                self._client = helper.Client("runtime.forkserver:main", tag=TAG,
                                             name="fork server", flags=("-S", "-E"),
                                             record=False)
            except helper.HelperError as error:
                self._client = None
                raise ForkServerError(str(error)) from None

    def start_in_background(self) -> None:
        """Start the server on a thread, so that its start-up (an interpreter, its imports,
        the skeleton) runs beside the caller's own work; the first request waits for it
        (:meth:`start` holds the lock meanwhile) and reports a failure, starting it again."""
        def start_quietly() -> None:
            with contextlib.suppress(ForkServerError):
                self.start()

        self._starting = threading.Thread(target=start_quietly, name="cvbench-forkserver-start",
                                          daemon=True)
        self._starting.start()

    def request(self, message: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        self.start()
        assert self._client is not None
        try:
            return self._client.request(message, fds, REQUEST_TIMEOUT_S)
        except helper.HelperError as error:
            raise ForkServerError(str(error)) from None

    def launch(self, plan: LaunchPlan, fds: Sequence[int], spare: int | None = None) -> int:
        """Fork a child that carries out ``plan`` (or hand it to ``spare``); its pid."""
        message: dict[str, Any] = {"op": "launch", "plan": plan.to_dict()}
        if spare is not None:
            message["spare"] = spare
        return int(self.request(message, fds)["pid"])

    def spare(self, plan: LaunchPlan) -> int:
        """Fork a spare with ``plan``'s namespaces and loopback; its pid, once it is ready."""
        return int(self.request({"op": "spare", "new_pid": plan.new_pid,
                                 "unshare": plan.unshare, "loopback": plan.loopback,
                                 "overlay": [plan.rootfs.merged, plan.rootfs.overlay]})["pid"])

    def discard(self, spare: int) -> None:
        """End an unused spare (nothing if the server is gone: then the spare is too)."""
        if self._client is None or not self._client.alive():
            return
        try:
            self.request({"op": "discard", "pid": spare})
        except ForkServerError:
            pass

    def reap(self, pid: int) -> int | None:
        """Wait status of our exited child ``pid`` (None if not ours or not exited)."""
        if self._client is None or not self._client.alive():
            return None
        try:
            status = self.request({"op": "reap", "pid": pid})["status"]
        except ForkServerError:
            return None
        return None if status is None else int(status)

    def close(self) -> None:
        """Stop the server (containers keep running); idempotent. A start in the background
        is waited for first, so that it cannot start a server after this close."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        with self._lock:
            if self._client is not None:
                self._client.close(kill_after=5.0)
                self._client = None
