"""Accuracy harness: simulated noisy field days through the processors, scored against the
simulator's ground truth, with trackintel's staypoint detection as the peer on the same pings.

Workload: ``--reps`` reps x ``--days`` days of ``NoiseProfile.realistic()`` (GPS accuracy
5-50 m, 300 m+ jumps, 10 % missing pings, 2 h offline bursts uploaded late, 5 % resent
uploads, +-2 min clock skew, forgotten check-ins). Every upload is replayed as the ingest
would store it (``received_at`` = the upload's send time, resends included) through the
processors both ways (streaming ``RepSessionState`` per upload, and one-shot
``derive_rep_day`` per rep-day), which must agree; places come from the sample GeoIndex.

Each RESULT line reads ``RESULT <name> <value> <unit> baseline=<peer> ratio=<value/peer>``
(for error figures a ratio below 1 is better); the peer's own figures follow as
``RESULT peer_<name> <value> <unit>``. Figures are merged into ``var/bench/results.json``.
The method, the peer's recipe and the targets are in ``docs/sessions.md`` ("Accuracy").

    python bench/bench_accuracy.py            # 50 reps x 5 days, updates var/bench/results.json
    python bench/bench_accuracy.py --quick    # 5 reps x 1 day, no results file
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import multiprocessing as mp
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.accuracy.ours import DayFigures, OursRep, run_ours
from bench.accuracy.scoring import DayScore, breakdown, score_day, summarise
from bench.accuracy.workload import RepUploads, simulate_reps
from bench.common import DEFAULT_RESULTS, merge_results
from geo import GeoIndex, load_index
from processors import DEFAULT_PARAMS, SessionParams
from simulator import NoiseProfile
from streams.sessions import GeoPlaces

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
START = dt.date(2026, 11, 2)  # a Monday: 5 days are a work week

#: (name, unit, target, higher is better)
FIGURES: list[tuple[str, str, float | None, bool]] = [
    ("visit_f1", "f1", 0.98, True),
    ("visit_precision", "fraction", None, True),
    ("visit_recall", "fraction", None, True),
    ("workday_start_median_err_min", "min", 2.0, False),
    ("workday_start_p95_err_min", "min", None, False),
    ("workday_end_median_err_min", "min", 2.0, False),
    ("workday_end_p95_err_min", "min", None, False),
    ("field_time_err_pct", "%", 2.0, False),
    ("distance_err_pct", "%", 3.0, False),
]

#: The scenarios of `make accuracy`: the realistic fleet, a tracker app without any check-in,
#: a sparse location history (60 s, no speed, recording around the clock, night trips).
SCENARIOS = ("realistic", "no_checkins", "sparse_phone")
#: Targets that differ from FIGURES' for a scenario (issue: F1 >= 0.98, start/end median
#: <= 5 min, field time <= 5 %).
SCENARIO_TARGETS: dict[str, dict[str, float]] = {
    name: {"workday_start_median_err_min": 5.0, "workday_end_median_err_min": 5.0,
           "field_time_err_pct": 5.0}
    for name in ("no_checkins", "sparse_phone")}

# Set in the parent before the pool forks, so workers share them without pickling.
_INDEX: GeoIndex | None = None
_PARAMS: SessionParams = DEFAULT_PARAMS
_PEER = True
_DERIVE_EVERY = 10


def _work(rep: RepUploads) -> tuple[str, OursRep, dict[str, DayFigures] | None, float, float]:
    places = GeoPlaces(_INDEX, rep.rep_id)
    t0 = time.perf_counter()
    ours = run_ours(rep, places, _PARAMS, _DERIVE_EVERY)
    t1 = time.perf_counter()
    peer = None
    if _PEER:
        from bench.accuracy.peer import run_peer

        peer = run_peer(rep, places)
    return rep.rep_id, ours, peer, t1 - t0, time.perf_counter() - t1


def _fmt(v: float) -> str:
    return f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}"


def _score(reps: list[RepUploads], got: dict[str, dict[str, DayFigures]]) -> list[DayScore]:
    return [score_day(r.rep_id, t, got.get(r.rep_id, {}).get(t["date"]))
            for r in reps for t in r.truth]


ERRORS = (("start_err_min", "min", 2.0), ("end_err_min", "min", 2.0),
          ("field_err_pct", "%", 2.0), ("distance_err_pct", "%", 3.0))


def _analysis(label: str, scores: list[DayScore]) -> None:
    """Where the error comes from: bias, days over the target, per noise tag."""
    for attr, unit, target in ERRORS:
        v = [getattr(s, attr) for s in scores if getattr(s, attr) == getattr(s, attr)]
        over = sum(abs(x) > target for x in v)
        bias = sorted(v)[len(v) // 2] if v else float("nan")
        parts = [f"{tag}:{n}d med={med:.2f} p95={p95:.2f}"
                 for tag, n, med, p95 in breakdown(scores, attr)]
        print(f"info: {label} {attr} ({unit}): signed median {bias:+.2f}, "
              f"{over}/{len(v)} days over {target}; |err| by noise: " + "; ".join(parts))
    missed = Counter(t for s in scores for t in s.tags for _ in s.missed)
    spurious = Counter(t for s in scores for t in s.tags for _ in s.spurious)
    print(f"info: {label} visits missed={sum(len(s.missed) for s in scores)} "
          f"spurious={sum(len(s.spurious) for s in scores)}; "
          f"missed on days tagged {dict(missed)}; spurious on days tagged {dict(spurious)}")


def _worst(label: str, scores: list[DayScore], n: int) -> None:
    for attr, _, _ in ERRORS:
        ranked = sorted((s for s in scores if getattr(s, attr) == getattr(s, attr)),
                        key=lambda s: -abs(getattr(s, attr)))[:n]
        days = ", ".join(f"{s.rep_id} {s.date} {getattr(s, attr):+.1f} [{','.join(s.tags)}]"
                         for s in ranked)
        print(f"info: {label} worst {attr}: {days}")


def _dump(path: Path, work: list[RepUploads], ours: list[DayScore],
          ours_days: dict[str, dict[str, DayFigures]], peer: list[DayScore] | None,
          peer_days: dict[str, dict[str, DayFigures]]) -> None:
    """One JSON line per rep-day: truth figures, both systems' figures and scores."""
    keys = ("workday_start", "workday_end", "field_s", "distance_m", "break_s", "home_s",
            "office_s", "visits", "phone")
    peer_by = {(s.rep_id, s.date): s for s in peer or []}
    truth = {(r.rep_id, t["date"]): t for r in work for t in r.truth}
    with path.open("w", encoding="utf-8") as fh:
        for s in ours:
            row: dict[str, Any] = {"rep_id": s.rep_id, "date": s.date,
                                   "truth": {k: truth[s.rep_id, s.date].get(k) for k in keys},
                                   "ours": dataclasses.asdict(s)}
            got = ours_days.get(s.rep_id, {}).get(s.date)
            row["ours_figures"] = dataclasses.asdict(got) if got else None
            if (s.rep_id, s.date) in peer_by:
                row["peer"] = dataclasses.asdict(peer_by[s.rep_id, s.date])
                got = peer_days.get(s.rep_id, {}).get(s.date)
                row["peer_figures"] = dataclasses.asdict(got) if got else None
            fh.write(json.dumps(row, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Accuracy of derived field days vs ground truth")
    ap.add_argument("--quick", action="store_true", help="5 reps x 1 day, no results file")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--days", type=int, default=None)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--start", type=dt.date.fromisoformat, default=START)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--derive-every", type=int, default=10,
                    help="streaming path: derive after every N uploads (and at the end)")
    ap.add_argument("--no-peer", action="store_true", help="skip the trackintel baseline")
    ap.add_argument("--scenario", choices=[*SCENARIOS, "all"], default=None,
                    help="noise scenario (simulator.NoiseProfile.scenario); default: all, "
                    "realistic with --quick")
    ap.add_argument("--worst", type=int, default=3, help="worst days listed per figure")
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--dump", type=Path, default=None,
                    help="write per-rep-day truth, figures and errors as JSON lines")
    args = ap.parse_args(argv)
    args.scenario = args.scenario or ("realistic" if args.quick else "all")
    reps = args.reps or (5 if args.quick else 50)
    days = args.days or (1 if args.quick else 5)
    results = args.results or (None if args.quick else DEFAULT_RESULTS)

    global _PEER, _DERIVE_EVERY
    _PEER, _DERIVE_EVERY = not args.no_peer, args.derive_every
    peer_name = None
    if _PEER:
        try:
            from bench.accuracy.peer import peer_version

            peer_name = peer_version()
        except ImportError:
            print("info: trackintel is not installed (pip install trackintel): no peer")
            _PEER = False

    global _INDEX
    _INDEX, _ = load_index(SAMPLE / "territories.geojson", SAMPLE / "accounts.geojson",
                           version=1)
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    figures: dict[str, dict[str, Any]] = {}
    differ = False
    for name in scenarios:
        got, bad = _scenario(name, args, reps, days, peer_name)
        figures.update(got)
        differ |= bad
    if results is not None:
        merge_results(results, figures)
        print(f"merged {len(figures)} figures into {results}")
    return 1 if differ else 0


