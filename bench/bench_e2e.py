"""Benchmark: end-to-end worker throughput, Kafka -> validated, enriched rows in ClickHouse.

Workload: 1,000,000 simulated events by default: field days (realistic noise: GPS error,
gaps, offline backlogs, resent uploads) of 250 reps over the sample world, one
``telemetry.raw`` message per upload exactly as the ingest endpoint writes them (key
device_id, value ``{"events": [...]}`` with ``received_at``), preloaded into a fresh embedded
broker, with the sample territories and accounts published on their compacted topics. The
generated workload is cached under var/ (keyed by its parameters). Then the pipeline
(``geotel worker``, sessions on) consumes it.

Timing: from the first ``/health`` poll (every 50 ms) that shows rows written to the moment
the pipeline is done with every event: ``components.sink.rows`` covers every event (stored or
dead-lettered), confirmed by the distinct event ids in ClickHouse, AND the sessions stage has
consumed every ``telemetry.enriched`` message (its ``consumed_messages`` reach the topic's end
offsets), holds nothing underived (``dirty_reps`` 0) and has acked everything
(``pending_messages`` 0), with derived ``rep_daily`` rows present. Start-up, group join and
the first batch are excluded: the rows already written at the first poll are subtracted.
An intake drain slower than ``--window`` seconds is measured over the window instead (events
stored in it, from distinct event ids in ClickHouse scaled by the workload's events per
distinct id; the sessions stage is then not waited for), so a slow build still finishes.

CPU over the same interval, from /proc: ``pipeline_cpu_us_per_event`` is the user+system CPU
of every process the pipeline command started (its session), per event; the info line gives
each process's share. ``broker_cpu_us_per_event`` is the broker's. These are steadier than
rates on a shared machine: compare runs by them.

Baselines, in the same run:

(a) ``bench/naive_app.py``: the obvious Faust agent (one event per message and iteration,
    pydantic, shapely lookup per point, chDB inserts of 1,000 rows) -> ``baseline``/``ratio``
    of ``e2e_events_per_s``. Timed the same way, on the first 30,000 events (its rate is
    steady).
(b) the read limit: aiokafka ``getmany`` reading the preloaded topic itself (all partitions,
    one process, on the same broker just before the pipeline starts) and decoding every
    message with orjson, timed from the first fetch -> ``e2e_read_limit_ratio``.

    python bench/bench_e2e.py                   # 1M events, updates var/bench/results.json
    python bench/bench_e2e.py --events 100000   # the short variant
    python bench/bench_e2e.py --quick           # 30k events, no results file
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DEFAULT_RESULTS,
    GEOTEL,
    SAMPLE_WORLD,
    Figure,
    Proc,
    Workload,
    broker_process,
    cpu_s,
    embedded_broker,
    free_port,
    info,
    load_1m,
    prepare_topics_and_geo,
    produce,
    report,
    run_dir,
    session_cpu_s,
    settings_for,
    simulated_workload,
    sql_scalar,
    start_worker,
    wait_for,
)

POLL_S = 0.05


def time_sink(http: httpx.Client, base: str, expected: int, proc: Proc, window_s: float,
              stored: Callable[[], int] | None = None, per_stored: float = 1.0,
              on_start: Callable[[], None] | None = None) -> tuple[float, float, float, bool]:
    """Time the drain of ``expected`` rows, from the first /health poll that shows rows.

    Returns (seconds, events counted in them, seconds from the call to the first rows,
    drained). If the drain takes longer than ``window_s``, the rate is taken over the window
    instead (``drained`` False). ``stored()`` counts what is really in ClickHouse (distinct
    event ids; ``per_stored`` converts to events, duplicates included): with it, the end of
    the drain is confirmed and a window is measured in stored events, not sink rows (which
    also count rows of other tables)."""

    def rows() -> int:
        sink = http.get(base + "/health", timeout=5).json()["components"]["sink"]
        return int(sink["rows"]) + int(sink.get("dropped", 0))

    called = time.perf_counter()
    state: dict[str, float] = {}

    def started() -> bool:
        r = rows()
        if r > 0:
            state["t0"], state["r0"] = time.perf_counter(), r
            if on_start is not None:
                on_start()
            return True
        return False

    wait_for(started, 120, "first rows written", proc, interval_s=0.02)
    t0 = state["t0"]
    s0 = stored() * per_stored if stored is not None else state["r0"]
    try:
        wait_for(lambda: rows() >= expected, window_s, f"{expected} rows", proc, POLL_S)
    except TimeoutError:
        t1 = time.perf_counter()
        s1 = stored() * per_stored if stored is not None else rows()
        return t1 - t0, s1 - s0, t0 - called, False
    t1 = time.perf_counter()
    if stored is not None and stored() * per_stored < expected - 0.5:
        # Rows of other tables counted by the sink: wait until the events themselves are in.
        wait_for(lambda: stored() * per_stored >= expected - 0.5, window_s,
                 "all events in ClickHouse", proc, interval_s=0.2)
        t1 = time.perf_counter()
    if expected - s0 < expected // 4:
        # Tiny workloads (smoke tests) are mostly done before the first poll: time them from
        # the call instead, start-up included, rather than divide by almost nothing.
        return t1 - called, expected, 0.0, True
    return t1 - t0, expected - s0, t0 - called, True


def enriched_end(bootstrap: str, topic: str) -> int:
    """Sum of the end offsets of ``topic`` (messages written to it so far)."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.broker import log_end_offsets

    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = c.partitions_for_topic(topic) or set()
        ends = log_end_offsets(c, [TopicPartition(topic, p) for p in parts])
        return int(sum(ends.values()))
    finally:
        c.close()


