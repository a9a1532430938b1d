"""Run every benchmark (`make bench`): one RESULT line per figure, merged into results.json.

Each benchmark runs in its own process, in this order: geo lookup, end-to-end (with the naive
Faust baseline and the read limit), ingest, freshness (at half the sustainable rate, taken from
the ingest and end-to-end figures of this run), scale-out and worker memory. Every figure is a
median of runs; the lines read ``RESULT <name> <value> <unit> [baseline=<v> ratio=<v>]``.

    python bench/run.py                 # everything, about 10-15 minutes on 2 cores
    python bench/run.py --quick         # short smoke runs (about 3 minutes), no results file
    python bench/run.py --only e2e ingest
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULT = re.compile(r"^RESULT (\S+) (\S+) (\S+)(?: baseline=(\S+) ratio=(\S+))?$")
ORDER = ["geo", "e2e", "ingest", "freshness", "scale", "accuracy"]
SCRIPTS = {"geo": "bench_geo.py", "e2e": "bench_e2e.py", "ingest": "bench_ingest.py",
           "freshness": "bench_freshness.py", "scale": "bench_scale.py",
           "accuracy": "bench_accuracy.py"}


def parse_results(text: str) -> dict[str, float]:
    """``name -> value`` of the RESULT lines in ``text``."""
    out = {}
    for line in text.splitlines():
        m = RESULT.match(line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def run_one(name: str, args: list[str]) -> tuple[int, str]:
    cmd = [sys.executable, str(HERE / SCRIPTS[name]), *args]
    print(f"== {name}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}",
          flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        print(line, end="", flush=True)
    code = proc.wait()
    print(f"== {name}: exit {code} in {time.perf_counter() - t0:.0f}s", flush=True)
    return code, "".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run every benchmark")
    ap.add_argument("--quick", action="store_true", help="smoke runs; no results file")
    ap.add_argument("--only", nargs="+", choices=ORDER, default=ORDER)
    ap.add_argument("--results", type=Path, default=None,
                    help="results file (default bench/results.json; none with --quick)")
    args = ap.parse_args(argv)
    common = (["--quick"] if args.quick else []) + (
        ["--results", str(args.results)] if args.results else [])
    t0 = time.perf_counter()
    figures: dict[str, float] = {}
    failed = []
    for name in ORDER:
        if name not in args.only:
            continue
        extra: list[str] = []
        if name == "freshness":
            # Half the sustainable rate: the freshness process serves ingest AND runs the
            # worker, so the lower of the two measured rates bounds what it sustains.
            rates = [figures[k] for k in ("ingest_events_per_s", "e2e_events_per_s")
                     if k in figures]
            if rates:
                extra = ["--rate", f"{max(100.0, min(rates) / 2):.0f}"]
        code, out = run_one(name, common + extra)
        figures.update(parse_results(out))
        if code != 0:
            failed.append(name)
    print(f"== all benchmarks: {len(figures)} figures in {time.perf_counter() - t0:.0f}s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
