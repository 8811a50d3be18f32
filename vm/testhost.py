"""A host of the kind cvbench's users have, in a VM: Debian 12, systemd as PID 1, udev, cgroup v2
only. A machine without them (the development machines have none of that) cannot show what
cvbench does there, so the tests that prove like for like on such a host, and the README's run
command, run inside one (``tests/integration/vm/test_testhost.py``,
``scripts/v2host.py``).

The image is built by ``scripts/v2host-image.sh`` in two layers: ``base``, a stock systemd
Debian (what ``make bench`` starts from), and ``tests``, base plus the packages and virtualenv
the in-VM test subset needs (so it runs with no network). Each is cached under
``cache_dir()/v2host/<layer>-<key>/`` where the key hashes the build's inputs (the builder, its
helpers, and for ``tests`` the project's dependencies); a changed input builds it again.

The VM is a :class:`vm.bare_qemu.BareVM`: it dies with the process that started it
(``PR_SET_PDEATHSIG``), its directory carries that process as owner, and ``cvbench clean``
(:func:`vm.sweep.sweep`) kills and removes what a SIGKILLed starter left. Its disk is a qcow2
overlay on the cached image, so every boot starts from the same state. The host reaches it by
ssh through QEMU's user networking, forwarded from a loopback port only; ``network=False``
(QEMU's ``restrict=on``) gives the guest no way out at all.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from hostkit.paths import PREFIX, cache_dir
from vm.bare_qemu import BareVM
from vm.domain import DomainSpec

LAYERS = ("base", "tests")
# x86-64-v2 without AVX (Python wheels' baseline), AMD's vendor string and SVM (qemu64's own):
# the guest loads kvm_amd, so cvbench inside picks KVM, nested on TCG. `-cpu max` also offers
# AVX, which QEMU 7.2's TCG ran unfaithfully once (numpy died of a general protection fault).
CPU_MODEL = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16"
# cgroup v2 only, whatever the kernel's or systemd's default: no fallback to hybrid.
# The kernel's messages go to both serial ports; ttyS1 is written to a log file for the whole
# boot (the first port is read only until READY), so a guest that dies later says why.
CMDLINE = ("root=/dev/vda rw console=ttyS1 console=ttyS0 systemd.unified_cgroup_hierarchy=1"
           " cgroup_no_v1=all systemd.show_status=false")
LOGS = Path("/var/tmp/cvbench-v2host-logs")
BUILDER = "scripts/v2host-image.sh"
BUILDER_INPUTS = (BUILDER, "scripts/lib/debian-root.sh")
# What the tests layer also builds from: the virtualenv's requirements and the floor backend's
# launcher, compiled into the image (the tree itself is copied in at each run).
TESTS_LAYER_INPUTS = ("pyproject.toml", "harness/backends/floor/launcher.c")
GUEST_REPO = "/root/cvbench"  # where the tests layer's virtualenv expects the project
SSH_USER = "root"


class TestHostError(Exception):
    """The test host could not be built, booted or reached; the message says which and why."""


@dataclass(frozen=True)
class HostImage:
    """One built layer: a root disk, the kernel and initramfs to boot it, root's ssh key."""

    layer: str
    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "disk.qcow2"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def key(self) -> Path:
        return self.directory / "id_ed25519"

    def complete(self) -> bool:
        return (self.directory / "complete").is_file()


def images_root() -> Path:
    return cache_dir() / "v2host"


def image_key(layer: str, repo: Path) -> str:
    """What the layer is built from, hashed: a change to any of it means a new build."""
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {', '.join(LAYERS)}, not {layer!r}")
    digest = hashlib.sha256(layer.encode())
    inputs = [*BUILDER_INPUTS, *(TESTS_LAYER_INPUTS if layer == "tests" else ())]
    for name in inputs:
        digest.update(name.encode() + b"\0" + (repo / name).read_bytes())
    return digest.hexdigest()[:12]


