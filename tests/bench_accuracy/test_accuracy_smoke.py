"""bench/bench_accuracy.py --quick: simulated noisy days through the processors (both ways)
and the peer, RESULT lines that parse, a results file merged without losing other entries."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^RESULT (\w+) (-?\d+(?:\.\d+)?) (\S+)(?: baseline=(\S+) ratio=(\S+))?$",
                  re.M)
NAMES = ["visit_f1", "visit_precision", "visit_recall", "workday_start_median_err_min",
         "workday_start_p95_err_min", "workday_end_median_err_min", "workday_end_p95_err_min",
         "field_time_err_pct", "distance_err_pct"]


@pytest.mark.bench
def test_accuracy_quick(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"other_bench": {"value": 1, "unit": "x"}}))
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_accuracy.py"), "--quick",
         "--results", str(results)],
        capture_output=True, text=True, check=True, timeout=300, cwd=ROOT,
    ).stdout
    found = {m.group(1): m for m in LINE.finditer(out)}
    assert [n for n in NAMES if n not in found] == []
    assert float(found["visit_f1"].group(2)) > 0.9
    assert "streaming and one-shot identical" in out
    merged = json.loads(results.read_text())
    assert merged["other_bench"] == {"value": 1, "unit": "x"}
    assert set(NAMES) <= set(merged)
    if importlib.util.find_spec("trackintel") is not None:
        assert all(found[n].group(4) is not None for n in NAMES)  # baseline= and ratio=
        assert all(f"peer_{n}" in found for n in NAMES)
        assert "peer: trackintel" in out


@pytest.mark.bench
def test_accuracy_scenarios_are_named_and_derived_both_ways(tmp_path: Path) -> None:
    """--scenario runs the new noise profiles; their figures carry the scenario's name and
    the scenario's targets (issue 16: 5 min, 5 %)."""
    results = tmp_path / "results.json"
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_accuracy.py"), "--quick", "--no-peer",
         "--reps", "2", "--scenario", "sparse_phone", "--results", str(results)],
        capture_output=True, text=True, check=True, timeout=300, cwd=ROOT,
    ).stdout
    found = {m.group(1): m for m in LINE.finditer(out)}
    assert [n for n in NAMES if f"sparse_phone_{n}" not in found] == []
    assert "streaming and one-shot identical" in out
    merged = json.loads(results.read_text())
    assert merged["sparse_phone_field_time_err_pct"]["target"] == 5.0
    assert merged["sparse_phone_workday_end_median_err_min"]["target"] == 5.0
    assert "sparse_phone noise" in merged["sparse_phone_visit_f1"]["workload"]
