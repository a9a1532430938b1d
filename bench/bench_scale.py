"""Benchmark: scaling out (two workers against one) and worker memory with 10,000 reps.

``scale_two_workers_ratio``: the e2e workload (simulated uploads, see bench_e2e.py) drained by
one ``geotel worker`` and by two (same consumer group, the 4 partitions of telemetry.raw
split between them). So that no rebalance falls inside the measurement, the workers are
started on an empty topic, the harness waits until the group is stable (every raw partition
assigned, unchanged for 2 s), and only then writes the workload; timing runs from the first
row written to the moment the sinks of all workers cover every event (confirmed by distinct
event ids). Each worker has its own chDB directory (the embedded profile: chDB allows one
process per directory); with a ClickHouse server they would share it.

``worker_rss_mb_10k_reps``: 10,000 reps, each with a device uploading synthetic pings (walks
inside the sample world) in uploads of 5, go through ONE worker; after every event is stored
and a few more seconds for derived state to settle, the worker's peak resident set (VmHWM
from /proc/<pid>/status) is read. Its start-up RSS (before any event) is printed too.

    python bench/bench_scale.py                   # both; scale median of 2 pairs
    python bench/bench_scale.py --quick --only scale
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DEFAULT_RESULTS,
    Figure,
    Proc,
    ProcessExited,
    embedded_broker,
    info,
    load_1m,
    prepare_topics_and_geo,
    produce,
    report,
    run_dir,
    settings_for,
    simulated_workload,
    sql_scalar,
    start_worker,
    vm_hwm_mb,
    wait_for,
)

RAW = "telemetry.raw"
BOUNDS = (13.0, 52.3, 13.8, 52.7)  # the sample world's territories


def assigned_raw(http: httpx.Client, bases: list[str]) -> list[set[str]]:
    out = []
    for b in bases:
        parts = http.get(b + "/health", timeout=2).json()["components"]["consumer"]["assigned"]
        out.append({p for p in parts if p.startswith(RAW + "/")})
    return out


def wait_stable_group(http: httpx.Client, bases: list[str], procs: list[Proc],
                      partitions: int) -> None:
    """Every raw partition assigned once across the workers, each worker holding some, and
    no change for 2 s; the geo index loaded everywhere."""
    state: dict[str, object] = {"since": None, "last": None}

    def stable() -> bool:
        for p in procs:
            if not p.alive():
                raise ProcessExited(f"worker exited\n{p.tail()}")
        sets = assigned_raw(http, bases)
        geo_ok = all(http.get(b + "/health", timeout=2).json()["components"]
                     .get("geo", {}).get("version") for b in bases)
        union = set().union(*sets)
        ok = (geo_ok and all(sets) and len(union) == partitions
              and sum(len(s) for s in sets) == partitions)
        key = (ok, tuple(sorted(map(tuple, map(sorted, sets)))))
        if not ok or key != state["last"]:
            state["since"], state["last"] = (time.monotonic() if ok else None), key
            return False
        since = state["since"]
        return isinstance(since, float) and time.monotonic() - since >= 2.0

    wait_for(stable, 120, "a stable consumer group", None, interval_s=0.25)


def drain(n_workers: int, events: int, messages: list[tuple[bytes, bytes]],
          distinct_valid: int, label: str, window_s: float = 45.0,
          settle_s: float = 0.0) -> tuple[float, list[float]]:
    """Start workers, wait for a stable group, write ``messages``, time the drain.
    A drain slower than ``window_s`` is measured over the window (stored distinct ids).
    Returns (events/s, peak RSS MiB of each worker after ``settle_s``)."""
    root = run_dir(label)
    with embedded_broker(root) as port, httpx.Client() as http:
        s = settings_for(root / "setup", port)
        prepare_topics_and_geo(s)
        started = [start_worker(root, port, name=f"worker{i}") for i in range(n_workers)]
        procs, bases = [p for p, _ in started], [b for _, b in started]
        try:
            wait_stable_group(http, bases, procs, s.kafka.topic_partitions)
            rss0 = [vm_hwm_mb(p.pid) for p in procs]

            def rows() -> int:
                total = 0
                for b in bases:
                    total += int(http.get(b + "/health", timeout=5).json()["components"]
                                 ["sink"]["rows"])
                return total

            t_call = time.perf_counter()
            load_s = produce(s.bootstrap_servers, s.topic(RAW), messages)
            mark: dict[str, float] = {}

            def first() -> bool:
                r = rows()
                if r > 0:
                    mark["t0"], mark["r0"] = time.perf_counter(), r
                    return True
                return False

            if rows() == 0:
                wait_for(first, 120, "first rows", None, interval_s=0.02)
            else:  # rows already flowed while the workload was written
                mark["t0"], mark["r0"] = t_call, 0

            def distinct() -> int:
                return sum(int(sql_scalar(http, b, "SELECT uniqExact(event_id) FROM events_all"))
                           for b in bases)

            per = events / distinct_valid  # events per distinct id (resent uploads)
            d0 = distinct() * per
            try:
                wait_for(lambda: rows() >= events, window_s, f"{events} rows", None, 0.05)
            except TimeoutError:  # slower than the window: the rate over the window
                t1 = time.perf_counter()
                done, counted = False, distinct() * per - d0
            else:
                t1 = time.perf_counter()
                if distinct() < distinct_valid:
                    wait_for(lambda: distinct() >= distinct_valid, window_s, "all events",
                             None, 0.2)
                    t1 = time.perf_counter()
                done, counted = True, events - d0
                if counted < events // 4:  # tiny workload: time from the write
                    mark["t0"], counted = t_call, events
            rate = counted / (t1 - mark["t0"])
            reps = sum(int(sql_scalar(http, b, "SELECT uniqExact(rep_id) FROM events_all"))
                       for b in bases)
            info(f"{label}: {counted:,.0f} events in {t1 - mark['t0']:.1f}s "
                 f"({'all drained' if done else 'window, not drained'}), {reps:,} reps stored")
            if settle_s:
                time.sleep(settle_s)
            hwm = [vm_hwm_mb(p.pid) for p in procs]
            info(f"{label}: {n_workers} worker(s) {rate:,.0f} events/s (workload written in "
                 f"{load_s:.1f}s); RSS at start {', '.join(f'{r:.0f}' for r in rss0)} MiB, "
                 f"peak {', '.join(f'{r:.0f}' for r in hwm)} MiB")
        finally:
            for p in procs:
                p.stop()
    return rate, hwm


def synthetic_reps(n_reps: int, events_per_rep: int, per_upload: int,
                   seed: int = 5) -> tuple[list[tuple[bytes, bytes]], int]:
    """Pings of ``n_reps`` reps (one device each) on one day, as ingest writes them."""
    rng = random.Random(seed)
    day0 = dt.datetime(2026, 3, 3, 7, 0, tzinfo=dt.UTC)
    xmin, ymin, xmax, ymax = BOUNDS
    per_rep: list[list[tuple[bytes, bytes]]] = []
    for r in range(n_reps):
        rep, dev = f"rep-s{r:05d}", f"dev-s{r:05d}"
        lon, lat = rng.uniform(xmin, xmax), rng.uniform(ymin, ymax)
        t = day0 + dt.timedelta(seconds=rng.uniform(0, 3600))
        evs = []
        for _ in range(events_per_rep):
            lon += rng.gauss(0, 0.002)
            lat += rng.gauss(0, 0.001)
            t += dt.timedelta(seconds=rng.uniform(30, 120))
            evs.append({"event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        "device_id": dev, "rep_id": rep, "kind": "ping",
                        "ts": t.isoformat(), "lat": round(lat, 6), "lon": round(lon, 6),
                        "accuracy_m": round(rng.uniform(4, 30), 1), "provider": "gps"})
        mine = []
        for i in range(0, len(evs), per_upload):
            chunk = evs[i:i + per_upload]
            stamp = chunk[-1]["ts"]
            mine.append((dev.encode(), orjson.dumps(
                {"events": [{**e, "received_at": stamp} for e in chunk]})))
        per_rep.append(mine)
    # Round robin over reps (first upload of every rep, then the second, ...): all reps are
    # active from the start, as on a working day, not one rep after another.
    by_round: dict[int, list[tuple[bytes, bytes]]] = {}
    for rep_msgs in per_rep:
        for k, m in enumerate(rep_msgs):
            by_round.setdefault(k, []).append(m)
    messages = [m for k in sorted(by_round) for m in by_round[k]]
    return messages, n_reps * events_per_rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="two workers vs one; worker RSS with 10k reps")
    ap.add_argument("--quick", action="store_true", help="small workloads, 1 run, no results")
    ap.add_argument("--only", choices=["scale", "rss"], default=None)
    ap.add_argument("--events", type=int, default=None, help="scale workload (default 100k)")
    ap.add_argument("--window", type=float, default=None,
                    help="longest measurement of a scale run, s (default 40; quick 15)")
    ap.add_argument("--runs", type=int, default=None, help="pairs of (one, two) runs")
    ap.add_argument("--reps", type=int, default=10_000)
    ap.add_argument("--events-per-rep", type=int, default=None, help="default 5 (quick 2)")
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args(argv)
    runs = args.runs or (1 if args.quick else 2)
    results = args.results or (None if args.quick else DEFAULT_RESULTS)
    figures = []
    loads: list[float] = []

    if args.only in (None, "scale"):
        wl = simulated_workload(args.events or (20_000 if args.quick else 100_000))
        window = args.window or (15.0 if args.quick else 40.0)
        one, two = [], []
        for i in range(runs):
            one.append(drain(1, wl.events, wl.messages, wl.distinct_valid, "scale-one",
                             window)[0])
            two.append(drain(2, wl.events, wl.messages, wl.distinct_valid, "scale-two",
                             window)[0])
            loads.append(load_1m())
            info(f"pair {i + 1}/{runs}: one {one[-1]:,.0f}, two {two[-1]:,.0f} events/s; "
                 f"load average {loads[-1]:.1f}")
        f1 = Figure("scale_one_worker_events_per_s", one, "events/s")
        f2 = Figure("scale_two_workers_events_per_s", two, "events/s", baseline=f1.value)
        ratio = Figure("scale_two_workers_ratio", [b / a for a, b in zip(one, two, strict=True)],
                       "ratio", digits=2)
        figures += [f1, f2, ratio]

    if args.only in (None, "rss"):
        per_rep = args.events_per_rep or (2 if args.quick else 5)
        msgs, n = synthetic_reps(args.reps, per_rep, per_upload=5)
        info(f"rss: {args.reps:,} reps x {per_rep} pings = {n:,} events in {len(msgs):,} "
             "uploads")
        _, hwm = drain(1, n, msgs, n, "rss", 60.0 if args.quick else 150.0,
                       settle_s=2.0 if args.quick else 7.0)
        figures.append(Figure(f"worker_rss_mb_{args.reps // 1000}k_reps", hwm, "MiB",
                              load=[load_1m()]))

    report(figures, results, loads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