def ensure_image(layer: str, repo: Path, log: TextIO = sys.stderr) -> HostImage:
    """The layer's image, built first if its inputs changed (one builder at a time; older
    builds of the layer are removed once the new one is complete)."""
    root = images_root()
    root.mkdir(parents=True, exist_ok=True)
    image = HostImage(layer, root / f"{layer}-{image_key(layer, repo)}")
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.complete():
            return image
        print(f"v2host: building the {layer} image in {image.directory}", file=log, flush=True)
        shutil.rmtree(image.directory, ignore_errors=True)
        result = subprocess.run(["bash", str(repo / BUILDER), str(image.directory), layer,
                                 str(repo)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if result.returncode != 0:
            raise TestHostError(f"building the {layer} image failed (exit {result.returncode}); "
                                f"logs in {image.directory}")
        (image.directory / "complete").write_text(f"{time.time():.0f}\n")
        for old in root.glob(f"{layer}-*"):
            if old != image.directory:
                shutil.rmtree(old, ignore_errors=True)
    return image


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class CommandResult:
    """What one command in the guest did: its exit code, output and duration."""

    command: str
    returncode: int
    output: str
    seconds: float


@dataclass
class TestHost:
    """A booted test host; make one with :func:`booted`."""

    image: HostImage
    vm: BareVM
    port: int
    boot_s: float
    failed_boots: list[str] = field(default_factory=list)  # why earlier boots were retried

    def ssh_argv(self, command: str) -> list[str]:
        return ["ssh", "-i", str(self.image.key), "-p", str(self.port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
                "-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=10",
                f"{SSH_USER}@127.0.0.1", command]

    def run(self, command: str, *, echo: TextIO | None = None, timeout: float | None = None,
            stdin: int | None = subprocess.DEVNULL) -> CommandResult:
        """Run ``command`` with bash as root in the guest; its output (stdout and stderr) is
        returned and, with ``echo``, also written there line by line as it comes."""
        started = time.monotonic()
        process = subprocess.Popen(self.ssh_argv(f"bash -lc {shlex.quote(command)}"),
                                   stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace")
        lines: list[str] = []
        assert process.stdout is not None
        try:
            for line in process.stdout:
                lines.append(line)
                if echo is not None:
                    echo.write(line)
                    echo.flush()
                if timeout is not None and time.monotonic() - started > timeout:
                    process.kill()
                    lines.append(f"v2host: {command!r} killed after {timeout:.0f} s\n")
                    break
        finally:
            returncode = process.wait()
        return CommandResult(command, returncode, "".join(lines), time.monotonic() - started)

    def put_tree(self, repo: Path, destination: str = GUEST_REPO) -> None:
        """Copy the files git knows in ``repo`` (tracked, and untracked but not ignored, as
        they are in the working tree) to ``destination``, replacing all it held but a
        virtualenv."""
        listing = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], check=True, capture_output=True).stdout
        names = [name for name in listing.decode().split("\0") if name and (repo / name).exists()]
        target = shlex.quote(destination)
        unpack = (f"mkdir -p {target} && find {target} -mindepth 1 -maxdepth 1 ! -name .venv "
                  f"-exec rm -rf {{}} + && tar -x -C {target}")
        with subprocess.Popen(["tar", "-c", "--no-recursion", "--null", "-T", "-"],
                              cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as tar:
            assert tar.stdin is not None
            copy = subprocess.Popen(self.ssh_argv(unpack), stdin=tar.stdout,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert tar.stdout is not None
            tar.stdout.close()
            tar.stdin.write(b"\0".join(name.encode() for name in names) + b"\0")
            tar.stdin.close()
            output, _ = copy.communicate()
        if tar.returncode != 0 or copy.returncode != 0:
            raise TestHostError(f"copying {repo} to the test host failed: "
                                f"{output.decode(errors='replace').strip()[-300:]}")


def _wait_for_ssh(host: TestHost, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = host.run("true", timeout=30)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise TestHostError(f"the test host's sshd did not answer: {result.output.strip()}")
        time.sleep(1)


# Many times what a boot takes under TCG: a guest still without READY then has stalled, and is
# worth one more boot (docs/findings/v2-host.md).
BOOT_TIMEOUT_S = 300.0
BOOT_ATTEMPTS = 2
BOOT_LOG_LINES = 25  # of the whole boot's console log, in a failed boot's message


def boot_failure(error: Exception, console_log: Path) -> str:
    """What a boot that never said READY leaves to read, in the error itself: the console
    log's last lines (the kernel's and systemd's messages, on ttyS1) and the host's load, so
    that a failure on a machine whose files are gone (a CI run) still says where it stopped."""
    try:
        lines = console_log.read_text(errors="replace").splitlines()
    except OSError as read_error:
        lines = [f"(no console log: {read_error.strerror})"]
    tail = [line.rstrip() for line in lines if line.strip()][-BOOT_LOG_LINES:]
    serial = getattr(error, "output", b"").decode(errors="replace").splitlines()[-5:]
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (f"the test host did not boot: {error} (host load {load}; the first serial port's "
            f"last lines: {serial}; console log {console_log}, last {len(tail)} lines:\n"
            + "\n".join(tail) + ")")


def _boot_once(image: HostImage, spec: DomainSpec, network: bool,
               boot_timeout: float) -> tuple[BareVM, int]:
    """Start the VM and wait for its READY; the VM and its ssh port. A boot that fails is
    stopped (its console log kept) and raised as :class:`TestHostError`."""
    port = _free_loopback_port()
    netdev = f"user,id=v2net,hostfwd=tcp:127.0.0.1:{port}-:22"
    if not network:
        netdev += ",restrict=on"
    LOGS.mkdir(parents=True, exist_ok=True)
    console_log = LOGS / f"console-{spec.name}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    extra = ["-cpu", CPU_MODEL, "-netdev", netdev, "-device", "virtio-net-pci,netdev=v2net",
             "-chardev", f"file,id=v2log,path={console_log}",
             "-device", "isa-serial,chardev=v2log,index=1"]
    vm = BareVM.start(spec, disk_base=image.disk, extra=extra)
    try:
        vm.wait_ready(boot_timeout)
    except Exception as error:
        vm.stop()
        raise TestHostError(boot_failure(error, console_log)) from None
    except BaseException:
        vm.stop()
        raise
    return vm, port


@contextmanager
def booted(image: HostImage, *, memory_mib: int = 4096, vcpus: int = 2, network: bool = False,
           boot_timeout: float = BOOT_TIMEOUT_S, attempts: int = BOOT_ATTEMPTS,
           name: str | None = None, log: TextIO = sys.stderr) -> Iterator[TestHost]:
    """Boot ``image`` (under TCG, so it boots alike on any machine, with or without a usable
    KVM), wait until systemd started sshd, yield the host, and stop it. ``network``: the
    guest reaches what this machine reaches (the package mirrors); otherwise nothing
    (QEMU's ``restrict=on``).

    A boot that shows no READY within ``boot_timeout`` is tried again, up to ``attempts``
    boots in all, each from a pristine overlay of the same image (docs/findings/v2-host.md:
    a guest that stalled once in CI, where nothing else failed). Every
    failed boot's message goes to ``log`` and stays in :attr:`TestHost.failed_boots`, so a
    retried boot is reported, never hidden."""
    if not image.complete():
        raise TestHostError(f"the {image.layer} image in {image.directory} is not built")
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    spec = DomainSpec(name=name or f"{PREFIX}v2host-{os.getpid()}", kernel=image.kernel,
                      initrd=image.initrd, memory_mib=memory_mib, vcpus=vcpus, cmdline=CMDLINE,
                      machine="q35", acpi=True, accel="tcg")
    started = time.monotonic()
    failures: list[str] = []
    while True:
        try:
            vm, port = _boot_once(image, spec, network, boot_timeout)
            break
        except TestHostError as error:
            failures.append(str(error))
            print(f"v2host: boot {len(failures)} of {attempts} failed: {error}", file=log,
                  flush=True)
            if len(failures) == attempts:
                raise TestHostError(f"the test host did not boot in {attempts} attempt(s); "
                                    f"the last: {error}") from None
    try:
        host = TestHost(image, vm, port, 0.0, failures)
        _wait_for_ssh(host, 120)
        host.boot_s = time.monotonic() - started
        yield host
    finally:
        vm.stop()


def host_kind_facts(host: TestHost) -> dict[str, str]:
    """What makes the guest the kind of host it stands for: PID 1's name, the file systems
    mounted at and under /sys/fs/cgroup, the root's controllers."""
    script = ("cat /proc/1/comm; "
              "awk '$5 ~ \"^/sys/fs/cgroup\" {print $5\"=\"$9}' /proc/self/mountinfo | paste -sd,; "
              "cat /sys/fs/cgroup/cgroup.controllers")
    result = host.run(script, timeout=60)
    if result.returncode != 0:
        raise TestHostError(f"reading the host's kind failed: {result.output.strip()}")
    init, mounts, controllers = (result.output.splitlines() + ["", "", ""])[:3]
    return {"init": init.strip(), "cgroup_mounts": mounts.strip(),
            "controllers": controllers.strip()}


def run_commands(host: TestHost, commands: Sequence[str], echo: TextIO | None = None,
                 timeout: float | None = None) -> list[CommandResult]:
    """Run ``commands`` in order, stopping at the first that fails."""
    results = []
    for command in commands:
        result = host.run(command, echo=echo, timeout=timeout)
        results.append(result)
        if result.returncode != 0:
            break
    return results
