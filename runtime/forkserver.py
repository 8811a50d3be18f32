"""A small fork server: the process every container is forked from.

It is a fresh ``python -S`` that imports only the standard library and the light runtime
modules (no pyroute2, psutil or harness), so forking it is cheap whatever its owner imported.
Protocol over a SOCK_SEQPACKET socketpair: one JSON request per message, file descriptors
attached with SCM_RIGHTS, one JSON reply.

- ``{"op": "launch", "plan": {...}}`` (:meth:`runtime.plan.LaunchPlan.to_dict`) + fds
  ``[stdout_w]`` or ``[stdout_w, sync]`` -> ``{"pid": n}``: unshare(CLONE_NEWPID) in the
  server, fork (the child is PID 1 of the new namespace and runs :func:`runtime.child.run`),
  then setns back to the server's own pid namespace so the next fork is unaffected.
- ``{"op": "reap", "pid": n}`` -> ``{"status": wait status or null}`` (non-blocking).

With ``spares`` (the default) the server keeps one *spare* child forked ahead of time, which
already is PID 1 of its pid namespace and has unshared mount, uts, ipc and network namespaces
(see :func:`runtime.child.spare`). A launch that wants exactly those namespaces is forwarded
to the spare (plan and fds over its socket), and a new spare is forked after the reply, so
fork and namespace creation are off the launch path. The spare decodes the plan (and reports
a malformed one on the READY pipe); the server only reads which namespaces it wants
(:func:`runtime.plan.namespaces_of`). Other launches are decoded by the server (a malformed
plan is the reply's error) and forked directly.

Containers are children of the server, which keeps no per-container state or descriptor.
It exits when its owner closes the socket (or dies); containers then live on, reparented.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from runtime.plan import LaunchPlan, namespaces_of

MAX_MESSAGE = 1 << 20
REQUEST_TIMEOUT_S = 30.0
PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


class ForkServerError(Exception):
    """The fork server is gone or refused a request."""


def serve(fd: int, spares: bool = True) -> None:
    """Server main loop (runs in the fork server process)."""
    from hostkit import syscalls as sc
    from runtime import child
    from runtime.caps import last_cap

    sock = socket.socket(fileno=fd)
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    cap_last = last_cap()

    def fork_child(new_pid: bool, target: Callable[..., object], *args: object) -> int:
        """Fork ``target(*args)`` as PID 1 of a new pid namespace (if asked)."""
        if new_pid:
            sc.unshare(sc.CLONE_NEWPID)
        try:
            pid = os.fork()
            if pid == 0:
                sock.close()
                target(*args)  # never returns
        finally:
            if new_pid:
                sc.setns(own_pidns, sc.CLONE_NEWPID)
        return pid

    def make_spare() -> tuple[int, socket.socket] | None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = fork_child(True, _run_spare, ours, theirs, cap_last)
        except OSError:
            ours.close()
            return None
        finally:
            theirs.close()
        return pid, ours

    spare = make_spare() if spares else None
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 4)
        except (ConnectionError, OSError):
            return
        if not data:
            return
        used_spare = False
        try:
            request = json.loads(data)
            op = request["op"]
            if op == "launch":
                new_pid, unshare = namespaces_of(request["plan"]) or (False, 0)
                pid = None
                if (
                    spare is not None
                    and new_pid
                    and unshare & ~sc.CLONE_NEWCGROUP == child.SPARE_FLAGS
                ):
                    spare_pid, spare_sock = spare
                    spare, used_spare = None, True
                    try:
                        socket.send_fds(spare_sock, [data], fds)  # the request has the plan
                        pid = spare_pid
                    except OSError:
                        pass  # the spare died: fork a fresh child
                    finally:
                        spare_sock.close()
                if pid is None:
                    plan = LaunchPlan.from_dict(request["plan"])
                    pid = fork_child(
                        plan.new_pid,
                        child.run,
                        plan,
                        fds[0],
                        fds[1] if len(fds) > 1 else None,
                        cap_last,
                    )
                reply: dict[str, Any] = {"pid": pid}
            elif op == "reap":
                try:
                    reaped, status = os.waitpid(request["pid"], os.WNOHANG)
                    reply = {"status": status if reaped else None}
                except ChildProcessError:
                    reply = {"status": None}
            elif op == "ping":
                reply = {"pid": os.getpid(), "spare": spare[0] if spare else None}
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception as error:  # report to the client, keep serving
            reply = {"error": f"{type(error).__name__}: {error}"}
        finally:
            for received in fds:
                os.close(received)
        sock.send(json.dumps(reply).encode())
        if spares and used_spare:
            spare = make_spare()  # after the reply: off the launch path


def _run_spare(ours: socket.socket, theirs: socket.socket, cap_last: int) -> None:
    from runtime import child

    ours.close()
    child.spare(theirs, cap_last)


class ForkServer:
    """Client side: starts the server on first use and talks to it (thread-safe)."""

    def __init__(self, spares: bool = True) -> None:
        self.spares = spares
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        if self._sock is not None:  # the previous server died
            self._sock.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = (
            f"import sys; sys.path.insert(0, {PROJECT_ROOT!r}); "
            f"from runtime.forkserver import serve; serve({theirs.fileno()}, {self.spares!r})"
        )
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-S", "-E", "-c", code],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the owner's group does not reach it
            )
        finally:
            theirs.close()
        ours.settimeout(REQUEST_TIMEOUT_S)
        self._sock = ours

    def request(self, message: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        with self._lock:
            self.start()
            assert self._sock is not None
            try:
                payload = json.dumps(message).encode()
                if fds:
                    socket.send_fds(self._sock, [payload], list(fds))
                else:
                    self._sock.send(payload)
                data = self._sock.recv(MAX_MESSAGE)
            except OSError as error:
                raise ForkServerError(f"fork server is gone: {error}") from None
        if not data:
            raise ForkServerError("fork server closed the connection")
        reply: dict[str, Any] = json.loads(data)
        if "error" in reply:
            raise ForkServerError(reply["error"])
        return reply

    def launch(self, plan: LaunchPlan, fds: Sequence[int]) -> int:
        """Fork a child that carries out ``plan``; its pid."""
        return int(self.request({"op": "launch", "plan": plan.to_dict()}, fds)["pid"])

    def reap(self, pid: int) -> int | None:
        """Wait status of our exited child ``pid`` (None if not ours or not exited)."""
        if self._process is None or self._process.poll() is not None:
            return None
        try:
            status = self.request({"op": "reap", "pid": pid})["status"]
        except ForkServerError:
            return None
        return None if status is None else int(status)

    def close(self) -> None:
        """Stop the server (containers keep running); idempotent."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._process is not None:
                try:
                    self._process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
                self._process = None
