"""scripts/gate_power.py puts each regression into the current code (its anchors still hold)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[3]


def _script():
    spec = importlib.util.spec_from_file_location("gate_power", REPO / "scripts" / "gate_power.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gate_power"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


BASELINE = pd.DataFrame([
    {"scenario": "startup", "backend": "ours", "metric": "start_to_ready_s", "variant": "cold",
     "value": 0.020},
    {"scenario": "startup", "backend": "ours", "metric": "start_to_ready_s", "variant": "warm",
     "value": 0.003},
    {"scenario": "memory", "backend": "ours", "variant": "ksm=off",
     "metric": "mem_host_delta_per_instance_bytes", "value": 1_400_000.0},
])


@pytest.mark.parametrize(("code", "changed", "marker"), [
    ("slow20", "harness/backends/ours.py", "+ 0.004000"),
    ("mem10", "runtime/child.py", "b'x' * 140000"),
    ("broken", "harness/backends/ours.py", "failure put in by gate_power"),
])
def test_each_regression_goes_into_the_code(tmp_path: Path, code: str, changed: str,
                                            marker: str) -> None:
    for name in ("harness/backends/ours.py", "runtime/child.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    _script().inject(code, tmp_path, BASELINE)
    text = (tmp_path / changed).read_text()
    assert marker in text
    compile(text, changed, "exec")  # still Python
    assert text != (REPO / changed).read_text()
