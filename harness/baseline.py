"""The committed baseline run (results/baseline/) that CI gates the quick suite against."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from harness import results

BASELINE_FILES = ("metadata.json", "samples.csv", "normalized.csv")
KEPT_FILES = ("thresholds.toml", "README.md")  # hand-written; survive a refresh


def set_baseline(run_dir: Path, baseline_dir: Path) -> Path:
    """Replace the baseline with ``run_dir`` (a complete run), keeping the thresholds file."""
    metadata = results.read_metadata(run_dir)
    if metadata.get("status") != "complete":
        raise results.ResultsError(
            f"{run_dir}: status is {metadata.get('status')!r}; "
            "only a complete run can be a baseline"
        )
    missing = [name for name in BASELINE_FILES if not (run_dir / name).is_file()]
    if missing:
        raise results.ResultsError(f"{run_dir}: missing {', '.join(missing)}")
    baseline_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".baseline-", dir=baseline_dir.parent))
    staging.chmod(0o755)
    for name in BASELINE_FILES:
        shutil.copy2(run_dir / name, staging / name)
    for name in KEPT_FILES:
        if (baseline_dir / name).is_file():
            shutil.copy2(baseline_dir / name, staging / name)
    old = baseline_dir.with_name(f".{baseline_dir.name}-old")
    if baseline_dir.exists():
        baseline_dir.rename(old)
    staging.rename(baseline_dir)
    shutil.rmtree(old, ignore_errors=True)
    return baseline_dir
