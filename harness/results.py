"""Run directories: ``metadata.json`` and tidy ``samples.csv``, written atomically.

Layout of ``results/<run-id>/``::

    metadata.json   schema version, run id, status, host facts, backends' describe(), scenario text
    samples.csv     one row per measurement (see SAMPLE_COLUMNS)
    report/         charts and summary written by ``cvbench report``

``status`` is ``running`` while a run is under way, then ``complete``, ``incomplete``
(interrupted) or ``failed``. Every write goes to a temporary file first and is renamed into
place, so a reader never sees half a file, and samples already written survive a crash.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hostkit.files import atomic_write

SCHEMA_VERSION = 2  # 2: the ``position`` column
SAMPLE_COLUMNS = (
    "run_id",
    "scenario",
    "kind",
    "backend",
    "accel",
    "network",
    "guest_memory_mib",
    "image_digest",
    "repetition",
    "instance",
    "step",
    "variant",
    "position",
    "metric",
    "value",
    "unit",
)
STATUSES = ("running", "complete", "incomplete", "failed")


@dataclass(frozen=True)
class Sample:
    """One measurement, with every dimension it is comparable by."""

    run_id: str
    scenario: str
    kind: str
    backend: str
    metric: str
    value: float
    unit: str
    accel: str = ""
    network: str = ""
    guest_memory_mib: int | str = ""
    image_digest: str = ""
    repetition: int | str = ""
    instance: str = ""
    step: int | str = ""
    variant: str = ""  # "cold", "warm"; "ksm=on" for the memory scenario
    position: int | str = ""  # the backend's turn in its round (0 first), from a seeded order


def new_run_id(suite_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{suite_name}-{os.getpid()}"


@dataclass
class RunWriter:
    """Owns one run directory while the run is under way."""

    directory: Path
    metadata: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)

    @classmethod
    def create(cls, results_dir: Path, run_id: str, metadata: dict[str, Any]) -> RunWriter:
        directory = results_dir / run_id
        directory.mkdir(parents=True, exist_ok=False)
        metadata = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "status": "running",
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **metadata,
        }
        writer = cls(directory=directory, metadata=metadata)
        writer.write_metadata()
        writer.flush()
        return writer

    @property
    def run_id(self) -> str:
        return self.metadata["run_id"]

    def add(self, samples: Iterable[Sample]) -> None:
        self.samples.extend(samples)

    def write_metadata(self) -> None:
        text = json.dumps(self.metadata, indent=2, sort_keys=True, default=str) + "\n"
        atomic_write(self.directory / "metadata.json", text)

    def flush(self) -> None:
        """Rewrite samples.csv with every sample so far (atomically)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=SAMPLE_COLUMNS)
        writer.writeheader()
        for sample in self.samples:
            writer.writerow(asdict(sample))
        atomic_write(self.directory / "samples.csv", buffer.getvalue())

    def finish(self, status: str, error: str | None = None) -> None:
        assert status in STATUSES
        self.flush()
        self.metadata["status"] = status
        self.metadata["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        if error:
            self.metadata["error"] = error
        self.write_metadata()


class ResultsError(ValueError):
    """A path does not hold a readable run."""


def resolve_run(path: Path | str, results_dir: Path | None = None) -> Path:
    """A run directory from its path, or from a run id (or unique prefix) in ``results_dir``."""
    candidate = Path(path)
    if (candidate / "metadata.json").is_file():
        return candidate
    base = results_dir or Path("results")
    if (base / str(path) / "metadata.json").is_file():
        return base / str(path)
    matches = (
        sorted(p for p in base.iterdir() if p.name.startswith(str(path)) and p.is_dir())
        if base.is_dir()
        else []
    )
    if len(matches) == 1 and (matches[0] / "metadata.json").is_file():
        return matches[0]
    raise ResultsError(f"{path}: not a run directory (no metadata.json) nor a unique run id")


def read_metadata(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "metadata.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ResultsError(f"{run_dir}: unreadable metadata.json: {error}") from None


def failure_lines(metadata: dict[str, Any]) -> list[str]:
    """Each failure a run recorded (``metadata["failures"]``) as one line:
    ``scenario/backend: reason``."""
    return [f"{failure.get('scenario')}/{failure.get('backend')}: {failure.get('reason')}"
            for failure in metadata.get("failures") or []]


def load_samples(run_dir: Path | str):
    """The run's samples as a pandas DataFrame (one call; pandas imported lazily)."""
    import pandas as pd

    frame = pd.read_csv(Path(run_dir) / "samples.csv", keep_default_na=False, na_values=[""])
    for column in SAMPLE_COLUMNS:  # runs of an older schema lack the newer columns
        if column not in frame.columns:
            frame[column] = float("nan")
    return frame[[*SAMPLE_COLUMNS, *(c for c in frame.columns if c not in SAMPLE_COLUMNS)]]


def list_runs(results_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every run under ``results_dir`` (newest first) with its metadata."""
    runs = []
    if results_dir.is_dir():
        for metadata_file in results_dir.glob("*/metadata.json"):
            try:
                runs.append((metadata_file.parent, json.loads(metadata_file.read_text())))
            except (OSError, json.JSONDecodeError):
                continue
    runs.sort(key=lambda item: item[1].get("started_at", ""), reverse=True)
    return runs


def load_all(results_dir: Path | str = "results"):
    """Every run's samples in one DataFrame, with run metadata columns (started_at, status)."""
    import pandas as pd

    frames = []
    for run_dir, metadata in list_runs(Path(results_dir)):
        if not (run_dir / "samples.csv").is_file():
            continue
        frame = load_samples(run_dir)
        frame["started_at"] = pd.to_datetime(metadata.get("started_at"))
        frame["status"] = metadata.get("status", "")
        frame["git_commit"] = metadata.get("git_commit", "")
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*SAMPLE_COLUMNS, "started_at", "status", "git_commit"])
    return pd.concat(frames, ignore_index=True)
