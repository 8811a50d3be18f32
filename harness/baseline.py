"""The committed baselines (``results/baseline/``) that CI gates the quick suite against.

Ratios to the in-run floors remove most of a machine's speed, not all of it: on another CPU
model the container runtimes' ratios to ``process`` differ with the same code
(docs/findings/machine-kinds.md). So a baseline is kept
per *machine kind* (the CPU model): ``results/baseline/<kind>/`` holds one complete run, and
``results/baseline/thresholds.toml`` the thresholds. A candidate is gated against the
baseline of its own kind; a kind without one is gated against the newest baseline at the
thresholds measured across machine kinds (``[across_kinds]``), and the gate says so.
A baseline directory holding a run directly (the old, single-baseline layout) still works.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness import hostinfo, normalize, results

BASELINE_FILES = ("metadata.json", "samples.csv")  # normalized.csv is made anew from them

log = logging.getLogger(__name__)


def kind_of(run_dir: Path) -> str:
    """The machine kind a run was made on (from its metadata)."""
    host = results.read_metadata(run_dir).get("host", {})
    return host.get("machine_kind") or hostinfo.machine_kind(host.get("cpu_model", "unknown"))


def is_run(directory: Path) -> bool:
    """True when ``directory`` holds a run (metadata and samples), not baselines per kind."""
    return (directory / "metadata.json").is_file() and (directory / "samples.csv").is_file()


def baselines(root: Path) -> dict[str, Path]:
    """Machine kind → baseline run directory under ``root`` (a run itself counts as one)."""
    if is_run(root):
        return {kind_of(root): root}
    if not root.is_dir():
        return {}
    return {path.name: path for path in sorted(root.iterdir())
            if path.is_dir() and not path.name.startswith(".") and is_run(path)}


@dataclass(frozen=True)
class Choice:
    """The baseline a candidate is gated against."""

    directory: Path
    kind: str  # the baseline's machine kind
    same_kind: bool  # False: no baseline of the candidate's kind exists
    available: tuple[str, ...]

    def note(self, candidate_kind: str) -> str | None:
        if self.same_kind:
            return None
        return (f"no baseline for machine kind {candidate_kind!r} (baselines: "
                f"{', '.join(self.available)}); gated against {self.kind!r} at the thresholds "
                "measured across machine kinds (run `make baseline` on this kind to add one)")


def choose(root: Path, candidate_kind: str) -> Choice:
    """The baseline of ``candidate_kind`` under ``root``, else the newest one."""
    found = baselines(root)
    if not found:
        raise results.ResultsError(f"{root}: no baseline run here")
    if candidate_kind in found:
        log.info("baseline %s: the one of the candidate's machine kind %r (of %s)",
                 found[candidate_kind], candidate_kind, ", ".join(found))
        return Choice(found[candidate_kind], candidate_kind, True, tuple(found))
    started = {kind: str(results.read_metadata(path).get("started_at", ""))
               for kind, path in found.items()}
    newest = max(found, key=started.__getitem__)
    log.info("baseline %s: no baseline of the candidate's machine kind %r among %s, so the "
             "newest (started %s)", found[newest], candidate_kind, ", ".join(found),
             started[newest] or "at an unknown time")
    return Choice(found[newest], newest, False, tuple(found))


def set_baseline(run_dir: Path, root: Path) -> Path:
    """Make ``run_dir`` (a complete run) the baseline of its machine kind under ``root``.

    Other kinds' baselines and the thresholds file stay. A root in the old layout (a run
    itself) is moved into its kind's directory first.
    """
    metadata = results.read_metadata(run_dir)
    if metadata.get("status") != "complete":
        raise results.ResultsError(
            f"{run_dir}: status is {metadata.get('status')!r}; "
            "only a complete run can be a baseline"
        )
    missing = [name for name in BASELINE_FILES if not (run_dir / name).is_file()]
    if missing:
        raise results.ResultsError(f"{run_dir}: missing {', '.join(missing)}")
    if is_run(root):
        _move_into_kind_directory(root)
    target = root / kind_of(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".baseline-", dir=root))
    staging.chmod(0o755)
    for name in BASELINE_FILES:
        shutil.copy2(run_dir / name, staging / name)
    normalize.write_normalized(staging)
    old = root / f".{target.name}-old"
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    log.info("%s is now the baseline of machine kind %r (%s)", run_dir, target.name, target)
    return target


def _move_into_kind_directory(root: Path) -> None:
    kind_dir = root / kind_of(root)
    log.info("%s: moving the old single baseline into %s", root, kind_dir)
    kind_dir.mkdir()
    for name in (*BASELINE_FILES, normalize.FILE_NAME):
        if (root / name).exists():
            (root / name).rename(kind_dir / name)
