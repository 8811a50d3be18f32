"""Fleet "hosts" on this one machine: network namespaces on a private bridge, each with its own
sshd, for ``cvbench fleet`` tests through the real Ansible path.

Each host is a network namespace ``cvbench-fleet-<name>`` joined by a veth pair to the bridge
``cvbench-fleet0`` (``10.214.1.1/24``, on no other interface, with no route off it and no
forwarding). Its end of the pair holds ``10.214.1.<11+i>/24``; an sshd (Debian's
openssh-server) listens there only, in the namespace and in a UTS namespace of its own (so
the host has its own hostname; its mounts are this machine's), with a host key, an
authorized client key and settings made here in a private directory. The hosts share this
machine's kernel, file system and pid namespace: they are not independent machines. Every
session sets ``CVBENCH_STATE_DIR`` to the host's own state directory (sshd's ``SetEnv``).

Only addresses made here are contacted. :meth:`Hosts.close` ends every process it started
(the sshds and whatever they started, found by network namespace), deletes the namespaces,
the veths and the bridge, and :meth:`Hosts.leftovers` says what, if anything, is left.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BRIDGE = "cvbench-fleet0"
NETWORK = ipaddress.ip_network("10.214.1.0/24")  # runtime/network.py has 10.213.0.0/16
GATEWAY = "10.214.1.1"
NETNS_PREFIX = "cvbench-fleet-"
VETH_PREFIX = "cvbench-fl"  # cvbench-fl<name> (bridge side) and cvbench-fp<name> (peer)
SSHD = "/usr/sbin/sshd"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=60)


def ensure_sshd() -> None:
    """Install Debian's openssh-server when absent, without starting its service."""
    if Path(SSHD).is_file():
        return
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:  # keep the package's scripts from starting a host-wide sshd
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                         "openssh-server"]):
            subprocess.run(command, check=True, env=env, capture_output=True, timeout=600)
    finally:
        if made_policy:
            policy.unlink()


@dataclass
class Host:
    name: str
    address: str
    netns: str
    directory: Path
    sshd: subprocess.Popen[bytes] | None = None
    netns_id: tuple[int, int] | None = None  # (st_dev, st_ino): found also once unnamed

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"


