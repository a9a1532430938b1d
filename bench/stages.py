"""Diagnostic: the cost of each stage of the intake hot path, in one process, no Kafka.

Runs the worker's intake steps (parse and validate, geo enrichment, ClickHouse rows, the
enriched-topic encoding, the idempotent chDB insert) over the e2e workload in batches of
``--batch`` uploads, and prints microseconds per event for each stage. It calls the same
functions as the intake agent, so it tracks them; it is not part of ``make bench`` (no
RESULT lines) and exists to explain the end-to-end figure.

    python bench/stages.py --events 100000 --batch 200
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SAMPLE_WORLD, info, simulated_workload


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="per-stage cost of the intake hot path")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=200, help="uploads per batch")
    args = ap.parse_args(argv)

    from processors.intake import TimeLimits, parse_message
    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from sinks.rows import EVENT_COLUMN_NAMES, event_row
    from sinks.writer import ClickHouseWriter
    from streams.enrich import encode_enriched_batches
    from streams.geosets import GeoEnricher, build_index, prepare

    wl = simulated_workload(args.events)
    sets = {kind: (1, prepare(kind, SAMPLE_WORLD / f"{kind}.geojson")[0])
            for kind in ("territories", "accounts")}
    enricher = GeoEnricher(build_index(sets))
    client = connect(url=None, chdb_path=Path(tempfile.mkdtemp(prefix="stages-")),
                     database="geotel")
    migrate(client)
    writer = ClickHouseWriter(client)
    limits = TimeLimits()
    now = dt.datetime.now(dt.UTC)
    cost: dict[str, float] = defaultdict(float)
    n = 0
    t_all = time.perf_counter()
    for b in range(0, len(wl.messages), args.batch):
        chunk = wl.messages[b:b + args.batch]
        t = time.perf_counter()
        valid, received = [], []
        for _, value in chunk:
            res = parse_message(value, now, limits)
            valid.extend(res.events)
            received.extend(e.received_at or now for e in res.events)
        t1 = time.perf_counter()
        geo = enricher.enrich(valid)
        t2 = time.perf_counter()
        rows = [event_row(e, r, g) for e, r, g in zip(valid, received, geo, strict=True)]
        t3 = time.perf_counter()
        out = list(encode_enriched_batches(valid, geo))
        t4 = time.perf_counter()
        writer.add_batch("events_all", EVENT_COLUMN_NAMES, rows, {("raw", 0): (b, b + 1)})
        writer.flush()
        t5 = time.perf_counter()
        n += len(valid)
        for k, v in (("parse+validate", t1 - t), ("geo enrich", t2 - t1),
                     ("event_row", t3 - t2), ("encode enriched", t4 - t3),
                     ("chDB insert", t5 - t4)):
            cost[k] += v
        cost["enriched messages"] += len(out)
    total = time.perf_counter() - t_all
    info(f"{n:,} events, {len(wl.messages):,} uploads, batches of {args.batch} uploads; "
         f"{cost.pop('enriched messages') / max(1, len(wl.messages) / args.batch):.0f} "
         "enriched messages per batch")
    for k, v in cost.items():
        print(f"{k:18s} {v / n * 1e6:7.1f} us/event  {v / total:5.1%}")
    print(f"{'total':18s} {total / n * 1e6:7.1f} us/event  = {n / total:,.0f} events/s on one "
          "core, before Faust, Kafka and the event loop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
