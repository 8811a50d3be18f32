"""The workloads: what runs in an instance (and on the host, for the network clients), with
which parameters, and which parser reads its output.

Groups, as in Felter et al. (IBM RC25482, 2014):

- ``cpu``: ``sysbench cpu`` with 1 thread and with as many threads as the host has CPUs;
- ``memory``: ``sysbench memory``, sequential (1 MiB blocks) and random access (word writes at
  random places of a 64 MiB block, well beyond the caches);
- ``disk``: ``fio`` with O_DIRECT through ``psync`` (queue depth 1): 4 KiB random read and
  write, 1 MiB sequential read and write, on the instance's own root (overlay upper, qcow2
  overlay) and on the volume handed in (bind mount, raw virtio disk);
- ``network``: ``iperf3`` host → instance and instance → host, ``sockperf`` TCP ping-pong
  (round trip), client on the host, server in the instance;
- ``redis``: ``redis-server`` in the instance, ``redis-benchmark`` on the host (SET, GET).

Every run gives :class:`Result` rows, one per variant (``cpu threads=1``, ``fio randread
bs=4k qd=1 target=root``, ...): the workload and its parameters, recorded in the samples'
``variant`` column. Clients on the host run the image's own binaries through its loader
(:func:`host_tool`), so both ends run the same builds on every backend.
"""

from __future__ import annotations

import functools
import shlex
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.workloads import Figure, ParseError, fio, iperf3, redis_benchmark, sockperf, sysbench
from harness.workloads.agent import Agent, AgentError, allowed_target
from imagestore.workloads import LIBRARY_PATH_FILE, LOADER

GROUPS = ("cpu", "memory", "disk", "network", "redis")
TARGETS = ("root", "volume")
FIO_FILE = "cvbench-fio.dat"
SERVER_WAIT_S = 10.0


class WorkloadError(Exception):
    """A workload could not run or gave no figures; the message is one line."""


@dataclass(frozen=True)
class Settings:
    """The parameters of one backend's runs (a scenario's keys, after its overrides)."""

    duration_s: int = 5
    threads_all: int = 2
    fio_size_mib: int = 256
    redis_requests: int = 100000
    redis_clients: int = 50
    slack_s: float = 60.0  # on top of the duration, for every command and client


@dataclass(frozen=True)
class Result:
    """The figures of one variant of a workload."""

    variant: str
    figures: tuple[Figure, ...]


@dataclass
class Session:
    """One instance as a workload sees it."""

    agent: Agent
    rootfs: Path  # the image on the host: the clients' binaries
    scratch: str  # a directory on the instance's own root (process: a host directory)
    volume: str  # the volume handed in, as the instance sees it
    keep: Callable[[str, str], None]  # keep(label, text): raw output for the run directory

    def run(self, label: str, command: str, settings: Settings, parse: Callable[[str], list[Figure]]
            ) -> list[Figure]:
        """Run ``command`` in the instance, keep its output, parse it."""
        output = self.command(label, command, settings)
        return _parsed(label, output, parse)

    def command(self, label: str, command: str, settings: Settings) -> str:
        try:
            result = self.agent.run(command, settings.duration_s + settings.slack_s)
        except AgentError as error:
            self.keep(label, f"$ {command}\n(agent: {error})\n")
            raise WorkloadError(str(error)) from None
        self.keep(label, f"$ {command}\n{result.text}")
        if result.returncode != 0:
            raise WorkloadError(_failure(command, result.returncode, result.text))
        return result.text


@dataclass(frozen=True)
class Workload:
    """One workload run: its name (also its raw output's label) and group."""

    name: str
    group: str
    run: Callable[[Session, Settings], list[Result]]


def _failure(command: str, returncode: int, text: str) -> str:
    tool = next((word for word in shlex.split(command) if word not in ("tool", "mkdir", "-p")
                 and not word.startswith("/") and not word.endswith("&&")), command.split()[0])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    if returncode == 127:
        return f"{tool} is not in the image (exit 127: {last})"
    return f"{tool} exited {returncode}: {last}"


def _parsed(label: str, text: str, parse: Callable[[str], list[Figure]]) -> list[Figure]:
    try:
        return parse(text)
    except ParseError as error:
        raise WorkloadError(f"unparseable output ({error}); see raw/{label}") from None


