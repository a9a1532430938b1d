"""Benchmark: freshness, from the ingest's 202 to the event's row visible in ClickHouse.

A fresh embedded broker and ONE ``geotel worker`` process serving ingest (what `geotel up`
runs, with the broker outside the process), the sample territories and accounts published.
200 devices post batches of 100 pings at a steady ``--rate`` events/s (default: half the
sustainable rate, which ``bench/run.py`` passes as half the lower of the measured ingest and
end-to-end rates). For every accepted upload the time of the 202 is kept with the id of its
last event; a poller asks the read-only SQL endpoint every 100 ms which of the waiting ids are
in ``events_all`` and records, for each, the time that answer arrived minus the 202 (an upper
bound, by at most one poll interval plus the query). p50/p99 per run; medians of runs. The
runs start once the worker holds every ``telemetry.raw`` partition and after a 2 s warm-up at
the same rate.

    python bench/bench_freshness.py --rate 2500     # 3 runs of 10 s
    python bench/bench_freshness.py --quick         # 1 run of 4 s, no results file
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    DEFAULT_RESULTS,
    Figure,
    embedded_broker,
    info,
    load_1m,
    pctl,
    prepare_topics_and_geo,
    report,
    run_dir,
    settings_for,
    start_worker,
    wait_for,
)
from loadgen import Device, paced, ping_body, register_devices

BATCH_EVENTS = 100
POLL_S = 0.1
WARMUP_S = 2.0
RAW = "telemetry.raw"


async def measure(base: str, devices: list[Device], rate: float, seconds: float,
                  seed: int) -> tuple[list[float], int, float]:
    """One paced run; returns (delays in s, uploads accepted, events/s accepted)."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    n_req = max(1, round(rate * seconds / BATCH_EVENTS))
    bodies, last_ids = [], []
    for i in range(n_req):
        dev = devices[i % len(devices)]
        body, ids = ping_body(dev, BATCH_EVENTS, rng, now)
        bodies.append((dev.token, body))
        last_ids.append(ids[-1])
    pending: dict[str, float] = {}
    delays: list[float] = []
    done = asyncio.Event()

    def accepted(i: int, t: float) -> None:
        pending[last_ids[i]] = t

    async def poller() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            deadline = None
            while True:
                if done.is_set():
                    if not pending:
                        return
                    deadline = deadline or time.perf_counter() + 60
                    if time.perf_counter() > deadline:
                        info(f"{len(pending)} sampled events not visible 60 s after the load")
                        return
                if pending:
                    ids = list(pending)[:2000]
                    sql = ("SELECT toString(event_id) AS id FROM events_all WHERE event_id IN ("
                           + ",".join(f"'{x}'" for x in ids) + ")")
                    async with s.post(base + "/v1/sql",
                                      json={"sql": sql, "format": "json"}) as r:
                        doc = orjson.loads(await r.read())
                    t = time.perf_counter()
                    for row in doc.get("data", []):
                        t202 = pending.pop(row["id"], None)
                        if t202 is not None:
                            delays.append(t - t202)
                await asyncio.sleep(POLL_S)

    poll = asyncio.create_task(poller())
    st = await paced(base, bodies, rate / BATCH_EVENTS, on_accepted=accepted)
    done.set()
    await poll
    return delays, st.status.get(202, 0), st.accepted / st.elapsed_s if st.elapsed_s else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="202-to-ClickHouse freshness at a steady rate")
    ap.add_argument("--quick", action="store_true", help="1 run of 4 s, no results file")
    ap.add_argument("--rate", type=float, default=2500.0, help="events/s to post")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args(argv)
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    runs = args.runs or (1 if args.quick else 3)
    results = args.results or (None if args.quick else DEFAULT_RESULTS)

    root = run_dir("freshness")
    p50s, p99s, loads = [], [], []
    with embedded_broker(root) as port, httpx.Client() as http:
        settings = settings_for(root / "setup", port)
        prepare_topics_and_geo(settings)
        proc, base = start_worker(root, port, ingest=True)
        try:
            def ready() -> bool:
                # Every telemetry.raw partition assigned to the intake: /health is ok (and
                # ingest answers) while the intake's group is still joining, and uploads of
                # those seconds become visible only after it (a start-up cost, not freshness).
                h = http.get(base + "/health", timeout=2).json()
                raw = [p for p in h["components"]["consumer"]["assigned"]
                       if p.startswith(RAW + "/")]
                return bool(h["status"] == "ok" and len(raw) == settings.kafka.topic_partitions
                            and h["components"].get("geo", {}).get("version"))

            wait_for(ready, 120, "worker healthy with the raw partitions and the geo index",
                     proc, 0.2)
            devices = register_devices(settings, base, args.devices)
            # Warm-up at the same rate, not measured: the first inserts create the tables'
            # first parts and the sessions stage builds its first states.
            asyncio.run(measure(base, devices, args.rate, WARMUP_S, seed=99))
            for i in range(runs):
                delays, uploads, got = asyncio.run(measure(base, devices, args.rate, seconds,
                                                           seed=100 + i))
                if not delays:
                    raise RuntimeError("no sampled event became visible")
                p50s.append(pctl(delays, 0.5))
                p99s.append(pctl(delays, 0.99))
                loads.append(load_1m())
                info(f"run {i + 1}/{runs}: {got:,.0f} events/s accepted ({uploads} uploads), "
                     f"{len(delays)} sampled: p50 {p50s[-1]:.2f}s p99 {p99s[-1]:.2f}s "
                     f"max {max(delays):.2f}s; load average {loads[-1]:.1f}")
        finally:
            proc.stop()
    report([Figure("freshness_p50_s", p50s, "s", digits=2),
            Figure("freshness_p99_s", p99s, "s", digits=2),
            Figure("freshness_rate_events_per_s", [args.rate] * len(p50s), "events/s")],
           results, loads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
