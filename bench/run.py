"""Run every benchmark (`make bench`): one RESULT line per figure, merged into a results file.

Each benchmark runs in its own process, in this order: geo lookup, end-to-end (with the naive
Faust baseline and the read limit), ingest, freshness (at half the sustainable rate, taken from
the ingest and end-to-end figures of this run), scale-out and worker memory. Every figure is a
median of runs; the lines read ``RESULT <name> <value> <unit> [baseline=<v> ratio=<v>]``.

Figures go to ``var/bench/results.json`` (not committed: running the benchmarks leaves a
checkout clean). The committed reference figures, ``bench/results.json``, which
docs/performance.md quotes, change only with ``--update-reference``.

    python bench/run.py                 # everything, about 10-15 minutes on 2 cores
    python bench/run.py --update-reference   # ... and merge the figures into bench/results.json
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
sys.path.insert(0, str(HERE))

from common import DEFAULT_RESULTS, REFERENCE_RESULTS  # noqa: E402

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="run every benchmark")
    ap.add_argument("--quick", action="store_true", help="smoke runs; no results file")
    ap.add_argument("--only", nargs="+", choices=ORDER, default=ORDER)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--results", type=Path, default=None,
                       help=f"results file (default {DEFAULT_RESULTS.relative_to(HERE.parent)}"
                       "; none with --quick)")
    where.add_argument("--update-reference", action="store_true",
                       help="merge the figures into the committed reference figures, "
                       f"{REFERENCE_RESULTS.relative_to(HERE.parent)}")
    args = ap.parse_args(argv)
    if args.update_reference and args.quick:
        ap.error("smoke runs (--quick) are no reference figures")
    return args


def script_args(args: argparse.Namespace) -> list[str]:
    """The arguments every benchmark script gets (each defaults to DEFAULT_RESULTS)."""
    results = REFERENCE_RESULTS if args.update_reference else args.results
    return (["--quick"] if args.quick else []) + (
        ["--results", str(results)] if results else [])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common = script_args(args)
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
