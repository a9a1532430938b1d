"""Diagnostic: the cost of each stage of the worker's hot path, in one process, no Kafka.

Runs the worker's intake steps (parse and validate, geo enrichment, ClickHouse rows, the
enriched-topic encoding, the idempotent chDB insert) over the e2e workload in batches of
``--batch`` uploads, and prints microseconds per event for each stage. It calls the same
functions as the intake agent, so it tracks them; it is not part of ``make bench`` (no
RESULT lines) and exists to explain the end-to-end figure.

    python bench/stages.py --events 100000 --batch 200             # both paths
    python bench/stages.py --events 60000 --batch 200 --path columns --tuples  # the worker's
                                                        # path; Arrow vs tuple inserts
    python bench/stages.py --events 150000 --path sessions --gc worker  # the sessions stage

``--path columns`` is the worker's intake; ``--path sessions`` runs the sessions stage's
steps over the enriched messages the intake makes of the workload: decode (pydantic),
``RepSessionState.add`` and, every ``--derive-every`` batches, the derivation of every
dirty rep-day and its transitions. ``--gc`` chooses Python's collector thresholds or the
worker's (``streams.app.tune_gc``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SAMPLE_WORLD, info, simulated_workload


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="per-stage cost of the intake hot path")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=200, help="uploads per batch")
    ap.add_argument("--flush-rows", type=int, default=20_000,
                    help="rows per insert of the columns path (the worker's flush_rows); taken "
                    "batches accumulate until then")
    ap.add_argument("--path", choices=("columns", "models", "both", "sessions"),
                    default="both",
                    help="columns: the worker's path (msgspec decode, column checks, "
                    "EventColumns, one Arrow insert per flush_rows); models: the pydantic "
                    "reference path (a model per event, one row-oriented insert per batch)")
    ap.add_argument("--tuples", action="store_true",
                    help="columns path: also insert each flush as Python column lists (the "
                    "insert the worker used before Arrow), timed apart")
    ap.add_argument("--derive-every", type=int, default=100,
                    help="sessions path: derive the dirty rep-days every this many batches")
    ap.add_argument("--gc", choices=("default", "worker"), default="default",
                    help="collector thresholds: Python's, or the worker's (tune_gc)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: this process's CPU time (all its threads) instead of elapsed "
                    "time: steadier on a loaded machine")
    args = ap.parse_args(argv)
    global _clock
    _clock = time.process_time if args.clock == "cpu" else time.perf_counter

    from sinks.clickhouse import connect
    from sinks.migrations import migrate
    from streams.geosets import GeoEnricher, build_index, prepare

    wl = simulated_workload(args.events)
    sets = {kind: (1, prepare(kind, SAMPLE_WORLD / f"{kind}.geojson")[0])
            for kind in ("territories", "accounts")}
    enricher = GeoEnricher(build_index(sets))
    client = connect(url=None, chdb_path=Path(tempfile.mkdtemp(prefix="stages-")),
                     database="geotel")
    migrate(client)
    if args.gc == "worker":
        from streams.app import tune_gc

        tune_gc()
    if args.path == "sessions":
        _run_sessions(wl, enricher, args.batch, args.derive_every)
        return 0
    if args.path in ("models", "both"):
        _run_models(wl, enricher, client, args.batch)
    if args.path in ("columns", "both"):
        _run_columns(wl, enricher, client, args.batch, args.flush_rows, args.tuples)
    return 0


_clock = time.perf_counter


def _report(label: str, cost: dict[str, float], n: int, total: float) -> None:
    print(f"-- {label}")
    for k, v in cost.items():
        print(f"{k:18s} {v / n * 1e6:7.1f} us/event  {v / total:5.1%}")
    print(f"{'total':18s} {total / n * 1e6:7.1f} us/event  = {n / total:,.0f} events/s on one "
          "core, before Faust, Kafka and the event loop")


def _run_models(wl: Any, enricher: Any, client: Any, batch: int) -> None:
    """The reference path: pydantic model per event, Enrichment per event, row tuples,
    model JSON, one row-oriented insert per batch."""
    from processors.intake import TimeLimits, parse_message
    from sinks.rows import EVENT_COLUMN_NAMES, event_row
    from sinks.writer import ClickHouseWriter
    from streams.enrich import encode_enriched_batches

    writer = ClickHouseWriter(client)
    limits = TimeLimits()
    now = dt.datetime.now(dt.UTC)
    cost: dict[str, float] = defaultdict(float)
    n = messages = 0
    t_all = _clock()
    for b in range(0, len(wl.messages), batch):
        chunk = wl.messages[b:b + batch]
        t = _clock()
        valid: list[Any] = []
        received: list[dt.datetime] = []
        for _, value in chunk:
            res = parse_message(value, now, limits)
            valid.extend(res.events)
            received.extend(e.received_at or now for e in res.events)
        t1 = _clock()
        geo = enricher.enrich(valid)
        t2 = _clock()
        rows = [event_row(e, r, g) for e, r, g in zip(valid, received, geo, strict=True)]
        t3 = _clock()
        out = list(encode_enriched_batches(valid, geo))
        t4 = _clock()
        writer.add_batch("events_all", EVENT_COLUMN_NAMES, rows, {("raw", 0): (b, b + 1)})
        writer.flush()
        t5 = _clock()
        n += len(valid)
        messages += len(out)
        for k, v in (("parse+validate", t1 - t), ("geo enrich", t2 - t1),
                     ("event_row", t3 - t2), ("encode enriched", t4 - t3),
                     ("chDB insert", t5 - t4)):
            cost[k] += v
    total = _clock() - t_all
    info(f"{n:,} events, {len(wl.messages):,} uploads, batches of {batch} uploads; "
         f"{messages / max(1, len(wl.messages) / batch):.0f} enriched messages per batch")
    _report(f"models path (pydantic), one insert per batch of {batch} uploads", cost, n, total)


def _run_columns(wl: Any, enricher: Any, client: Any, batch: int, flush_rows: int,
                 tuples: bool) -> None:
    """The worker's path (streams/app.py): per taken batch, msgspec decode and column
    checks into ``EventColumns`` and the enrichment columns; per flush, the enriched
    messages and one Arrow insert. With ``tuples``, the same rows are also inserted the way
    the worker did before (column-oriented Python lists, DateTime64 ticks), to compare.
    Serial here: the worker overlaps the insert with the next batches."""
    from processors.intake import TimeLimits
    from processors.intake_columns import IntakeBatch
    from schemas.columns import EventColumns
    from sinks.rows import EVENT_COLUMN_NAMES
    from sinks.writer import ClickHouseWriter
    from streams.enrich import encode_enriched_columns

    writer = ClickHouseWriter(client)
    limits = TimeLimits()
    now = dt.datetime.now(dt.UTC)
    cost: dict[str, float] = defaultdict(float)
    n = inserts = 0
    group: list[Any] = []
    rows = 0
    t_all = _clock()
    for b in range(0, len(wl.messages), batch):
        chunk = wl.messages[b:b + batch]
        t = _clock()
        ib = IntakeBatch(limits)
        for _, value in chunk:
            ib.add(value, now)
        t1 = _clock()
        cols, _ = ib.build()
        t2 = _clock()
        cols = enricher.enrich_columns(cols)
        t3 = _clock()
        group.append(cols)
        rows += len(cols)
        cost["decode (msgspec)"] += t1 - t
        cost["column checks"] += t2 - t1
        cost["geo enrich"] += t3 - t2
        if rows < flush_rows and b + batch < len(wl.messages):
            continue
        t3 = _clock()
        events = EventColumns.concat(group)
        table = events.store_table()
        t4 = _clock()
        out = list(encode_enriched_columns(events))
        t5 = _clock()
        writer.add_arrow("events_all", table, {("raw", 1): (b, b + 1)})
        writer.flush()
        t6 = _clock()
        if tuples:
            t7 = _clock()
            data = [c.to_pylist() for c in table.columns]
            form = table.column_names.index("form")
            data[form] = [dict(v) for v in data[form]]
            cost["(python lists for it)"] += _clock() - t7
            t7 = _clock()
            writer.add_columns("events_all", EVENT_COLUMN_NAMES, data,
                               {("raw", 2): (b, b + 1)}, ticks=("ts", "received_at"))
            writer.flush()
            cost["(tuple insert)"] += _clock() - t7
        n += len(events)
        inserts += 1
        for k, v in (("concat", t4 - t3), ("encode enriched", t5 - t4),
                     ("chDB Arrow insert", t6 - t5)):
            cost[k] += v
        group, rows = [], 0
        del out
    total = (_clock() - t_all - cost.get("(tuple insert)", 0.0)
             - cost.get("(python lists for it)", 0.0))
    _report(f"columns path (worker), {inserts} inserts of up to {flush_rows:,} rows; "
            "the parenthesised lines are not in the total", cost, n, total)


def _run_sessions(wl: Any, enricher: Any, batch: int, derive_every: int) -> None:
    """The sessions stage (streams/sessions.py add_batch and derive_due) over the enriched
    messages of the workload: decode, add, and now and then derive every dirty rep-day."""
    from processors import RepSessionState
    from processors.intake import TimeLimits
    from processors.intake_columns import IntakeBatch
    from processors.transitions import derive_transitions_columns
    from streams.enrich import encode_enriched_columns
    from streams.sessions import _BATCH, GeoPlaces
    from streams.settings import Settings

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    now = dt.datetime.now(dt.UTC)
    batches: list[list[bytes]] = []
    for b in range(0, len(wl.messages), batch):
        ib = IntakeBatch(TimeLimits())
        for _, value in wl.messages[b:b + batch]:
            ib.add(value, now)
        cols = enricher.enrich_columns(ib.build()[0])
        batches.append([v for _, v in encode_enriched_columns(cols)])
    index = enricher.index
    from processors import kernels

    t = time.perf_counter()
    kernels.warm_up()  # as the stage does when it starts: load (or compile) the kernels
    info(f"derivation kernels loaded in {time.perf_counter() - t:.2f} s (not counted below)")
    states: dict[str, Any] = {}
    cost: dict[str, float] = defaultdict(float)
    n = derivations = 0
    gc.collect()
    t_all = _clock()

    def derive() -> int:
        k = 0
        for rep, state in states.items():
            if not state.dirty:
                continue
            t = _clock()
            out = state.derive(GeoPlaces(index, rep), close=False)
            t1 = _clock()
            for u in out.updates:
                derive_transitions_columns(rep, u.local_date, state.pings_of(u.local_date),
                                           settings.transitions, version=u.version)
            cost["derive"] += t1 - t
            cost["transitions"] += _clock() - t1
            k += 1
        return k

    for i, values in enumerate(batches):
        t = _clock()
        decoded = [_BATCH.validate_json(v) for v in values]
        t1 = _clock()
        for b in decoded:
            state = states.get(b.rep_id)
            if state is None:
                state = states[b.rep_id] = RepSessionState(
                    b.rep_id, index.rep_profile(b.rep_id).tz, settings.sessions)
            state.add(b.events, places=GeoPlaces(index, b.rep_id), derive=False)
            n += len(b.events)
        cost["decode"] += t1 - t
        cost["add"] += _clock() - t1
        if (i + 1) % derive_every == 0:
            derivations += derive()
    derivations += derive()
    total = _clock() - t_all
    info(f"{n:,} events in {sum(len(b) for b in batches):,} enriched messages, {len(states)} "
         f"reps, {derivations:,} rep derivations (every {derive_every} batches of {batch} "
         f"uploads), gc thresholds {gc.get_threshold()}")
    _report("sessions stage (decode, add, derive)", cost, n, total)


if __name__ == "__main__":
    raise SystemExit(main())
