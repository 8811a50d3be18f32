"""start → READY of ``ours`` cold, ``ours`` warm and crun (cold) through the harness backends,
interleaved, with the same spec (seccomp profile, device rules, every cgroup hierarchy).

    flock /tmp/cvbench-host.lock .venv/bin/python tests/bench/like_for_like.py [N] [--seed S]

Each round runs the three in a random order (seeded); one unmeasured warm-up round first. The
clock is ``time.perf_counter`` around ``start()`` (warm: ``resume()``) → ``wait_ready()``;
``create()``, ``stop()`` and ``remove()`` are outside it. Prints the median, p10 and p90 in
milliseconds of each, and the ratio of ``ours`` cold to crun cold.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness import backends  # noqa: E402
from harness.backends.base import Backend, InstanceSpec  # noqa: E402

CASES = (("ours", "cold"), ("ours", "warm"), ("crun", "cold"))


def once(backend: Backend, variant: str, spec: InstanceSpec) -> float:
    """One measured start → READY; stop and remove after the clock."""
    if variant == "warm":
        instance = backend.create(spec)
        start = time.perf_counter()
        backend.resume(instance)
    else:
        start = time.perf_counter()
        instance = backend.start(spec)
    backend.wait_ready(instance, 10)
    elapsed = time.perf_counter() - start
    backend.stop(instance)
    backend.remove(instance)
    return elapsed


def measure(n: int, seed: int) -> dict[tuple[str, str], list[float]]:
    from imagestore import image as images

    image = images.build()
    made = {name: backends.create(name) for name in {name for name, _ in CASES}}
    for backend in made.values():
        backend.prepare(image)
    tag = uuid.uuid4().hex[:6]
    times: dict[tuple[str, str], list[float]] = {case: [] for case in CASES}
    order = list(CASES)
    rng = random.Random(seed)
    try:
        for round_ in range(n + 1):  # round 0 is the warm-up
            rng.shuffle(order)
            for name, variant in order:
                spec = InstanceSpec(name=f"cvbench-lfl-{tag}-{name}-{variant}-{round_}",
                                    image=image)
                elapsed = once(made[name], variant, spec)
                if round_:
                    times[(name, variant)].append(elapsed)
    finally:
        for backend in made.values():
            backend.cleanup()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    private = None
    if "CVBENCH_STATE_DIR" not in os.environ:  # a private state directory, removed after
        private = tempfile.mkdtemp(prefix="cvbench-lfl-")
        os.chmod(private, 0o755)
        os.environ["CVBENCH_STATE_DIR"] = private
    try:
        times = measure(args.n, args.seed)
    finally:
        if private:
            shutil.rmtree(private, ignore_errors=True)
    for (name, variant), values in times.items():
        ms = sorted(v * 1000 for v in values)
        deciles = statistics.quantiles(ms, n=10)
        print(f"{name:5s} {variant:4s} start->READY median {statistics.median(ms):6.2f} ms  "
              f"p10 {deciles[0]:6.2f}  p90 {deciles[-1]:6.2f}  (n={len(ms)})")
    ratio = statistics.median(times[("ours", "cold")]) / statistics.median(times[("crun", "cold")])
    print(f"ours cold / crun cold = {ratio:.2f}")


if __name__ == "__main__":
    main()
