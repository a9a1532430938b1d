"""The worker's columnar intake (streams/app.py) against the model path it replaced.

On the simulated field-day workload plus hostile items: the same rows in ClickHouse (the
Arrow insert of ``EventColumns`` stores what ``event_row`` rows store), the same
enrichment, and enriched-topic messages that the sessions stage's contract
(``schemas.derived.EnrichedBatch``) validates to the same events as before.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter

from processors.intake import TimeLimits, parse_message
from processors.intake_columns import IntakeBatch
from schemas.columns import EventColumns
from schemas.derived import EnrichedBatch
from sinks.migrations import migrate
from sinks.rows import EVENT_COLUMN_NAMES, event_row
from sinks.writer import ClickHouseWriter
from streams.enrich import (
    MAX_EVENTS_PER_MESSAGE,
    NullEnricher,
    encode_enriched_batches,
    encode_enriched_columns,
)
from streams.geosets import GeoEnricher, build_index, prepare

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
BATCH = TypeAdapter(EnrichedBatch)


@pytest.fixture(scope="module")
def workload() -> list[bytes]:
    from common import simulated_workload

    msgs = [v for _, v in simulated_workload(3000).messages]
    hostile = [
        {"event_id": str(uuid.uuid4()), "device_id": " dev-x ", "rep_id": "rep-0001",
         "kind": "ping", "ts": "2026-03-02T08:00:00Z", "lat": "52.5", "lon": 13.4},
        {"event_id": str(uuid.uuid4()).upper(), "device_id": "dev-x", "rep_id": "rep-0001",
         "kind": "check_in", "ts": "2026-03-02T08:00:00Z", "action": "visit_start",
         "account_id": "acc-1", "position": {"lat": 52.5, "lon": 13.4, "x": 1}},
        {"event_id": str(uuid.uuid4()), "device_id": "dev-x", "rep_id": "rep-0001",
         "kind": "ping", "ts": "2026-03-02T08:00:00Z", "lat": 91, "lon": 13.4},
        {"kind": "teleport"}, "junk",
        {"event_id": str(uuid.uuid4()), "device_id": "dev-x", "rep_id": "rep-0001",
         "kind": "visit_submission", "ts": "2026-03-02T09:00:00+01:00", "visit_id": "v-1",
         "account_id": "acc-1", "started_at": "2026-03-02T07:30:00Z",
         "ended_at": "2026-03-02T07:55:00Z", "outcome": "order_placed", "notes": "ok \"q\"",
         "form": {"shelf": 3, "needs": ["a", "b"], "ok": True}, "tags": ["x"],
         "order": {"currency": "EUR", "total": "12.50",
                   "lines": [{"sku": "s-1", "quantity": 2, "unit_price": "6.25"}]}},
    ]
    return [*msgs, orjson.dumps({"events": hostile}), b"not json", b"[]"]


@pytest.fixture(scope="module")
def enricher() -> GeoEnricher:
    from common import SAMPLE_WORLD

    sets = {kind: (1, prepare(kind, SAMPLE_WORLD / f"{kind}.geojson")[0])
            for kind in ("territories", "accounts")}
    return GeoEnricher(build_index(sets))


def _both(workload: list[bytes]) -> tuple[list[Any], EventColumns]:
    models: list[Any] = []
    batch = IntakeBatch(TimeLimits())
    want = []
    for m, value in enumerate(workload):
        ref = parse_message(value, NOW, TimeLimits())
        models.extend(ref.events)
        want.extend((m, r.index, r.reason, r.detail) for r in ref.rejects)
        batch.add(value, NOW)
    cols, rejects = batch.build()
    assert [(m, r.index, r.reason, r.detail) for m, r in rejects] == want
    assert len(models) == len(cols)
    return models, cols


def test_enrichment_columns_equal_the_enrichment_models(workload: list[bytes],
                                                        enricher: GeoEnricher) -> None:
    models, cols = _both(workload)
    got = enricher.enrich_columns(cols)
    geo = enricher.enrich(models)
    columns = [got.column(c).to_pylist() for c in (
        "territory_id", "region", "in_assigned_territory", "geo_account_id",
        "geo_account_distance_m", "geo_version")]
    assert [list(c) for c in zip(*columns, strict=True)] == [
        [g.territory_id, g.region, g.in_assigned_territory, g.account_id,
         g.account_distance_m, g.geo_version] for g in geo]
    assert any(c is not None for c in columns[0])  # the sample world enriches
    assert NullEnricher().enrich_columns(cols).column("geo_version").to_pylist() == \
        [0] * len(cols)


def test_enriched_messages_validate_to_the_same_events(workload: list[bytes],
                                                       enricher: GeoEnricher) -> None:
    models, cols = _both(workload)
    geo = enricher.enrich(models)
    old = list(encode_enriched_batches(models, geo))
    new = list(encode_enriched_columns(enricher.enrich_columns(cols)))
    assert [k for k, _ in new] == [k for k, _ in old]
    for (_, a), (_, b) in zip(new, old, strict=True):
        got, want = BATCH.validate_json(a), BATCH.validate_json(b)
        assert got == want
    assert {"visit_submission", "check_in", "ping"} <= {
        e.kind for _, v in new for e in BATCH.validate_json(v).events}


def test_enriched_messages_are_chunked(enricher: GeoEnricher) -> None:
    items = [{"event_id": str(uuid.uuid4()), "device_id": "d", "rep_id": "r" if i % 10 else "q",
              "kind": "ping", "ts": "2026-03-02T08:00:00Z", "lat": 52.5, "lon": 13.4}
             for i in range(2500)]
    batch = IntakeBatch(TimeLimits())
    batch.add(orjson.dumps(items), NOW)
    cols, rejects = batch.build()
    assert not rejects
    msgs = list(encode_enriched_columns(enricher.enrich_columns(cols)))
    got = [(k, BATCH.validate_json(v)) for k, v in msgs]
    assert all(len(b.events) <= MAX_EVENTS_PER_MESSAGE for _, b in got)
    assert sum(len(b.events) for _, b in got) == 2500
    assert all(k.decode() == b.rep_id for k, b in got)


def test_arrow_inserts_store_what_row_inserts_store(ch: Any, workload: list[bytes],
                                                    enricher: GeoEnricher) -> None:
    migrate(ch)
    models, cols = _both(workload)
    geo = enricher.enrich(models)
    ch.insert("events_all", [event_row(e, e.received_at or NOW, g)
                             for e, g in zip(models, geo, strict=True)],
              column_names=EVENT_COLUMN_NAMES)
    ch.command("CREATE TABLE events_rows AS events_all")
    ch.command("INSERT INTO events_rows SELECT * FROM events_all")
    ch.command("TRUNCATE TABLE events_all")
    w = ClickHouseWriter(ch)
    table = enricher.enrich_columns(cols).store_table()
    half = len(cols) // 2
    w.add_arrow("events_all", table.slice(0, half), {("raw", 0): (0, 9)})
    w.add_arrow("events_all", table.slice(half), {("raw", 0): (10, 19)})
    assert w.flush() == len(cols)
    names = ", ".join(EVENT_COLUMN_NAMES)
    query = f"SELECT {names} FROM {{t}} ORDER BY event_id, received_at"
    a = ch.query(query.format(t="events_all")).result_rows
    b = ch.query(query.format(t="events_rows")).result_rows
    assert len(a) > 2000 and a == b  # (resent uploads repeat ids: the table keeps one)