def wait_sessions(http: httpx.Client, base: str, bootstrap: str, topic: str, proc: Proc,
                  timeout_s: float) -> dict[str, Any] | None:
    """Wait until the sessions stage consumed every message of ``topic`` (its end offsets),
    derived and acked everything, and rep_daily has rows; its /health part, or None when the
    worker runs without the stage."""
    state: dict[str, Any] = {}

    def done() -> bool:
        st = http.get(base + "/health", timeout=5).json()["components"].get("sessions")
        if st is None:
            state.clear()
            return True
        state.update(st)
        if st["pending_messages"] or st["dirty_reps"]:
            return False
        return int(st.get("consumed_messages", 0)) >= enriched_end(bootstrap, topic)

    wait_for(done, timeout_s, "the sessions stage derived everything", proc, POLL_S)
    if not state:
        return None
    if int(sql_scalar(http, base, "SELECT count() FROM rep_daily")) == 0:
        raise RuntimeError("the sessions stage derived nothing")
    return state


@dataclass
class OursRun:
    """One measured run of the pipeline on the preloaded workload."""

    rate: float  # events/s until stored and derived
    read_rate: float  # the read limit on the same topic, same broker
    pipeline_cpu_us: float  # CPU of every geotel process, per event
    broker_cpu_us: float  # CPU of the broker, per event
    wall_s: float  # the measured drain


def read_limit(bootstrap: str, topic: str, events: int) -> float:
    """aiokafka, all partitions assigned, every message decoded with orjson; events/s from
    the first fetch."""
    import orjson
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    async def read() -> float:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             fetch_max_bytes=64 * 1024 * 1024,
                             max_partition_fetch_bytes=8 * 1024 * 1024)
        await c.start()
        try:
            tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            seen = 0
            t0 = time.perf_counter()
            while seen < events:
                batch = await c.getmany(timeout_ms=1000, max_records=10_000)
                for records in batch.values():
                    for r in records:
                        seen += len(orjson.loads(r.value)["events"])
            return events / (time.perf_counter() - t0)
        finally:
            await c.stop()

    return asyncio.run(read())


def run_ours(wl: Workload, window_s: float) -> OursRun:
    root = run_dir("e2e-ours")
    with broker_process(root) as broker, httpx.Client() as http:
        port = broker.port
        s = settings_for(root / "setup", port)
        prepare_topics_and_geo(s)
        raw = s.topic("telemetry.raw")
        load_s = produce(s.bootstrap_servers, raw, wl.messages)
        # The read limit of this very topic, before the pipeline starts (same broker, same
        # messages, nothing else running against it).
        read = read_limit(s.bootstrap_servers, raw, wl.events)
        info(f"read limit: {read:,.0f} ev/s ({len(wl.messages):,} messages)")
        proc, base = start_worker(root, port)
        try:
            def stored() -> int:
                return int(sql_scalar(http, base, "SELECT uniqExact(event_id) FROM events_all"))

            called = time.perf_counter()
            cpu: list[tuple[dict[str, float], float]] = []

            def sample() -> None:
                cpu.append((session_cpu_s(proc.pid), cpu_s(broker.proc.pid)))

            secs, counted, startup, drained = time_sink(
                http, base, wl.events, proc, window_s, stored, wl.events / wl.distinct_valid,
                on_start=sample)
            intake_secs = secs
            sessions = None
            if drained:
                # Honest end: the sessions stage has consumed and derived the events too.
                t0 = called + startup
                sessions = wait_sessions(http, base, s.bootstrap_servers,
                                         s.topic("telemetry.enriched"), proc, 1800)
                secs = time.perf_counter() - (called if startup == 0.0 else t0)
            sample()
            geo = sql_scalar(http, base, "SELECT round(countIf(geo_version > 0) / count(), 4) "
                             "FROM events_all WHERE kind = 'ping'")
        finally:
            proc.stop()
    rate = counted / secs
    stage = ("sessions stage not waited for" if not drained else
             "sessions stage off" if sessions is None else
             f"sessions stage done {secs - intake_secs:.2f}s after the intake: "
             f"{sessions.get('derivations')} derivations, {sessions.get('rebuilt_reps')} "
             f"reps rebuilt")
    # CPU per event is steadier than rates on a shared machine.
    (p0, b0), (p1, b1) = cpu[0], cpu[-1]
    per_proc = {k: v - p0.get(k, 0.0) for k, v in p1.items()}
    pipeline_us = sum(per_proc.values()) / counted * 1e6
    broker_us = (b1 - b0) / counted * 1e6
    shares = ", ".join(f"{k.split(' ', 1)[1]} {v / counted * 1e6:.1f}"
                       for k, v in sorted(per_proc.items(), key=lambda kv: -kv[1]))
    info(f"ours: {counted:,.0f} events in {secs:.2f}s = {rate:,.0f} ev/s "
         f"({'all drained and derived' if drained else f'{window_s:.0f} s window, not drained'}"
         f"; intake alone {counted / intake_secs:,.0f} ev/s; {stage}; preload "
         f"{load_s:.1f}s, start-up to first rows {startup:.1f}s, pings enriched with a geo "
         f"version: {float(geo):.1%})")
    info(f"CPU us/event: pipeline {pipeline_us:.1f} ({shares}), broker {broker_us:.1f}")
    return OursRun(rate, read, pipeline_us, broker_us, secs)


