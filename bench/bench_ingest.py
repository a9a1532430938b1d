"""Benchmark: the HTTP ingest endpoint, accepted events/s and request latency.

ONE ``geotel ingest`` process (stateless endpoint: token check, per-event validation, one
Kafka message per upload acknowledged by the broker before the 202) in front of a fresh
embedded broker. 1,000 devices are registered through the devices topic; a closed-loop
aiohttp load generator keeps ``--concurrency`` requests of 100 pings in flight, cycling over
2,000 prepared bodies (ingest does no cross-request dedup, so a resent body costs what a new
one does). Each run measures ``--seconds`` after a 1 s warm-up; figures are medians of runs.

``ingest_events_per_s`` is the closed loop's rate (the maximum); its latencies are those of a
saturated server, which are its queue (in flight / rate), reported as
``ingest_saturated_p50_ms`` / ``_p99_ms``. ``ingest_p50_ms`` / ``ingest_p99_ms`` are
measured under load instead: an open loop offering ``LATENCY_LOAD`` (half) of that maximum,
as freshness is measured at half the sustainable rate; one request every 1/rate s whatever
the answers, so a stall shows in every request it delays, not only in the one in hand.

The load generator runs on the same 2 cores as the ingest process and the broker: its CPU
use is printed (``info:``) and recorded, because it caps what the server can be shown to do.

    python bench/bench_ingest.py            # 3 runs of 12 s
    python bench/bench_ingest.py --quick    # 1 run of 3 s, no results file
    python bench/bench_ingest.py --compare-journal   # without/with the upload journal
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DEFAULT_RESULTS,
    GEOTEL,
    Figure,
    Proc,
    embedded_broker,
    free_port,
    geotel_env,
    info,
    load_1m,
    pctl,
    report,
    run_dir,
    settings_for,
    wait_for,
)
from loadgen import closed_loop, paced, ping_body, proc_cpu_s, register_devices

BATCH_EVENTS = 100
#: The open-loop latency runs offer this share of the maximum measured in the same run.
LATENCY_LOAD = 0.5


def start_ingest(root: Path, kafka_port: int, name: str = "ingest",
                 extra: dict[str, str] | None = None) -> tuple[Proc, str]:
    web = free_port()
    (root / name).mkdir(parents=True, exist_ok=True)
    proc = Proc([*GEOTEL, "ingest"], geotel_env(root / name, kafka_port, web, extra),
                root / f"{name}.log")
    base = f"http://127.0.0.1:{web}"
    with httpx.Client() as http:
        wait_for(lambda: http.get(base + "/health", timeout=2).json()["status"] == "ok", 90,
                 "ingest healthy", proc, interval_s=0.2)
    return proc, base


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ingest endpoint throughput and latency")
    ap.add_argument("--quick", action="store_true", help="1 run of 3 s, no results file")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--concurrency", type=int, default=48)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--compare-journal", action="store_true",
                    help="the upload journal's cost: ingest without and with it, alternately")
    args = ap.parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 12.0)
    runs = args.runs or (1 if args.quick else 3)
    results = args.results or (None if args.quick else DEFAULT_RESULTS)
    if args.compare_journal:
        return compare_journal(args, seconds, runs, results)

    root = run_dir("ingest")
    rates, p50s, p99s, gen_cpu, srv_cpu, loads = [], [], [], [], [], []
    sat_p50s: list[float] = []
    sat_p99s: list[float] = []
    with embedded_broker(root) as port:
        proc, base = start_ingest(root, port)
        try:
            settings = settings_for(root / "setup", port)
            devices = register_devices(settings, base, args.devices)
            rng = random.Random(11)
            now = dt.datetime.now(dt.UTC)
            bodies = [(d.token, ping_body(d, BATCH_EVENTS, rng, now)[0])
                      for _ in range(2) for d in devices]
            info(f"{len(devices)} devices registered, {len(bodies)} bodies of {BATCH_EVENTS} "
                 f"events ({sum(len(b) for _, b in bodies) / len(bodies) / 1024:.1f} KiB each)")
            for i in range(runs):
                c0, w0 = proc_cpu_s(proc.pid), time.perf_counter()
                st = asyncio.run(closed_loop(base, bodies, args.concurrency, seconds))
                server = (proc_cpu_s(proc.pid) - c0) / (time.perf_counter() - w0)
                rates.append(st.accepted_per_s)
                sat_p50s.append(pctl(st.latencies_s, 0.50) * 1000)
                sat_p99s.append(pctl(st.latencies_s, 0.99) * 1000)
                gen_cpu.append(st.cpu_s / (seconds + 1.0))
                srv_cpu.append(server)
                loads.append(load_1m())
                info(f"run {i + 1}/{runs}: {st.accepted_per_s:,.0f} events/s accepted, "
                     f"{st.requests / seconds:,.0f} req/s, p50 {sat_p50s[-1]:.1f} ms, p99 "
                     f"{sat_p99s[-1]:.1f} ms (saturated, {args.concurrency} in flight), status "
                     f"{dict(st.status)}, errors {dict(st.errors) or 0}, rejected "
                     f"{st.rejected}; CPU: ingest process {server:.0%} of a core, load "
                     f"generator {gen_cpu[-1]:.0%}; load average {loads[-1]:.1f}")
            # Latency under load, not at saturation: a closed loop at its maximum measures
            # its own queue (Little's law: in flight / rate). Open loop, one request every
            # 1/rate s whatever the answers, at LATENCY_LOAD of the maximum just measured.
            offered = LATENCY_LOAD * sorted(rates)[len(rates) // 2] / BATCH_EVENTS
            paced_bodies = (bodies * (1 + int(offered * seconds) // len(bodies)))[
                :max(1, int(offered * seconds))]
            for i in range(runs):
                st = asyncio.run(paced(base, paced_bodies, offered, max_in_flight=256))
                p50s.append(pctl(st.latencies_s, 0.50) * 1000)
                p99s.append(pctl(st.latencies_s, 0.99) * 1000)
                loads.append(load_1m())
                info(f"open loop {i + 1}/{runs} at {offered * BATCH_EVENTS:,.0f} events/s "
                     f"offered ({LATENCY_LOAD:.0%} of the maximum): "
                     f"{st.accepted_per_s:,.0f} accepted, p50 {p50s[-1]:.1f} ms, p99 "
                     f"{p99s[-1]:.1f} ms, status {dict(st.status)}, errors "
                     f"{dict(st.errors) or 0}; load average {loads[-1]:.1f}")
        finally:
            proc.stop()
    report([Figure("ingest_events_per_s", rates, "events/s"),
            Figure("ingest_p50_ms", p50s, "ms", digits=1),
            Figure("ingest_p99_ms", p99s, "ms", digits=1),
            Figure("ingest_saturated_p50_ms", sat_p50s, "ms", digits=1),
            Figure("ingest_saturated_p99_ms", sat_p99s, "ms", digits=1),
            Figure("ingest_loadgen_cpu_cores", gen_cpu, "cores", digits=2),
            Figure("ingest_server_cpu_cores", srv_cpu, "cores", digits=2)], results, loads)
    return 0


def compare_journal(args: argparse.Namespace, seconds: float, runs: int,
                    results: Path | None) -> int:
    """What the upload journal (fsync before the 202) costs: two ingest processes on one
    broker, without and with the journal, measured alternately in the same series: the
    closed-loop maximum, then p50/p99 in an open loop at half the maximum WITHOUT the
    journal (the same offered load for both)."""
    root = run_dir("ingest-journal")
    modes = ("off", "on")
    rates: dict[str, list[float]] = {m: [] for m in modes}
    p50s: dict[str, list[float]] = {m: [] for m in modes}
    p99s: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    loads: list[float] = []
    with embedded_broker(root) as port:
        procs = {m: start_ingest(root, port, f"journal-{m}", {"GEOTEL_INGEST__JOURNAL": m})
                 for m in modes}
        try:
            settings = settings_for(root / "setup", port)
            devices = register_devices(settings, procs["off"][1], args.devices)
            with httpx.Client() as http:
                wait_for(lambda: int(http.get(procs["on"][1] + "/health", timeout=5).json()
                                     ["components"]["devices"]["tokens"]) >= len(devices),
                         60, "device tokens loaded", procs["on"][0])
            rng = random.Random(11)
            now = dt.datetime.now(dt.UTC)
            bodies = [(d.token, ping_body(d, BATCH_EVENTS, rng, now)[0])
                      for _ in range(2) for d in devices]
            for i in range(runs):
                for m in modes:
                    proc, base = procs[m]
                    c0, w0 = proc_cpu_s(proc.pid), time.perf_counter()
                    st = asyncio.run(closed_loop(base, bodies, args.concurrency, seconds))
                    cpu[m].append((proc_cpu_s(proc.pid) - c0) / (time.perf_counter() - w0))
                    rates[m].append(st.accepted_per_s)
                    loads.append(load_1m())
                    info(f"run {i + 1}/{runs} journal {m}: {st.accepted_per_s:,.0f} events/s "
                         f"accepted, status {dict(st.status)}, errors {dict(st.errors) or 0}; "
                         f"ingest CPU {cpu[m][-1]:.0%} of a core; load {loads[-1]:.1f}")
            offered = LATENCY_LOAD * sorted(rates["off"])[len(rates["off"]) // 2] / BATCH_EVENTS
            paced_bodies = (bodies * (1 + int(offered * seconds) // len(bodies)))[
                :max(1, int(offered * seconds))]
            for i in range(runs):
                for m in modes:
                    st = asyncio.run(paced(procs[m][1], paced_bodies, offered,
                                           max_in_flight=256))
                    p50s[m].append(pctl(st.latencies_s, 0.50) * 1000)
                    p99s[m].append(pctl(st.latencies_s, 0.99) * 1000)
                    loads.append(load_1m())
                    info(f"open loop {i + 1}/{runs} journal {m} at "
                         f"{offered * BATCH_EVENTS:,.0f} events/s offered: "
                         f"{st.accepted_per_s:,.0f} accepted, p50 {p50s[m][-1]:.1f} ms, p99 "
                         f"{p99s[m][-1]:.1f} ms, status {dict(st.status)}")
            journal_dir = root / "journal-on" / "uploads"
            info(f"journal: {sum(p.stat().st_size for p in journal_dir.glob('*.seg')):,} "
                 f"bytes in {len(list(journal_dir.glob('*.seg')))} segments")
        finally:
            for proc, _ in procs.values():
                proc.stop()
    figures = []
    for m in modes:
        figures += [Figure(f"ingest_journal_{m}_events_per_s", rates[m], "events/s"),
                    Figure(f"ingest_journal_{m}_p50_ms", p50s[m], "ms", digits=1),
                    Figure(f"ingest_journal_{m}_p99_ms", p99s[m], "ms", digits=1),
                    Figure(f"ingest_journal_{m}_server_cpu_cores", cpu[m], "cores", digits=2)]
    report(figures, results, loads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
