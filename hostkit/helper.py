"""One helper-process layer: a small process that does work for its owner (the fork server,
the OCI launcher, the LXC helper), the owner's client of it, and the record ``cvbench clean``
reads to find one a killed owner left.

- :func:`serve` (in the helper): answers requests with the helper's handlers, one per
  ``op``, until its owner hangs up. A *reaper* helper is a child subreaper that reaps every
  child as it exits (a handler may answer once its child exited: :class:`Later`) and stays
  while children are left; the others (the fork server) leave their children to requests.
  A reaper also answers :data:`EXIT_STATUS` (``{"op": "exit_status", "pid": n}``): the exit
  code of ``n``, an orphan reparented to it (a container's init once its runtime exited), as
  ``{"code": c}`` once it exited (negative: the signal), ``{"code": null}`` if ``n`` is
  neither its child nor one it reaped.
- :class:`Client` (in the owner): starts the helper as a fresh interpreter in a session of its
  own, waits for its first message, sends requests from any number of threads at once and
  matches answers by id: the thread waiting for an answer reads the socket itself when no
  other thread does (no extra thread, no hand-off for a lone request), files the answers of
  the others and wakes only their threads.
- :class:`Record`: ``<state dir>/helpers/<label>-<pid>.json`` (``{"pid", "tag", "label"}``),
  written once the helper runs, removed once it is gone; the ``tag`` is on the helper's
  command line, so a record whose pid was reused by another process is not taken for it.

Protocol: JSON datagrams on a ``SOCK_SEQPACKET`` socketpair. A request is ``{"id": n, "op":
name, ...}`` with file descriptors as SCM_RIGHTS (received close-on-exec, so that none reaches
the exec of another child forked meanwhile); its answer ``{"id": n, ...}``, or ``{"id": n,
"error": "<exception type>: <message>"}``. The helper's first message, unasked, is ``{"id":
-1, "pid": <its pid>}``.

This module imports only the standard library (the fork server runs ``python -S``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostkit.procs import wait_exit

READY_ID = -1  # the id of the helper's unasked first message
EXIT_STATUS = "exit_status"  # a reaper's own request: a child's exit code once it exited
KEPT_STATUSES = 4096  # exit codes of reaped orphans nobody asked for yet, at the most
MAX_MESSAGE = 1 << 20  # a request, at the most (a fork server's plan)
MAX_ANSWER = 1 << 16
PROJECT_ROOT = str(Path(__file__).resolve().parents[1])  # a helper imports the same tree


class HelperError(Exception):
    """The helper is not running, died, did not answer in time, or refused a request."""


class Refused(HelperError):
    """The helper answered a request with an error; the message is its ``error``."""


# -- the helper's side -----------------------------------------------------------------------


@dataclass(slots=True)
class Request:
    """One request as the helper received it: its ``message``, the descriptors that came
    with it (closed once it is answered), and the datagram itself, to hand on as it came."""

    message: dict[str, Any]
    fds: list[int]
    data: bytes


@dataclass(frozen=True)
class Later:
    """A handler's answer that comes once its child ``pid`` exited: ``finish(exit code)``
    makes it (reaper helpers only)."""

    pid: int
    finish: Callable[[int], dict[str, Any]]


Handler = Callable[[Request], "dict[str, Any] | Later"]


def serve(sock: socket.socket, handlers: Mapping[str, Handler], *, max_fds: int = 4,
          max_message: int = MAX_MESSAGE, reaper: bool = False) -> None:
    """Answer requests on ``sock`` until the owner hangs up (or dies): ``handlers[op]`` makes
    each answer from the :class:`Request`; the descriptors that came with it are closed after
    it in any case (a handler keeps what it needs by forking). A handler's exception is the
    request's error; the helper goes on serving.

    A ``reaper`` becomes a child subreaper (an orphan of its children's is reparented to it
    and reaped at once, whatever the host's PID 1 does with orphans), reaps every child as it
    exits, answers the :class:`Later` ones, and once the owner hung up stays only while it
    has children left."""
    server = _Server(sock, handlers, max_fds, max_message)
    if reaper:
        server.handlers = {**handlers, EXIT_STATUS: server.exit_status}
        server.reap_forever()
    else:
        server.reply({"id": READY_ID, "pid": os.getpid()})
        while server.sock is not None:
            server.receive()


class _Server:
    def __init__(self, sock: socket.socket, handlers: Mapping[str, Handler], max_fds: int,
                 max_message: int) -> None:
        self.sock: socket.socket | None = sock  # None once the owner hung up
        self.handlers = handlers
        self.max_fds = max_fds
        self.max_message = max_message
        self.later: dict[int, Later] = {}  # by the pid of the child the answer waits for
        # exit codes of reaped children no Later waited for, oldest first, until asked for
        self.statuses: dict[int, int] = {}

    def receive(self) -> None:
        """Take one request and answer it (or file its Later); an empty read or a broken
        socket means the owner is gone."""
        assert self.sock is not None
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, self.max_message, self.max_fds,
                                              socket.MSG_CMSG_CLOEXEC)
        except OSError:
            data, fds = b"", []
        if not data:
            for fd in fds:
                os.close(fd)
            self.sock.close()
            self.sock = None
            return
        request_id = None
        try:
            message = json.loads(data)
            request_id = message.get("id")
            handler = self.handlers.get(message["op"])
            if handler is None:
                raise ValueError(f"unknown op {message['op']!r}")
            answer = handler(Request(message, fds, data))
        except Exception as error:  # report it to the owner, keep serving
            answer = {"error": f"{type(error).__name__}: {error}"}
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if isinstance(answer, Later):
            self.later[answer.pid] = Later(answer.pid, _with_id(request_id, answer.finish))
        else:
            self.reply({**answer, "id": request_id})

    def reply(self, message: dict[str, Any]) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.send(json.dumps(message).encode())

    def reap_forever(self) -> None:
        from hostkit import syscalls

        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)  # a SIGCHLD wakes the select() below
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.reply({"id": READY_ID, "pid": os.getpid()})
        while self.sock is not None or self.reap():
            watched = [wake_r] + ([self.sock.fileno()] if self.sock is not None else [])
            readable, _, _ = select.select(watched, [], [])
            if wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
            if self.sock is not None and self.sock.fileno() in readable:
                self.receive()
            self.reap()

    def reap(self) -> bool:
        """Reap every exited child, answering the Later ones; False once none is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            code = os.waitstatus_to_exitcode(status)
            later = self.later.pop(pid, None)
            if later is None:  # an orphan's, perhaps asked for later (EXIT_STATUS)
                self.statuses.pop(pid, None)
                self.statuses[pid] = code
                if len(self.statuses) > KEPT_STATUSES:
                    del self.statuses[next(iter(self.statuses))]
                continue
            try:
                answer = later.finish(code)
            except Exception as error:
                answer = {"error": f"{type(error).__name__}: {error}"}
            self.reply(answer)

    def exit_status(self, request: Request) -> dict[str, Any] | Later:
        """:data:`EXIT_STATUS`: the exit code of the child ``pid``, reaped already (then
        forgotten: its pid may be another's next), or once it exits (a child that runs or
        is a zombie not reaped yet); ``None`` for a pid that is neither.

        Reaping happens on this same thread, so between this look and the answer no exit is
        missed: a live child's status goes to the Later, never to :attr:`statuses`."""
        pid = int(request.message["pid"])
        if pid in self.statuses:
            return {"code": self.statuses.pop(pid)}
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return {"code": None}
        return Later(pid, lambda code: {"code": code})


def _with_id(request_id: Any, finish: Callable[[int], dict[str, Any]]
             ) -> Callable[[int], dict[str, Any]]:
    return lambda code: {**finish(code), "id": request_id}


def child_setup() -> None:
    """In a child a reaper helper forked to run other code: the signal state back to what a
    fresh process has (no wake-up descriptor, default SIGCHLD, SIGINT, SIGPIPE)."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)


# -- the record ------------------------------------------------------------------------------


def records_dir() -> Path:
    """Where helpers are recorded: ``<state dir>/helpers`` (``CVBENCH_STATE_DIR``)."""
    from hostkit.paths import state_dir

    return state_dir() / "helpers"


@dataclass(frozen=True)
class Record:
    """A helper's record: its pid, the tag on its command line, its owner's label."""

    path: Path
    pid: int  # 0 if the file could not be read
    tag: str
    label: str = ""

    @classmethod
    def write(cls, pid: int, tag: str, label: str) -> Record:
        directory = records_dir()
        directory.mkdir(parents=True, exist_ok=True)
        record = cls(directory / f"{label}-{pid}.json", pid, tag, label)
        record.path.write_text(json.dumps({"pid": pid, "tag": tag, "label": label}))
        return record

    def running(self) -> bool:
        """The recorded helper still runs: its pid's command line carries its tag."""
        if not self.pid:
            return False
        try:
            with open(f"/proc/{self.pid}/cmdline", "rb") as handle:
                return self.tag.encode() in handle.read().split(b"\0")
        except OSError:
            return False

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def records(tag: str) -> list[Record]:
    """The records of helpers tagged ``tag`` (unreadable ones included, with pid 0, so
    that the sweep removes them)."""
    directory = records_dir()
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            record = Record(path, int(data["pid"]), str(data["tag"]), str(data.get("label", "")))
        except (OSError, ValueError, KeyError, TypeError):
            record = Record(path, 0, tag)
        if record.tag == tag:
            found.append(record)
    return found


# -- the owner's side ------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """One request in flight: its answer and, while its thread sleeps, the event that wakes it
    (for its answer, or to make it the reader; made only then: a lone request needs none)."""

    answer: dict[str, Any] | None = None
    event: threading.Event | None = None


class Client:
    """The owner's side of one helper process (thread-safe).

    ``main`` (``"module:function"``) is called in a fresh interpreter run with ``flags`` as
    ``function(socket fd, *args)``; ``tag`` goes on its command line. ``label`` names it in
    its record (none if ``record`` is False) and in errors (``name``)."""

    def __init__(self, main: str, *, tag: str, name: str, args: Sequence[Any] = (),
                 flags: Sequence[str] = ("-I",), label: str = "", record: bool = True,
                 start_timeout: float = 30.0, stderr: int | None = None) -> None:
        self.name = name
        self._ids = itertools.count()
        self._lock = threading.Lock()  # guards _pending, _dead, _reading
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._dead = False
        self._reading = False  # a waiting thread is reading the socket for everyone
        module, function = main.split(":")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = (f"import sys; sys.path.insert(0, {PROJECT_ROOT!r})\n"
                f"from {module} import {function}\n"
                f"{function}({theirs.fileno()}, *{tuple(args)!r})\n")
        try:
            self.process = subprocess.Popen(
                [sys.executable, *flags, "-c", code, tag, *([label] if label else [])],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True)  # a Ctrl-C of the owner's group does not reach it
        finally:
            theirs.close()
        self._sock: socket.socket | None = ours
        self.record = Record.write(self.process.pid, tag, label or tag) if record else None
        ready = _Pending()
        self._pending[READY_ID] = ready
        try:
            self._await(READY_ID, ready, start_timeout)
        except BaseException:
            self.close(kill_after=0.0)
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None and not self._dead

    def request(self, message: dict[str, Any], fds: Sequence[int] = (),
                timeout: float = 120.0) -> dict[str, Any]:
        """Send ``message`` (with ``fds``) and wait for its answer; Refused with the
        helper's error, HelperError if it is gone or did not answer in ``timeout`` s."""
        request_id = next(self._ids)
        pending = _Pending()
        data = json.dumps({**message, "id": request_id}).encode()
        with self._send_lock:
            with self._lock:
                if self._sock is None or self._dead:
                    raise HelperError(f"{self.name} is not running")
                self._pending[request_id] = pending  # before sending: answers come fast
            try:
                if fds:
                    socket.send_fds(self._sock, [data], list(fds))
                else:
                    self._sock.send(data)
            except OSError as error:  # the helper hung up
                with self._lock:
                    self._pending.pop(request_id, None)
                    self._dead = True
                raise HelperError(f"{self.name}: {error.strerror or error}") from None
        answer = self._await(request_id, pending, timeout)
        if "error" in answer:
            raise Refused(answer["error"])
        return answer

    def exit_code(self, pid: int, timeout: float) -> int | None:
        """A reaper helper's :data:`EXIT_STATUS`: the exit code of ``pid`` (negative: the
        signal), once it exited within ``timeout``; None if it still runs, is not the
        helper's to tell, or the helper is gone. Refused if the helper refused the request."""
        try:
            answer = self.request({"op": EXIT_STATUS, "pid": pid}, timeout=timeout)
        except Refused:
            raise
        except HelperError:
            return None  # no answer in time: it still runs (or the helper is gone)
        code = answer.get("code")
        return code if isinstance(code, int) else None

    def close(self, kill_after: float | None = 10.0) -> None:
        """Hang up. The helper exits once it is done (a reaper: once its children are);
        waited for ``kill_after`` s, then killed. With ``kill_after`` None it is left to
        finish (waited for a moment) and its record kept until it exited. Idempotent."""
        with self._send_lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # a reading thread's recv() returns b""
            sock.close()
        self._hung_up()
        if not self._exited_within(0.5 if kill_after is None else kill_after) \
                and kill_after is not None:
            self.process.kill()
            self.process.wait()
        if self.record is not None and self.process.poll() is not None:
            self.record.remove()

    def _exited_within(self, timeout: float) -> bool:
        """Whether the helper exited within ``timeout`` s (then reaped). A pidfd wakes the
        wait at the exit, where ``Popen.wait(timeout)`` polls with sleeps doubling from
        0.5 ms, and so would see an exit 7 ms after the hang-up only at 15.5 ms: time an
        OCI ``create`` spent waiting for its fork server to be gone."""
        if self.process.poll() is not None:  # reaped already: its pid may be another's now
            return True
        if not wait_exit(self.process.pid, timeout):
            return self.process.poll() is not None
        self.process.wait()
        return True

    # internals

    def _await(self, request_id: int, pending: _Pending, timeout: float) -> dict[str, Any]:
        """The answer to ``request_id``: read from the socket by this thread when no other
        is reading it, else filed by the one that is."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                remaining = deadline - time.monotonic()
                if pending.answer is not None or self._dead or remaining <= 0:
                    self._pending.pop(request_id, None)  # given up on: its answer is dropped
                    if pending.answer is not None:
                        return pending.answer
                    raise HelperError(f"{self.name} died" if self._dead
                                      else f"{self.name}: no answer in time")
                if self._reading:
                    event: threading.Event | None = threading.Event()
                    pending.event = event
                else:
                    self._reading, event = True, None
            if event is None:
                self._read_until(pending, remaining)
            else:
                event.wait(remaining)

    def _read_until(self, mine: _Pending, timeout: float) -> None:
        """Read answers, filing each and waking its thread, until ``mine`` came, the helper
        hung up, or ``timeout``; then let another waiting thread read."""
        sock = self._sock
        hung_up = sock is None
        deadline = time.monotonic() + timeout
        poller = select.poll()  # not select(): the owner may hold more than 1024 descriptors
        if sock is not None:
            poller.register(sock, select.POLLIN)
        try:
            while sock is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not poller.poll(remaining * 1000):
                    break
                try:
                    data = sock.recv(MAX_ANSWER)
                except OSError:
                    data = b""
                if not data:
                    hung_up = True
                    break
                answer = json.loads(data)
                with self._lock:
                    pending = self._pending.get(answer.get("id"))
                    if pending is not None:
                        pending.answer = answer
                        event = pending.event
                if pending is mine:
                    break
                if pending is not None and event is not None:
                    event.set()
        except (OSError, ValueError):  # the socket was closed under us
            hung_up = True
        finally:
            with self._lock:
                self._reading = False
                self._dead = self._dead or hung_up
                waiting = [p.event for p in self._pending.values()
                           if p is not mine and p.answer is None and p.event is not None]
            if hung_up:
                self._hung_up()
            elif waiting:
                waiting[0].set()  # one of them reads next (one that has not begun to wait
                # will see that nobody does)

    def _hung_up(self) -> None:
        """No more answers will come: wake every waiting thread."""
        with self._lock:
            self._dead = True
            waiting = [p.event for p in self._pending.values() if p.event is not None]
        for event in waiting:
            event.set()
