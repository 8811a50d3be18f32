#!/usr/bin/env python3
"""The systemd, cgroup-v2-only test host (vm/testhost.py) by hand.

    scripts/v2host.py build [--layer base|tests]     # build (or find cached) the image
    scripts/v2host.py run [--layer L] [--network] -- COMMAND
                                                     # boot, copy this tree to /root/cvbench,
                                                     # run COMMAND there
    scripts/v2host.py test                           # the like-for-like subset in the VM
    scripts/v2host.py bench [--results DIR]          # the README's run command, from a clone

``bench`` boots the stock layer (systemd Debian 12, nothing of cvbench's set-up) with the
guest's network (the package mirrors, through QEMU's user networking), clones this
repository's committed HEAD into /root/cvbench, and runs ``make bench`` there as root; it
prints each command with its exit code and duration and copies the run directories back
into ``--results``. Run it as root from the repository's virtualenv
(``.venv/bin/python scripts/v2host.py ...``). Every VM it boots dies with it, also on Ctrl-C
or SIGKILL (``cvbench clean`` removes the files then).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from vm import testhost  # noqa: E402  (after the repository is importable)

GUEST_CLONE = "/root/cvbench"
# The README's run command, then the engines through their systemd units (the engines'
# integration tests: every engine and OCI runtime underneath, cold and warm, nothing left in
# the engine; a SIGKILLed ramp then `cvbench clean`), then what the units run with.
BENCH_COMMANDS = (
    "cat /proc/1/comm; stat -fc %T /sys/fs/cgroup",
    f"cd {GUEST_CLONE} && make bench",
    f"cd {GUEST_CLONE} && .venv/bin/cvbench doctor",
    f"cd {GUEST_CLONE} && PYTHONUNBUFFERED=1 .venv/bin/python -m pytest -p no:cacheprovider -q"
    " -rfEs tests/integration/harness/backends/engines/test_backends.py"
    " tests/integration/harness/backends/engines/test_interrupt.py",
    "systemctl is-active libvirtd docker podman.socket; docker info -f '{{.CgroupDriver}}'",
    f"cd {GUEST_CLONE} && .venv/bin/cvbench clean",
)


def _build(args: argparse.Namespace) -> int:
    image = testhost.ensure_image(args.layer, REPOSITORY)
    print(image.directory)
    return 0


def _run(args: argparse.Namespace) -> int:
    command = shlex.join(args.command) if len(args.command) > 1 else " ".join(args.command)
    if not command:
        print("v2host: run needs a command after --", file=sys.stderr)
        return 2
    image = testhost.ensure_image(args.layer, REPOSITORY)
    with testhost.booted(image, network=args.network, memory_mib=args.memory) as host:
        print(f"v2host: booted in {host.boot_s:.0f} s", file=sys.stderr)
        host.put_tree(REPOSITORY)  # the tests layer's virtualenv stays; base has none yet
        command = f"cd {testhost.GUEST_REPO} && {command}"
        result = host.run(command, echo=sys.stdout)
    print(f"v2host: exit {result.returncode} after {result.seconds:.0f} s", file=sys.stderr)
    return result.returncode


def _test(args: argparse.Namespace) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                            "tests/integration/vm/test_testhost.py"], cwd=REPOSITORY)


def _clone_head(host: testhost.TestHost) -> None:
    """Clone the committed HEAD into the guest (a git bundle over ssh)."""
    with tempfile.TemporaryDirectory(prefix="cvbench-v2host-") as scratch:
        bundle = Path(scratch) / "head.bundle"
        subprocess.run(["git", "-C", str(REPOSITORY), "bundle", "create", "-q", str(bundle),
                        "HEAD"], check=True)
        with open(bundle, "rb") as data:
            copied = subprocess.run(host.ssh_argv("cat > /root/head.bundle"), stdin=data,
                                    capture_output=True)
        if copied.returncode != 0:
            raise testhost.TestHostError(f"copying the bundle failed: {copied.stderr!r}")
    cloned = host.run(f"rm -rf {GUEST_CLONE} && git clone -q /root/head.bundle {GUEST_CLONE}"
                      f" && git -C {GUEST_CLONE} log -1 --format=%h")
    if cloned.returncode != 0:
        raise testhost.TestHostError(f"git clone in the guest failed: {cloned.output.strip()}")


def _fetch_results(host: testhost.TestHost, destination: Path) -> list[str]:
    """Copy the guest's run directories (not the baseline) into ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    pack = (f"cd {GUEST_CLONE}/results && find . -mindepth 1 -maxdepth 1 -type d "
            "! -name baseline -print0 | tar -c --null -T -")
    with subprocess.Popen(host.ssh_argv(pack), stdout=subprocess.PIPE) as source:
        unpacked = subprocess.run(["tar", "-x", "-C", str(destination)], stdin=source.stdout)
    if unpacked.returncode != 0:
        return []
    return sorted(p.name for p in destination.iterdir() if p.is_dir())


def _bench(args: argparse.Namespace) -> int:
    started = time.monotonic()
    image = testhost.ensure_image("base", REPOSITORY)
    with testhost.booted(image, network=True, memory_mib=args.memory) as host:
        print(f"v2host: booted in {host.boot_s:.0f} s", file=sys.stderr)
        _clone_head(host)
        results = testhost.run_commands(host, BENCH_COMMANDS, echo=sys.stdout)
        runs = _fetch_results(host, args.results)
    print("\nv2host: commands in the systemd, cgroup-v2-only VM:")
    for result in results:
        print(f"  exit {result.returncode:3d}  {result.seconds:7.0f} s  {result.command}")
    print(f"v2host: run directories copied to {args.results}: {', '.join(runs) or 'none'}")
    print(f"v2host: {time.monotonic() - started:.0f} s in all")
    failed = [r for r in results if r.returncode != 0]
    return 1 if failed or len(results) < len(BENCH_COMMANDS) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="v2host.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    build = sub.add_parser("build", help="build the image (cached)")
    build.add_argument("--layer", choices=testhost.LAYERS, default="tests")
    build.set_defaults(func=_build)
    run = sub.add_parser("run", help="boot, run one command, stop")
    run.add_argument("--layer", choices=testhost.LAYERS, default="tests")
    run.add_argument("--network", action="store_true", help="the guest reaches the mirrors")
    run.add_argument("--memory", type=int, default=4096, help="guest memory in MiB")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(func=_run)
    test = sub.add_parser("test", help="the like-for-like subset in the VM")
    test.set_defaults(func=_test)
    bench = sub.add_parser("bench", help="`make bench` in the VM from a clone of HEAD")
    bench.add_argument("--results", type=Path, default=Path("/var/tmp/cvbench-v2host-results"))
    bench.add_argument("--memory", type=int, default=8192, help="guest memory in MiB")
    bench.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    if getattr(args, "command", None) and args.command[0] == "--":
        args.command = args.command[1:]
    try:
        return int(args.func(args))
    except testhost.TestHostError as error:
        print(f"v2host: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
