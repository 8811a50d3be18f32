"""dockerd as the ``docker`` backend finds it.

dockerd is started by ``scripts/setup.sh`` with :data:`DAEMON_FLAGS`: no NAT, no forwarding
rules, no default bridge, and the cgroupfs driver (``native.cgroupdriver=cgroupfs``, the one
cgroup manager crun, runc, podman and ``ours`` use; dockerd would pick systemd on a cgroup v2
host where systemd is PID 1), plus the runtimes of :data:`DAEMON_RUNTIMES`: ``--add-runtime
crun=<crun>`` (the ``crun-v1view`` wrapper on a hybrid host, plain crun elsewhere) and
``--add-runtime cvbench-runtime=<the virtualenv's cvbench-runtime>`` (ours behind the OCI
command line, for the ``docker-ours`` backend). Where systemd is PID 1 that is docker.service with a
drop-in giving it those flags (socket-activated by docker.socket); elsewhere dockerd runs under
``scripts/subreaper.py``, like libvirtd. The backend never starts or stops it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker

from harness.backends.engines import common

SOCKET = "/run/docker.sock"
API_TIMEOUT_S = 120
DAEMON_FLAGS = ("--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                "--exec-opt", "native.cgroupdriver=cgroupfs")  # as scripts/setup.sh starts it
DAEMON_RUNTIMES = ("crun", common.OURS)  # --add-runtime NAME=PATH, as scripts/setup.sh adds them
PID_FILE = Path("/run/docker.pid")  # dockerd's default --pidfile


def sdk_client(socket: str = SOCKET, timeout: int = API_TIMEOUT_S) -> docker.DockerClient:
    return docker.DockerClient(base_url=f"unix://{socket}", timeout=timeout, max_pool_size=64)


def dockerd_pid(socket: str = SOCKET, pid_file: Path = PID_FILE) -> int | None:
    """dockerd's pid: the process serving ``socket``, unless that is not dockerd, as where
    systemd made the socket (docker.socket: the peer is then PID 1, which called listen());
    then the pid in dockerd's ``pid_file``, if that process is dockerd."""
    peer = common.socket_peer_pid(socket)
    if peer is not None and common.command_name(peer) == "dockerd":
        return peer
    try:
        recorded = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return recorded if common.command_name(recorded) == "dockerd" else None


def daemon_flags(pid: int | None) -> list[str]:
    """dockerd's command-line flags (to show it adds no NAT or forwarding rules)."""
    if not pid:
        return []
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [arg.decode(errors="replace") for arg in handle.read().split(b"\0")[1:] if arg]
    except OSError:
        return []


def first_line(error: BaseException) -> str:
    """An SDK error as one line."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def runtime_version(runtime: str) -> str | None:
    """``<runtime> --version``'s version word (``runtime``: a name on PATH or a binary's
    path), or None."""
    try:
        out = subprocess.run([runtime, "--version"], capture_output=True, text=True,
                             check=False, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.splitlines()[0] if out else ""
    return first.split()[-1] if first else None
