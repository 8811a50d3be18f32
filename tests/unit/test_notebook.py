"""notebooks/analysis.ipynb runs headless, without a cell error, on synthetic runs (and on none)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from synthetic_runs import make_run

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "analysis.ipynb"


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch) -> str:
    """A private ``python3`` kernel spec that starts this interpreter (the project venv's)."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "cvbench venv", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"


def _execute(results_dir: Path, kernel: str, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("CVBENCH_RESULTS_DIR", str(results_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, kernel_name=kernel, timeout=120,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on any cell error
    return notebook


def _outputs(notebook: nbformat.NotebookNode, output_type: str) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if output.output_type == output_type]


@pytest.mark.timeout(240)
def test_notebook_runs_on_synthetic_runs(tmp_path, venv_kernel, monkeypatch) -> None:
    results_dir = tmp_path / "results"
    make_run(results_dir, "20261127T100000-quick-1", started_at="2026-11-27T10:00:00+00:00",
             seed=1, repetitions=10)
    make_run(results_dir, "20261127T110000-quick-2", started_at="2026-11-27T11:00:00+00:00",
             seed=2, repetitions=10, shifts={("ours", "start_to_ready_s"): 1.3})
    make_run(results_dir, "20261127T120000-quick-3", started_at="2026-11-27T12:00:00+00:00",
             seed=3, repetitions=10, kinds=("startup",), backends=("process", "ours"))
    notebook = _execute(results_dir, venv_kernel, monkeypatch)
    assert not _outputs(notebook, "error")
    text = json.dumps([cell.outputs for cell in notebook.cells if cell.cell_type == "code"])
    assert "3 run(s)" in text
    assert "20261127T120000-quick-3" in text  # the newest run is the one shown
    assert "process (same variant), 95% CI" in text  # its headline, ratios to the floor
    images = [output for output in _outputs(notebook, "display_data")
              if "image/png" in output.get("data", {})]
    # newest run: 2 startup charts; trend: startup and memory figures
    assert len(images) >= 4


@pytest.mark.timeout(240)
def test_notebook_runs_without_results(tmp_path, venv_kernel, monkeypatch) -> None:
    notebook = _execute(tmp_path / "empty", venv_kernel, monkeypatch)
    assert not _outputs(notebook, "error")
    assert "no runs yet" in json.dumps([cell.outputs for cell in notebook.cells
                                        if cell.cell_type == "code"])