def host_tool(rootfs: Path, name: str) -> list[str]:
    """The argv running the image's ``name`` on the host through the image's own loader and
    libraries (what ``tool`` does for the ``process`` backend)."""
    directories = (rootfs / LIBRARY_PATH_FILE.lstrip("/")).read_text().split()
    return [str(rootfs / LOADER.lstrip("/")), "--library-path",
            ":".join(f"{rootfs}{d}" for d in directories), str(rootfs / "usr" / "bin" / name)]


# --- cpu and memory ------------------------------------------------------------------------


def _cpu(threads: int | None) -> Workload:
    def run(session: Session, settings: Settings) -> list[Result]:
        count = threads or settings.threads_all
        figures = session.run(
            f"cpu-{count}", f"tool sysbench cpu --threads={count} --time={settings.duration_s} "
            "run", settings, sysbench.parse_cpu)
        return [Result(f"cpu threads={count}", tuple(figures))]

    return Workload(f"cpu-{threads or 'all'}", "cpu", run)


def _memory(access: str, block: str) -> Workload:
    variant = f"memory access={access} block={block} op=write"

    def run(session: Session, settings: Settings) -> list[Result]:
        figures = session.run(
            f"memory-{access}",
            f"tool sysbench memory --threads=1 --time={settings.duration_s} "
            f"--memory-block-size={block} --memory-total-size=100000G "
            f"--memory-access-mode={access} --memory-oper=write run",
            settings, sysbench.parse_memory)
        return [Result(variant, tuple(figures))]

    return Workload(f"memory-{access}", "memory", run)


# --- disk --------------------------------------------------------------------------------

FIO_JOBS = (  # (rw, block size, direction, random)
    ("randread", "4k", "read", True),
    ("randwrite", "4k", "write", True),
    ("read", "1M", "read", False),
    ("write", "1M", "write", False),
)


def _fio(rw: str, block: str, direction: str, random: bool, target: str) -> Workload:
    variant = (f"fio {rw} bs={block} qd=1 target={target}" if random
               else f"fio {rw} bs={block} target={target}")

    def run(session: Session, settings: Settings) -> list[Result]:
        directory = session.scratch if target == "root" else session.volume
        command = (f"mkdir -p {shlex.quote(directory)} && tool fio --name=cvbench "
                   f"--filename={shlex.quote(directory + '/' + FIO_FILE)} "
                   f"--size={settings.fio_size_mib}M --direct=1 --ioengine=psync --iodepth=1 "
                   f"--bs={block} --rw={rw} --runtime={settings.duration_s} --time_based "
                   "--output-format=json")
        figures = session.run(
            f"fio-{rw}-{target}", command, settings,
            functools.partial(fio.parse_random if random else fio.parse_sequential,
                              direction=direction))
        return [Result(variant, tuple(figures))]

    return Workload(f"fio-{rw}-{target}", "disk", run)


# --- servers in the instance, clients on the host -----------------------------------------


def free_port() -> int:
    """A port free on the host's loopback now: free for ``process`` (which shares the host's
    ports) and in any instance's network namespace of its own."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A server started in the instance (in the background) by the agent."""

    session: Session
    label: str
    pid: int
    log: str

    def stop(self, settings: Settings) -> None:
        """Stop it and keep its log."""
        try:
            output = self.session.agent.run(
                f"kill {self.pid} 2>/dev/null; sleep 0.1; cat {shlex.quote(self.log)}; "
                f"rm -f {shlex.quote(self.log)}", settings.slack_s)
            self.session.keep(f"{self.label}-server", output.text)
        except AgentError:
            pass


def serve(session: Session, label: str, command: str, port: int, settings: Settings) -> Server:
    """Start ``command`` in the background in the instance; return once it listens on
    ``port``. WorkloadError (with the server's last words) if it does not."""
    log = f"{session.scratch}/{label}-server.log"
    script = (f"mkdir -p {shlex.quote(session.scratch)} && {{ {command} >{shlex.quote(log)} 2>&1 "
              f"& }}; pid=$!; i=0; while ! netstat -ltn 2>/dev/null | grep -q ':{port} '; do "
              f"i=$((i+1)); if [ $i -gt {int(SERVER_WAIT_S / 0.05)} ] || ! kill -0 $pid "
              "2>/dev/null; then echo \"no listener\"; cat " + shlex.quote(log) +
              "; exit 1; fi; sleep 0.05; done; echo \"pid $pid\"")
    try:
        result = session.agent.run(script, SERVER_WAIT_S + settings.slack_s)
    except AgentError as error:
        raise WorkloadError(f"server: {error}") from None
    if result.returncode != 0 or not result.text.strip().startswith("pid "):
        session.keep(f"{label}-server", result.text)
        lines = [line for line in result.text.splitlines() if line.strip()]
        raise WorkloadError(f"{label} server did not start: {lines[-1] if lines else 'no output'}")
    return Server(session, label, int(result.text.split()[1]), log)