def run_naive(wl: Workload, window_s: float) -> float:
    root = run_dir("e2e-naive")
    msgs = wl.single_event_messages()
    with embedded_broker(root) as port, httpx.Client() as http:
        bootstrap = f"127.0.0.1:{port}"
        s = settings_for(root / "setup", port)
        from kafka.admin import NewTopic

        from streams.broker import ensure_topics

        ensure_topics(s, extra=[NewTopic("naive.raw", s.kafka.topic_partitions, 1)])
        load_s = produce(bootstrap, "naive.raw", msgs)
        web = free_port()
        proc = Proc([*GEOTEL[:1], str(Path(__file__).with_name("naive_app.py")),
                     "--bootstrap", bootstrap, "--topic", "naive.raw", "--web-port", str(web),
                     "--data-dir", str(root / "naive"),
                     "--territories", str(SAMPLE_WORLD / "territories.geojson")],
                    env={**os.environ}, log_path=root / "naive.log")
        try:
            secs, counted, startup, drained = time_sink(
                http, f"http://127.0.0.1:{web}", len(msgs), proc, window_s)
        finally:
            proc.stop()
    rate = counted / secs
    info(f"naive: {counted:,.0f} events in {secs:.2f}s = {rate:,.0f} ev/s "
         f"({'all drained' if drained else f'{window_s:.0f} s window, not drained'}; preload "
         f"{load_s:.1f}s, start-up {startup:.1f}s)")
    return rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="end-to-end pipeline throughput vs baselines")
    ap.add_argument("--quick", action="store_true", help="30k events, 1 run, no results file")
    ap.add_argument("--events", type=int, default=None,
                    help="events preloaded (default 1,000,000; quick 30,000)")
    ap.add_argument("--naive-events", type=int, default=None,
                    help="events for baseline (a) (slow; its rate is steady, default 30k)")
    ap.add_argument("--runs", type=int, default=None, help="default 1")
    ap.add_argument("--window", type=float, default=None,
                    help="longest intake drain per run, s (default 600; quick 20): a "
                    "slower drain is measured over this window")
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args(argv)
    n = args.events or (30_000 if args.quick else 1_000_000)
    runs = args.runs or 1
    results = args.results or (None if args.quick else DEFAULT_RESULTS)
    window = args.window or (20.0 if args.quick else 600.0)

    began = time.perf_counter()
    wl = simulated_workload(n)
    naive_wl = simulated_workload(min(n, args.naive_events or 30_000))
    info(f"workload: {wl.events:,} events in {len(wl.messages):,} uploads "
         f"({wl.events / len(wl.messages):.1f} events/upload), {wl.distinct_valid:,} distinct "
         f"valid ids, {wl.rejects:,} rejects, {wl.reps} reps ({time.perf_counter() - began:.1f}s)")

    ours: list[OursRun] = []
    naive, loads = [], []
    for i in range(runs):
        ours.append(run_ours(wl, window))
        naive.append(run_naive(naive_wl, window))
        loads.append(load_1m())
        info(f"run {i + 1}/{runs} done (load average {loads[-1]:.1f})")
    e2e = Figure("e2e_events_per_s", [o.rate for o in ours], "events/s")
    base = Figure("e2e_naive_events_per_s", naive, "events/s")
    lim = Figure("e2e_read_limit_events_per_s", [o.read_rate for o in ours], "events/s")
    e2e.baseline = base.value
    ratio = Figure("e2e_read_limit_ratio", [o.rate / o.read_rate for o in ours], "ratio",
                   digits=3)
    cpu = Figure("pipeline_cpu_us_per_event", [o.pipeline_cpu_us for o in ours], "us/event",
                 digits=1)
    broker = Figure("broker_cpu_us_per_event", [o.broker_cpu_us for o in ours], "us/event",
                    digits=1)
    info(f"e2e benchmark took {time.perf_counter() - began:.0f}s ({wl.events:,} events, "
         f"measured drains {', '.join(f'{o.wall_s:.1f}s' for o in ours)})")
    report([e2e, base, lim, ratio, cpu, broker], results, loads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
