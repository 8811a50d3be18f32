"""The harness's end of the workloads image's agent (``imagestore/workloads.py``).

The agent in an instance connects to the harness (it never listens): :class:`Controller`
listens on the host's loopback (for ``process``, which runs on the host) and on the
``cvbench0`` bridge address (for every bridged instance), one port each, never on any other
address. An instance is told where to connect and its token in its environment
(``CVBENCH_CONTROL``, ``CVBENCH_TOKEN``); its first line is ``HELLO <token> <root>``, ``root``
being ``/`` inside an instance and the image directory for ``process``. Then each command is
one line, ``<id> <shell command>``; the agent streams the command's output and ends it with
``@@cvbench-end <id> <exit code>``. The peer address of the connection is the instance's own
address (loopback for ``process``), the one its servers listen on.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import select
import socket
import time
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"
HELLO_TIMEOUT_S = 5.0
END = re.compile(rb"\n@@cvbench-end (\d+) (\d+)\n")
MAX_OUTPUT = 64 << 20


class AgentError(Exception):
    """The agent did not connect, broke the protocol, or a command did not finish in time."""


@dataclass(frozen=True)
class Output:
    """A command's exit code and its output (stdout and stderr together)."""

    returncode: int
    text: str


@dataclass
class Agent:
    """One connected agent: run commands in its instance."""

    sock: socket.socket
    address: str  # the instance's address (peer of the connection)
    root: str  # "/" inside an instance; the image directory on the host (process)
    _ids: int = 0
    _buffer: bytes = b""
    broken: bool = False  # a command timed out: the connection is out of step

    @property
    def on_host(self) -> bool:
        return self.root != "/"

    def run(self, command: str, timeout: float) -> Output:
        """Run ``command`` (one shell line) and return its exit code and output.

        AgentError if the agent hangs up or the command takes longer than ``timeout``; the
        agent is then :attr:`broken` (the command may still run) and must be replaced.
        """
        if self.broken:
            raise AgentError("the agent connection is broken")
        if "\n" in command or "\r" in command:
            raise ValueError("a command is one line")
        self._ids += 1
        ident = self._ids
        try:
            self.sock.sendall(f"{ident} {command}\n".encode())
            deadline = time.monotonic() + timeout
            while True:
                match = END.search(self._buffer)
                if match and int(match.group(1)) == ident:
                    text = self._buffer[:match.start()]
                    self._buffer = self._buffer[match.end():]
                    return Output(int(match.group(2)), text.decode(errors="replace"))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise AgentError("the agent hung up")
                self._buffer += chunk
                if len(self._buffer) > MAX_OUTPUT:
                    raise AgentError(f"more than {MAX_OUTPUT >> 20} MiB of output")
        except TimeoutError:
            self.close()
            raise AgentError(f"no answer within {timeout:.0f} s") from None
        except OSError as error:
            self.close()
            raise AgentError(f"agent connection: {error.strerror or error}") from None
        except AgentError:
            self.close()
            raise

    def close(self) -> None:
        self.broken = True
        try:
            self.sock.close()
        except OSError:
            pass


def allowed_target(address: str) -> bool:
    """True for the only addresses workload traffic may go to: loopback and the bridge's
    private subnet (``runtime.network.SUBNET``)."""
    from runtime.network import SUBNET

    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_loopback or ip in SUBNET


@dataclass
class Controller:
    """Listens for agents on loopback and on the bridge address; hands each connection to
    whoever waits for its token. Close with :meth:`close`."""

    listeners: dict[str, socket.socket] = field(default_factory=dict)  # host address -> socket
    waiting: dict[str, Agent] = field(default_factory=dict)  # token -> agent not yet taken

    @staticmethod
    def token() -> str:
        return secrets.token_hex(12)

    def control(self, on_host: bool) -> str:
        """``host:port`` an instance's agent connects to: loopback for one on the host (the
        ``process`` backend), else the bridge's address (the bridge is made if missing)."""
        if on_host:
            host = LOOPBACK
        else:
            from runtime import network

            network.bridge_up()
            host = network.GATEWAY
        if host not in self.listeners:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, 0))
            sock.listen(64)
            self.listeners[host] = sock
        return f"{host}:{self.listeners[host].getsockname()[1]}"

    def wait(self, token: str, timeout: float) -> Agent:
        """The agent that says ``token``, accepting connections until it comes."""
        deadline = time.monotonic() + timeout
        while token not in self.waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.listeners:
                raise AgentError(f"the instance's agent did not connect within {timeout:.0f} s")
            readable, _, _ = select.select(list(self.listeners.values()), [], [], remaining)
            for listener in readable:
                self._accept(listener)
        return self.waiting.pop(token)

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, (peer, _port) = listener.accept()
        except OSError:
            return
        try:
            sock.settimeout(HELLO_TIMEOUT_S)
            line = b""
            while not line.endswith(b"\n") and len(line) < 4096:
                chunk = sock.recv(1)
                if not chunk:
                    break
                line += chunk
            words = line.decode(errors="replace").split()
            if len(words) != 3 or words[0] != "HELLO" or not allowed_target(peer):
                sock.close()
                return
        except OSError:
            sock.close()
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _, token, root = words
        old = self.waiting.pop(token, None)
        if old is not None:
            old.close()
        self.waiting[token] = Agent(sock, peer, root)

    def close(self) -> None:
        for agent in self.waiting.values():
            agent.close()
        self.waiting.clear()
        for sock in self.listeners.values():
            sock.close()
        self.listeners.clear()
