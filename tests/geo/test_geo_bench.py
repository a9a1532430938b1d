"""bench/bench_geo.py --quick runs, prints RESULT lines and merges into a results file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from geo_fixtures import ROOT

LINE = re.compile(r"^RESULT (\w+) (\d+) pts/s baseline=(\d+) ratio=(\d+\.\d\d)$", re.M)


@pytest.mark.bench
def test_bench_quick(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"other_bench": {"value": 1, "unit": "x"}}))
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_geo.py"), "--quick", "--points", "20000",
         "--territories", "200", "--results", str(results)],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    names = [m.group(1) for m in LINE.finditer(out)]
    assert names == ["geo_lookup_pts_per_s", "geo_lookup_accounts_pts_per_s",
                     "geo_lookup_accounts_reps_pts_per_s"]
    assert "0 territory mismatches vs sjoin" in out
    merged = json.loads(results.read_text())
    assert merged["other_bench"] == {"value": 1, "unit": "x"}
    assert set(merged["geo_lookup_pts_per_s"]) == {"value", "unit", "baseline", "ratio"}
