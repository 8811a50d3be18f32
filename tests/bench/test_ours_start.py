"""Start → READY → stop of ``ours`` against ``crun`` on the same image and spec (seccomp
profile included) (pytest-benchmark).

Run with ``pytest tests/bench/test_ours_start.py --benchmark-enable``. As a script,
``python tests/bench/test_ours_start.py [N]`` runs both interleaved (ours, crun, ours, ...)
and prints the medians of start→READY and stop→gone. ``ours`` starts cold here (nothing
prepared); ``test_ours_warm_resume_ready_stop`` times the warm start (a spare prepared by
``create`` outside the timed part). ``tests/bench/like_for_like.py`` compares all three
through the harness backends.

crun is driven by a small helper of its own (independent of harness/backends/oci/): a
``python -S`` process in a private mount namespace where ``/sys/fs/cgroup/unified`` is
unmounted (crun 1.8 refuses hybrid cgroups otherwise). For each start it mounts an overlay
rootfs, runs ``crun run -d`` with a pipe as stdout and waits for READY; for each stop it runs
``crun kill TERM``, waits for the pid through a pidfd, runs ``crun delete`` and unmounts. It
times itself, so the numbers exclude the request round trip.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runtime.spec import default_spec  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

CRUN_HELPER = r"""
import json, os, select, shutil, signal, sys, time
sys.path.insert(0, ROOT)
from hostkit import syscalls as sc

sc.unshare(sc.CLONE_NEWNS)
sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
try:
    sc.umount2("/sys/fs/cgroup/unified", sc.MNT_DETACH)
except OSError:
    pass
null = os.open("/dev/null", os.O_RDWR)

def run(argv, stdout=None):
    pid = os.posix_spawn(argv[0], argv, dict(os.environ),
                         file_actions=[(os.POSIX_SPAWN_DUP2, null, 0),
                                       (os.POSIX_SPAWN_DUP2, stdout if stdout is not None
                                        else null, 1)])
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

for line in sys.stdin:
    req = json.loads(line)
    crun = [CRUN, "--root", STATE]
    bundle = req["bundle"]
    if req["op"] == "start":
        t0 = time.perf_counter()
        for d in ("upper", "work", "rootfs"):
            os.mkdir(os.path.join(bundle, d))
        sc.mount("overlay", bundle + "/rootfs", "overlay", 0,
                 "lowerdir=%s,upperdir=%s/upper,workdir=%s/work" % (req["lower"], bundle, bundle))
        r, w = os.pipe2(os.O_CLOEXEC)
        rc = run(crun + ["run", "-d", "--pid-file", bundle + "/pid", "--bundle", bundle,
                         req["name"]], stdout=w)
        os.close(w)
        buf = b""
        while rc == 0 and b"READY" not in buf:
            select.select([r], [], [], 10)
            chunk = os.read(r, 4096)
            if not chunk:
                break
            buf += chunk
        os.close(r)
        t1 = time.perf_counter()
        pid = int(open(bundle + "/pid").read()) if rc == 0 else None
        print(json.dumps({"rc": rc, "pid": pid, "s": t1 - t0, "out": buf.decode()}), flush=True)
    elif req["op"] == "stop":
        t0 = time.perf_counter()
        fd = os.pidfd_open(req["pid"])
        run(crun + ["kill", req["name"], "TERM"])
        if not select.select([fd], [], [], 2.0)[0]:
            run(crun + ["kill", req["name"], "KILL"])
            select.select([fd], [], [], 10.0)
        os.close(fd)
        rc = run(crun + ["delete", "-f", req["name"]])
        sc.umount2(bundle + "/rootfs", sc.MNT_DETACH)
        shutil.rmtree(bundle)
        print(json.dumps({"rc": rc, "s": time.perf_counter() - t0}), flush=True)