def _scenario(scenario: str, args: argparse.Namespace, reps: int, days: int,
              peer_name: str | None) -> tuple[dict[str, dict[str, Any]], bool]:
    """One scenario: simulate, derive both ways, score; its figures and whether the two
    paths differed."""
    t_all = time.perf_counter()
    work, counts = simulate_reps(SAMPLE, reps, days, args.start, args.seed,
                                 NoiseProfile.scenario(scenario))
    t_sim = time.perf_counter() - t_all
    print(f"\n== scenario {scenario} ==")
    print(f"workload: {reps} reps x {days} days from {args.start} (seed {args.seed}), "
          f"{scenario} noise: " + ", ".join(f"{k}={v}" for k, v in counts.items())
          + f" ({t_sim:.1f}s)")
    print(f"peer: {peer_name or 'none'}")

    # Biggest reps first, so the two workers finish together.
    work.sort(key=lambda r: -sum(len(e) for _, e in r.uploads))
    if args.workers > 1:
        with mp.get_context("fork").Pool(args.workers) as pool:
            outs = pool.map(_work, work, chunksize=1)
    else:
        outs = [_work(r) for r in work]
    ours_days = {rep: o.days for rep, o, _, _, _ in outs}
    peer_days = {rep: p for rep, _, p, _, _ in outs if p is not None}
    mismatches = [m for _, o, _, _, _ in outs for m in o.mismatches]
    rejected: Counter[str] = Counter()
    for _, o, _, _, _ in outs:
        rejected.update(o.rejected)
    print(f"processors: {sum(o.derivations for _, o, _, _, _ in outs)} streaming "
          f"derivations, {sum(o.duplicates for _, o, _, _, _ in outs)} duplicate events "
          f"absorbed, rejected {dict(rejected) or 0}; ours {sum(x[3] for x in outs):.1f} "
          f"worker-s, peer {sum(x[4] for x in outs):.1f} worker-s")
    if mismatches:
        print(f"check: streaming and one-shot DIFFER on {len(mismatches)} rep-days:")
        for m in mismatches[:20]:
            print(f"  {m}")
    else:
        print(f"check: streaming and one-shot identical on all "
              f"{sum(len(d) for d in ours_days.values())} rep-days")

    ours = _score(work, ours_days)
    mine = summarise(ours)
    underived = [f"{s.rep_id} {s.date}" for s in ours if "not_derived" in s.tags]
    if underived:
        print(f"check: no work day derived for {len(underived)} rep-days: {underived[:10]}")
    _analysis("ours", ours)
    _worst("ours", ours, args.worst)
    theirs: dict[str, float] = {}
    peer_scores: list[DayScore] | None = None
    if _PEER:
        peer_scores = _score(work, peer_days)
        theirs = summarise(peer_scores)
        _analysis("peer", peer_scores)
        naive = [p.detail["pfs_distance_m"] / t["distance_m"] * 100 - 100
                 for r in work for t in r.truth
                 if (p := peer_days.get(r.rep_id, {}).get(t["date"])) is not None]
        naive.sort()
        print(f"info: peer distance as the naive sum over positionfixes: median error "
              f"{naive[len(naive) // 2]:+.1f}%")

    if args.dump is not None:
        path = args.dump if scenario == "realistic" else args.dump.with_name(
            f"{args.dump.stem}.{scenario}{args.dump.suffix}")
        _dump(path, work, ours, ours_days, peer_scores, peer_days)
        print(f"info: per-rep-day figures written to {path}")

    figures: dict[str, dict[str, Any]] = {}
    missed: list[str] = []
    worse: list[str] = []
    workload = f"{reps} reps x {days} days, {scenario} noise, seed {args.seed}"
    prefix = "" if scenario == "realistic" else f"{scenario}_"
    for name, unit, target, higher in FIGURES:
        value, base = mine[name], theirs.get(name)
        target = SCENARIO_TARGETS.get(scenario, {}).get(name, target)
        line = f"RESULT {prefix}{name} {_fmt(value)} {unit}"
        ratio = None
        if base is not None:
            ratio = value / base if base else None
            line += f" baseline={_fmt(base)} ratio={ratio:.2f}" if ratio is not None else ""
        print(line)
        figures[prefix + name] = {"value": round(value, 4), "unit": unit,
                         "baseline": None if base is None else round(base, 4),
                         "ratio": None if ratio is None else round(ratio, 3),
                         "target": target, "peer": peer_name, "workload": workload}
        if target is not None and (value < target if higher else value > target):
            missed.append(f"{name} {_fmt(value)} (target {target})")
        if base is not None and (value < base if higher else value > base):
            worse.append(f"{name} {_fmt(value)} vs {_fmt(base)}")
    for name, unit, _, _ in FIGURES:
        if name in theirs:
            print(f"RESULT {prefix}peer_{name} {_fmt(theirs[name])} {unit}")
            figures[f"{prefix}peer_{name}"] = {"value": round(theirs[name], 4), "unit": unit,
                                       "baseline": None, "ratio": None, "peer": peer_name,
                                       "workload": workload}
    print(f"targets ({scenario}): "
          f"{'all met' if not missed else 'MISSED: ' + '; '.join(missed)}")
    if theirs:
        verdict = "better or equal on every figure" if not worse else "worse on: "
        print(f"vs peer: {verdict}{'; '.join(worse)}")
    print(f"time: {time.perf_counter() - t_all:.1f}s ({args.workers} workers)")
    return figures, bool(mismatches)

if __name__ == "__main__":
    raise SystemExit(main())