@dataclass
class Hosts:
    """Hosts ``names`` in ``directory``; those in ``no_sshd`` get a namespace and an address
    but no sshd (an unreachable host)."""

    directory: Path
    names: tuple[str, ...]
    no_sshd: tuple[str, ...] = ()
    hosts: dict[str, Host] = field(default_factory=dict)
    made_run_sshd: bool = False

    @property
    def client_key(self) -> Path:
        return self.directory / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    def start(self) -> Hosts:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)  # sshd's StrictModes: key files in a private directory
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cvbench-fleet-test",
            "-f", str(self.client_key))
        (self.directory / "authorized_keys").write_text(
            Path(f"{self.client_key}.pub").read_text())
        if not Path("/run/sshd").is_dir():  # sshd's privilege separation directory
            Path("/run/sshd").mkdir(mode=0o755)
            self.made_run_sshd = True
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{GATEWAY}/{NETWORK.prefixlen}", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        known = []
        for index, name in enumerate(self.names):
            host = Host(name=name, address=str(NETWORK.network_address + 11 + index),
                        netns=f"{NETNS_PREFIX}{name}", directory=self.directory / name)
            self.hosts[name] = host
            host.directory.mkdir(mode=0o700)
            host.state_dir.mkdir()
            host.state_dir.chmod(0o755)
            self._network(host)
            if name not in self.no_sshd:
                known.append(f"{host.address} {self._sshd(host)}")
        self.known_hosts.write_text("\n".join(known) + "\n")
        for host in self.hosts.values():
            if host.sshd is not None:
                self._wait_listening(host)
        return self

    def _network(self, host: Host) -> None:
        outside, inside = f"{VETH_PREFIX}{host.name}", f"cvbench-fp{host.name}"
        run("ip", "netns", "add", host.netns)
        stat = os.stat(f"/run/netns/{host.netns}")
        host.netns_id = (stat.st_dev, stat.st_ino)
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        run("ip", "link", "set", outside, "master", BRIDGE, "up")
        run("ip", "link", "set", inside, "netns", host.netns)
        ns = ("ip", "netns", "exec", host.netns)
        run(*ns, "ip", "link", "set", inside, "name", "eth0")
        run(*ns, "ip", "addr", "add", f"{host.address}/{NETWORK.prefixlen}", "dev", "eth0")
        run(*ns, "ip", "link", "set", "eth0", "up")
        run(*ns, "ip", "link", "set", "lo", "up")

    def _sshd(self, host: Host) -> str:
        """Start the host's sshd; its public host key line (for known_hosts)."""
        key = host.directory / "host_key"
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(key))
        config = host.directory / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {host.address}",
            "Port 22",
            f"HostKey {key}",
            f"PidFile {host.directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "StrictModes no",  # the key files sit under /tmp (world-writable)
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "PrintMotd no",
            f"SetEnv CVBENCH_STATE_DIR={host.state_dir}",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            "",
        ]))
        log = (host.directory / "sshd.log").open("wb")
        # the host's own hostname: a UTS namespace of its own, around sshd and its sessions
        # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup hierarchies
        host.sshd = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{host.netns}", "unshare", "--uts", "sh", "-c",
             f'hostname "$1" && exec {SSHD} -D -e -f "$2"', "sh", f"fleet-{host.name}",
             str(config)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        return " ".join(Path(f"{key}.pub").read_text().split()[:2])

    def _wait_listening(self, host: Host, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert host.sshd is not None
            if host.sshd.poll() is not None:
                raise RuntimeError(f"sshd of {host.name} exited: "
                                   f"{(host.directory / 'sshd.log').read_text()[-500:]}")
            try:
                with socket.create_connection((host.address, 22), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd of {host.name} does not listen on {host.address}:22")

    def inventory(self, path: Path, names: tuple[str, ...] | None = None,
                  extra: str = "") -> Path:
        """An INI inventory of ``names`` (default: every host) reaching them as root."""
        lines = ["[fleet]"]
        for name in names or self.names:
            lines.append(f"{name} ansible_host={self.hosts[name].address} ansible_user=root")
        lines += ["", "[fleet:vars]",
                  f"ansible_ssh_private_key_file={self.client_key}",
                  f"ansible_ssh_common_args='-o UserKnownHostsFile={self.known_hosts} "
                  "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'",
                  "ansible_python_interpreter=/usr/bin/python3", extra, ""]
        path.write_text("\n".join(lines))
        return path

    def processes(self, name: str) -> dict[int, str]:
        """pid → command line of every process in the host's network namespace."""
        target = self.hosts[name].netns_id
        if target is None:
            return {}
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                ns = os.stat(f"/proc/{entry}/ns/net")
                if (ns.st_dev, ns.st_ino) == target:
                    found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes() \
                        .replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
        return found

    def sshd_pids(self) -> set[int]:
        """The listening sshds (the processes this class started, after ``ip netns exec``
        and ``unshare`` exec'd into them)."""
        return {h.sshd.pid for h in self.hosts.values() if h.sshd and h.sshd.poll() is None}

    def foreign_processes(self) -> dict[str, dict[int, str]]:
        """Per host, the processes in its namespace other than its listening sshd."""
        own = self.sshd_pids()
        found = {}
        for name in self.hosts:
            left = {pid: cmd for pid, cmd in self.processes(name).items() if pid not in own}
            if left:
                found[name] = left
        return found

    def close(self) -> None:
        """End every process started here, remove the namespaces, veths and bridge."""
        for host in self.hosts.values():
            if host.sshd is not None and host.sshd.poll() is None:
                host.sshd.send_signal(signal.SIGTERM)
                try:
                    host.sshd.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    host.sshd.kill()
                    host.sshd.wait()
            # what the sshd started (sessions, a run) lives in the namespace: ours to end
            for pid in self.processes(host.name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for host in self.hosts.values():
            run("ip", "netns", "del", host.netns, check=False)
            run("ip", "link", "del", f"{VETH_PREFIX}{host.name}", check=False)
        run("ip", "link", "del", BRIDGE, check=False)
        if self.made_run_sshd:
            shutil.rmtree("/run/sshd", ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Anything of these hosts still on the machine (empty after :meth:`close`)."""
        left = []
        links = run("ip", "-o", "link", "show").stdout
        for line in links.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name == BRIDGE or name.startswith((VETH_PREFIX, "cvbench-fp")):
                left.append(f"link {name}")
        netns = run("ip", "netns", "list").stdout
        left += [f"netns {line.split()[0]}" for line in netns.splitlines()
                 if line.startswith(NETNS_PREFIX)]
        left += [f"process {pid} ({cmd}) of {name}" for name in self.hosts
                 for pid, cmd in self.processes(name).items()]
        return left