"""


class CrunDriver:
    """start/stop crun containers through the private-mount-namespace helper."""

    def __init__(self, image, workdir: Path) -> None:
        self.image = image
        self.workdir = workdir
        self.state = Path("/run") / f"cvbench-benchcrun-{uuid.uuid4().hex[:6]}"
        code = (
            f"ROOT={str(ROOT)!r}; CRUN={shutil.which('crun')!r}; STATE={str(self.state)!r}\n"
            + CRUN_HELPER
        )
        self.helper = subprocess.Popen(
            [sys.executable, "-S", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _ask(self, request: dict) -> dict:
        assert self.helper.stdin and self.helper.stdout
        self.helper.stdin.write(json.dumps(request) + "\n")
        self.helper.stdin.flush()
        line = self.helper.stdout.readline()
        if not line:
            raise RuntimeError("crun helper died")
        return json.loads(line)

    def start(self, name: str) -> tuple[dict, float]:
        bundle = self.workdir / name
        bundle.mkdir()
        spec = default_spec(self.image, name)
        config = spec.to_oci()
        config["root"] = {"path": "rootfs", "readonly": False}
        config["annotations"] = {}
        config["linux"]["cgroupsPath"] = f"/cvbench-benchcrun/{name}"
        (bundle / "config.json").write_text(json.dumps(config))
        reply = self._ask(
            {"op": "start", "bundle": str(bundle), "name": name, "lower": str(self.image.rootfs)}
        )
        if reply["rc"] != 0 or "READY" not in reply["out"]:
            raise RuntimeError(f"crun run failed: {reply}")
        return reply, reply["s"]

    def stop(self, name: str, pid: int) -> float:
        reply = self._ask(
            {"op": "stop", "bundle": str(self.workdir / name), "name": name, "pid": pid}
        )
        if reply["rc"] != 0:
            raise RuntimeError(f"crun delete failed: {reply}")
        return reply["s"]

    def close(self) -> None:
        if self.helper.stdin:
            self.helper.stdin.close()
        self.helper.wait(timeout=10)
        shutil.rmtree(self.state, ignore_errors=True)
        for controller in (
            "memory",
            "pids",
            "cpu",
            "cpuacct",
            "cpuset",
            "devices",
            "freezer",
            "blkio",
            "systemd",
        ):
            try:
                os.rmdir(f"/sys/fs/cgroup/{controller}/cvbench-benchcrun")
            except OSError:
                pass


class OursDriver:
    def __init__(self, image) -> None:
        from runtime.container import Runtime

        self.image = image
        self.runtime = Runtime()
        self.runtime.server.start()

    def start(self, name: str):
        """Cold: create and start inside the timed part."""
        t0 = time.perf_counter()
        container = self.runtime.create(default_spec(self.image, name), name)
        self.runtime.start(container)
        self.runtime.wait_ready(container, 10)
        return container, time.perf_counter() - t0

    def create_warm(self, name: str):
        """Warm, untimed: directory, cgroups and a spare with the namespaces ready."""
        return self.runtime.create(default_spec(self.image, name), name, spare=True)

    def resume(self, container) -> float:
        t0 = time.perf_counter()
        self.runtime.start(container)
        self.runtime.wait_ready(container, 10)
        return time.perf_counter() - t0

    def stop(self, container) -> float:
        t0 = time.perf_counter()
        self.runtime.stop(container)
        self.runtime.destroy(container)
        return time.perf_counter() - t0

    def close(self) -> None:
        self.runtime.cleanup()
        self.runtime.close()


def compare(image, workdir: Path, n: int) -> dict[str, dict[str, float]]:
    """Interleaved ours/crun cycles; medians in milliseconds."""
    ours, crun = OursDriver(image), CrunDriver(image, workdir)
    times = {k: {"start": [], "stop": []} for k in ("ours", "crun")}
    tag = uuid.uuid4().hex[:6]
    try:
        for i in range(n + 1):  # the first round is a warm-up
            container, s = ours.start(f"cvbench-bo-{tag}-{i}")
            g = ours.stop(container)
            reply, cs = crun.start(f"cvbench-bc-{tag}-{i}")
            cg = crun.stop(f"cvbench-bc-{tag}-{i}", reply["pid"])
            if i:
                times["ours"]["start"].append(s)
                times["ours"]["stop"].append(g)
                times["crun"]["start"].append(cs)
                times["crun"]["stop"].append(cg)
    finally:
        ours.close()
        crun.close()
    return {
        backend: {metric: statistics.median(v) * 1000 for metric, v in metrics.items()}
        for backend, metrics in times.items()
    }


@pytest.fixture
def ours_driver(state_dir, built_image):
    driver = OursDriver(built_image)
    yield driver
    driver.close()


@pytest.fixture
def crun_driver(state_dir, built_image, tmp_path):
    if not shutil.which("crun"):
        pytest.skip("crun is not installed")
    driver = CrunDriver(built_image, tmp_path)
    yield driver
    driver.close()


def test_ours_start_ready_stop(benchmark, ours_driver):
    names = (f"cvbench-bench-ours-{uuid.uuid4().hex[:6]}-{i}" for i in range(10**6))

    def cycle() -> None:
        container, _ = ours_driver.start(next(names))
        ours_driver.stop(container)

    benchmark.pedantic(cycle, rounds=30, iterations=1, warmup_rounds=2)
    assert not ours_driver.runtime.containers


def test_ours_warm_resume_ready_stop(benchmark, ours_driver):
    names = (f"cvbench-bench-warm-{uuid.uuid4().hex[:6]}-{i}" for i in range(10**6))

    def setup():
        return (ours_driver.create_warm(next(names)),), {}

    def cycle(container) -> None:
        ours_driver.resume(container)
        ours_driver.stop(container)

    benchmark.pedantic(cycle, setup=setup, rounds=30, iterations=1, warmup_rounds=2)
    assert not ours_driver.runtime.containers


def test_crun_start_ready_stop(benchmark, crun_driver):
    names = (f"cvbench-bench-crun-{uuid.uuid4().hex[:6]}-{i}" for i in range(10**6))

    def cycle() -> None:
        name = next(names)
        reply, _ = crun_driver.start(name)
        crun_driver.stop(name, reply["pid"])

    benchmark.pedantic(cycle, rounds=30, iterations=1, warmup_rounds=2)


def main() -> None:
    import tempfile

    from imagestore import image as images

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    image = images.load_verified()
    with tempfile.TemporaryDirectory(prefix="cvbench-benchcrun-") as workdir:
        medians = compare(image, Path(workdir), n)
    for backend, metrics in medians.items():
        print(
            f"{backend:5s} start->READY p50 {metrics['start']:6.2f} ms   "
            f"stop->gone p50 {metrics['stop']:6.2f} ms   (n={n})"
        )


if __name__ == "__main__":
    main()
