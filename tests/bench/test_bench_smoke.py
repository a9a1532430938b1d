"""The benchmark harness works: each benchmark's smoke variant prints parseable RESULT lines
with positive values and merges them into a results file without dropping other entries.

These start the real embedded broker, workers and chDB with tiny workloads; the figures say
nothing about performance (see docs/performance.md for the real runs).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^RESULT (\S+) (\S+) (\S+)(?: baseline=(\S+) ratio=(\S+))?$")

CASES = {
    "e2e": (["bench_e2e.py", "--quick", "--events", "6000", "--naive-events", "3000"],
            {"e2e_events_per_s", "e2e_naive_events_per_s", "e2e_read_limit_events_per_s",
             "e2e_read_limit_ratio", "pipeline_cpu_us_per_event", "broker_cpu_us_per_event"}),
    "ingest": (["bench_ingest.py", "--quick", "--seconds", "2", "--devices", "100"],
               {"ingest_events_per_s", "ingest_p50_ms", "ingest_p99_ms"}),
    "freshness": (["bench_freshness.py", "--quick", "--seconds", "2", "--rate", "1000",
                   "--devices", "20"], {"freshness_p50_s", "freshness_p99_s"}),
    # 2,000 reps instead of 10,000 keep the smoke run short; the name follows the count.
    "scale": (["bench_scale.py", "--quick", "--events", "4000", "--reps", "2000",
               "--events-per-rep", "1"],
              {"scale_two_workers_ratio", "worker_rss_mb_2k_reps"}),
}


def run_bench(args: list[str], results: Path) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / args[0]), *args[1:],
                           "--results", str(results)], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.integration
@pytest.mark.bench
@pytest.mark.parametrize("name", list(CASES))
def test_bench_smoke(name: str, tmp_path: Path) -> None:
    args, expected = CASES[name]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"other_bench": {"value": 1, "unit": "x"}}))
    out = run_bench(args, results)
    lines = [LINE.match(ln) for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert lines and all(lines), out
    figures = {m.group(1): m for m in lines if m}
    assert expected <= set(figures), out
    for name_, m in figures.items():
        assert float(m.group(2)) > 0, f"{name_}: {m.group(0)}"
        if m.group(4) is not None:
            assert float(m.group(4)) > 0 and float(m.group(5)) > 0, m.group(0)
    merged = json.loads(results.read_text())
    assert merged["other_bench"] == {"value": 1, "unit": "x"}
    for name_ in figures:
        rec = merged[name_]
        assert {"value", "unit", "baseline", "ratio", "runs", "median_of"} <= set(rec)
        assert rec["median_of"] == len(rec["runs"]) >= 1


def test_run_parses_result_lines() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from run import parse_results

    text = ("info: x\nRESULT e2e_events_per_s 1234 events/s baseline=100 ratio=12.34\n"
            "RESULT ingest_p99_ms 12.5 ms\n")
    assert parse_results(text) == {"e2e_events_per_s": 1234.0, "ingest_p99_ms": 12.5}


def test_results_go_to_an_ignored_path_unless_the_reference_is_asked_for(tmp_path: Path
                                                                       ) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from common import DEFAULT_RESULTS, REFERENCE_RESULTS, merge_results
    from run import parse_args, script_args

    # Each script merges into DEFAULT_RESULTS when run.py passes no --results.
    assert script_args(parse_args([])) == []
    assert script_args(parse_args(["--quick"])) == ["--quick"]
    assert script_args(parse_args(["--update-reference"])) == ["--results",
                                                                str(REFERENCE_RESULTS)]
    assert REFERENCE_RESULTS == ROOT / "bench" / "results.json"
    with pytest.raises(SystemExit):
        parse_args(["--update-reference", "--quick"])
    rel = DEFAULT_RESULTS.relative_to(ROOT)
    ignored = subprocess.run(["git", "check-ignore", "-q", str(rel)], cwd=ROOT)
    assert ignored.returncode == 0, f"{rel} is not git-ignored: a bench run dirties checkouts"
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "bench/results.json"],
                             cwd=ROOT, capture_output=True)
    assert tracked.returncode == 0, "the reference figures are committed"
    fresh = tmp_path / "var" / "bench" / "results.json"  # its folder is made on first use
    merge_results(fresh, {"x": {"value": 1}})
    assert json.loads(fresh.read_text()) == {"x": {"value": 1}}
