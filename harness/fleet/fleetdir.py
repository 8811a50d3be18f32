"""Fleet directories: every host's run of one fleet run, and their samples merged.

Layout of ``results/<fleet-id>/``::

    metadata.json   "kind": "fleet", status, seed, commit, scenario text, the inventory, the
                    engine's versions, and per host: status, error (one line), its run's id,
                    its Ansible facts and cvbench's own host facts
    samples.csv     every host's samples.csv, one after another, with a ``host`` column (the
                    inventory name) after the columns of :data:`harness.results.SAMPLE_COLUMNS`
    hosts/<host>/   each host's run directory as the host wrote it (metadata.json, samples.csv)
    ansible/        ansible-runner's private data directory: its artifacts (events, stdout)

A fleet directory is a run directory too (``metadata.json`` and ``samples.csv``), so
``cvbench ls``, ``harness.results.load_samples`` and ``load_all`` read it unchanged; the
extra column comes after the usual ones. The host runs keep their own run ids, so ratios to
the floors (:mod:`harness.normalize`, per ``run_id``) are each host's own.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import results
from hostkit.files import atomic_write

if TYPE_CHECKING:
    import pandas as pd

KIND = "fleet"
HOST_COLUMN = "host"
HOSTS = "hosts"
# ``status`` of a fleet directory: complete (every host), partial (some hosts failed), failed
# (no host ran), incomplete (interrupted), running.
STATUSES = ("running", "complete", "partial", "failed", "incomplete")


def is_fleet(run_dir: Path | str) -> bool:
    """True when ``run_dir`` is a fleet directory (its metadata says ``"kind": "fleet"``)."""
    path = Path(run_dir) / "metadata.json"
    try:
        return json.loads(path.read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def host_dir(fleet_dir: Path, host: str) -> Path:
    return Path(fleet_dir) / HOSTS / host


def host_runs(fleet_dir: Path) -> dict[str, Path]:
    """Inventory name → run directory, for every host whose run was fetched (fleet order)."""
    metadata = results.read_metadata(Path(fleet_dir))
    names = list(metadata.get("hosts", {})) or sorted(
        p.name for p in (Path(fleet_dir) / HOSTS).glob("*"))
    return {name: host_dir(fleet_dir, name) for name in names
            if (host_dir(fleet_dir, name) / "metadata.json").is_file()}


def unpack(tarball: Path, destination: Path) -> None:
    """A host's fetched ``run.tar.gz`` into ``destination``: regular files and directories
    inside it only (tarfile.TarError for anything else: links, devices, ``..`` paths)."""
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    with tarfile.open(tarball) as archive:
        members = archive.getmembers()
        for member in members:
            target = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or (
                    target != root and root not in target.parents):
                raise tarfile.TarError(f"{tarball}: refusing member {member.name!r} (only "
                                       "files and directories inside the run directory)")
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
            archive.extractall(destination, members=members, filter="data")
        else:  # Debian's 3.11.2: the members were checked above
            archive.extractall(destination, members=members)


def merge_samples(runs: dict[str, Path]) -> str:
    """The text of the fleet's samples.csv: every host's samples with a ``host`` column."""
    columns = list(results.SAMPLE_COLUMNS)
    rows: list[dict[str, str]] = []
    for host, run_dir in runs.items():
        path = run_dir / "samples.csv"
        if not path.is_file():
            continue
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            for name in reader.fieldnames or []:
                if name not in columns and name != HOST_COLUMN:
                    columns.append(name)
            for row in reader:
                rows.append({**row, HOST_COLUMN: host})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*columns, HOST_COLUMN], restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_metadata(fleet_dir: Path, metadata: dict[str, Any]) -> None:
    text = json.dumps(metadata, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(Path(fleet_dir) / "metadata.json", text)


def write_samples(fleet_dir: Path, runs: dict[str, Path]) -> None:
    atomic_write(Path(fleet_dir) / "samples.csv", merge_samples(runs))


def load(fleet_dir: Path | str) -> pd.DataFrame:
    """The fleet's samples (with ``host``) as a DataFrame."""
    return results.load_samples(fleet_dir)


def hosts_of(samples: pd.DataFrame) -> list[str]:
    """The hosts of a samples frame, in order of appearance ([] when it has no host column)."""
    if HOST_COLUMN not in samples.columns:
        return []
    return [str(h) for h in dict.fromkeys(samples[HOST_COLUMN].dropna()) if str(h)]