def client(session: Session, label: str, name: str, args: list[str], settings: Settings) -> str:
    """Run the image's ``name`` on the host against the instance; keep and return its output.
    The target is checked to be loopback or the bridge's subnet before anything is sent."""
    if not allowed_target(session.agent.address):
        raise WorkloadError(f"refusing to send traffic to {session.agent.address}")
    argv = [*host_tool(session.rootfs, name), *args]
    try:
        result = subprocess.run(argv, capture_output=True, text=True,
                                timeout=settings.duration_s + settings.slack_s, check=False)
    except subprocess.TimeoutExpired:
        session.keep(label, f"$ {name} {' '.join(args)}\n(timed out)\n")
        raise WorkloadError(f"{name} (on the host) timed out") from None
    text = result.stdout + result.stderr
    session.keep(label, f"$ {name} {' '.join(args)}\n{text}")
    if result.returncode != 0:
        raise WorkloadError(_failure(name, result.returncode, text))
    return text


def _iperf3(reverse: bool) -> Workload:
    direction = "instance-to-host" if reverse else "host-to-instance"
    variant = f"iperf3 dir={direction}"

    def run(session: Session, settings: Settings) -> list[Result]:
        address = session.agent.address
        port = free_port()
        label = f"iperf3-{direction}"
        server = serve(session, label, f"tool iperf3 -s -1 -B {address} -p {port}", port,
                       settings)
        try:
            text = client(session, label, "iperf3",
                          ["-c", address, "-p", str(port), "-t", str(settings.duration_s), "-J",
                           *(["-R"] if reverse else [])], settings)
        finally:
            server.stop(settings)
        return [Result(variant, tuple(_parsed(label, text, iperf3.parse)))]

    return Workload(f"iperf3-{direction}", "network", run)


def _sockperf() -> Workload:
    variant = "sockperf tcp ping-pong"

    def run(session: Session, settings: Settings) -> list[Result]:
        address = session.agent.address
        port = free_port()
        server = serve(session, "sockperf", f"tool sockperf sr --tcp -i {address} -p {port}",
                       port, settings)
        try:
            text = client(session, "sockperf", "sockperf",
                          ["pp", "--tcp", "-i", address, "-p", str(port),
                           "-t", str(settings.duration_s), "--full-rtt"], settings)
        finally:
            server.stop(settings)
        return [Result(variant, tuple(_parsed("sockperf", text, sockperf.parse)))]

    return Workload("sockperf", "network", run)


def _redis() -> Workload:
    def variant(op: str, clients: int) -> str:
        return f"redis op={op} clients={clients}"

    def run(session: Session, settings: Settings) -> list[Result]:
        address = session.agent.address
        port = free_port()
        server = serve(session, "redis",
                       f"tool redis-server --bind {address} --port {port} --save '' "
                       f"--appendonly no --protected-mode no --dir {shlex.quote(session.scratch)}",
                       port, settings)
        try:
            text = client(session, "redis", "redis-benchmark",
                          ["-h", address, "-p", str(port), "-t", "set,get",
                           "-n", str(settings.redis_requests), "-c", str(settings.redis_clients),
                           "--csv"], settings)
        finally:
            server.stop(settings)
        return [Result(variant(op, settings.redis_clients),
                       tuple(_parsed("redis", text, functools.partial(redis_benchmark.parse,
                                                                      test=op))))
                for op in ("SET", "GET")]

    return Workload("redis", "redis", run)


def workloads(groups: tuple[str, ...], targets: tuple[str, ...]) -> list[Workload]:
    """The workloads of ``groups`` (disk ones on each of ``targets``), in catalogue order."""
    found: list[Workload] = []
    if "cpu" in groups:
        found += [_cpu(1), _cpu(None)]
    if "memory" in groups:
        found += [_memory("seq", "1M"), _memory("rnd", "64M")]
    if "disk" in groups:
        found += [_fio(*job, target) for target in targets for job in FIO_JOBS]
    if "network" in groups:
        found += [_iperf3(False), _iperf3(True), _sockperf()]
    if "redis" in groups:
        found.append(_redis())
    return found
