"""The writer against a client that fails on purpose (pure unit), and against real chDB."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from schemas.events import EVENT_ADAPTER
from sinks.migrations import MIGRATIONS, migrate
from sinks.rows import EVENT_COLUMN_NAMES, event_row
from sinks.writer import ClickHouseWriter


class FlakyClient:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.inserts: list[tuple[str, int, str]] = []

    def insert(self, table: str, rows: list, column_names: list, settings: dict) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("ClickHouse is down")
        self.inserts.append((table, len(rows), settings["insert_deduplication_token"]))


def test_flush_retries_with_backoff_until_stored() -> None:
    client = FlakyClient(failures=5)
    sleeps: list[float] = []
    w = ClickHouseWriter(client, retry_initial_s=0.5, retry_max_s=3, sleep=sleeps.append)
    w.add_many("t", ["a"], [(1,), (2,)], ("raw", 0), 10, 11)
    w.add_many("t", ["a"], [(3,)], ("raw", 1), 5, 5)
    assert w.flush() == 3
    assert sleeps == [0.5, 1, 2, 3, 3]
    assert client.inserts[0][:2] == ("t", 3)
    assert client.inserts[0][2].startswith("t|raw/0/10-11,raw/1/5-5|")
    assert not w.degraded and w.stats.failures == 5 and w.pending_rows == 0


def test_degraded_while_failing() -> None:
    client = FlakyClient(failures=1)
    seen: list[bool] = []
    w = ClickHouseWriter(client, sleep=lambda s: seen.append(w.degraded))
    w.add("t", ["a"], (1,), ("raw", 0), 1)
    w.flush()
    assert seen == [True] and not w.degraded


def test_token_names_content_not_only_offsets() -> None:
    client = FlakyClient(failures=0)
    w = ClickHouseWriter(client)
    w.add("t", ["a"], (uuid.uuid4(),), ("raw", 0), 0)
    w.flush()
    w.add("t", ["a"], (uuid.uuid4(),), ("raw", 0), 0)  # same offsets, other content
    w.flush()
    assert client.inserts[0][2] != client.inserts[1][2]


def _events(n: int) -> list[Any]:
    ts = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)
    return [EVENT_ADAPTER.validate_python({
        "event_id": str(uuid.uuid4()), "device_id": "d", "rep_id": "r", "kind": "ping",
        "ts": ts + dt.timedelta(seconds=i), "lat": 52.0, "lon": 13.0}) for i in range(n)]


@pytest.mark.integration
def test_migrations_are_idempotent_on_empty_and_populated_store(ch: Any) -> None:
    assert migrate(ch) == [m.version for m in MIGRATIONS]
    tables = ch.query("SELECT name, create_table_query FROM system.tables "
                      "WHERE database = currentDatabase() ORDER BY name").result_rows
    assert migrate(ch) == []
    evs = _events(10)
    ch.insert("events_all", [event_row(e, e.ts) for e in evs], column_names=EVENT_COLUMN_NAMES)
    assert migrate(ch) == []
    assert ch.query("SELECT name, create_table_query FROM system.tables "
                    "WHERE database = currentDatabase() ORDER BY name").result_rows == tables
    assert ch.command("SELECT count() FROM events") == 10


@pytest.mark.integration
def test_retried_batch_is_stored_once_and_events_view_folds_resends(ch: Any) -> None:
    migrate(ch)
    evs = _events(100)
    w = ClickHouseWriter(ch)
    rows = [event_row(e, e.ts) for e in evs]
    for _ in range(3):  # the same batch written three times (a retried flush)
        w.add_many("events_all", EVENT_COLUMN_NAMES, rows, ("raw", 0), 0, 9)
        w.flush()
    assert ch.command("SELECT count() FROM events_all") == 100
    # A re-sent upload arrives at other offsets: folded by the table's key, seen once.
    w.add_many("events_all", EVENT_COLUMN_NAMES, rows[:40], ("raw", 1), 50, 59)
    w.flush()
    assert ch.command("SELECT count() FROM events") == 100


@pytest.mark.integration
def test_rollups_are_safe_against_reinserted_batches(ch: Any) -> None:
    from schemas.derived import Enrichment

    migrate(ch)
    evs = _events(50)
    geo = Enrichment(territory_id="T01", region="R1", geo_version=1)
    rows = [event_row(e, e.ts, geo) for e in evs]
    w = ClickHouseWriter(ch)
    for part in range(3):  # the same events re-inserted at other offsets (a replay)
        w.add_many("events_all", EVENT_COLUMN_NAMES, rows, ("raw", part), 0, 49)
        w.flush()
    pos = ch.query("SELECT rep_id, toString(ts), territory_id FROM rep_last_position"
                   ).result_rows
    assert pos == [("r", "2026-11-02 08:00:49.000", "T01")]
    hourly = ch.query("SELECT territory_id, active_reps, pings FROM territory_hourly"
                      ).result_rows
    assert hourly == [("T01", 1, 50)]


@pytest.mark.integration
def test_events_view_keeps_the_first_received_copy(ch: Any) -> None:
    migrate(ch)
    ev = _events(1)[0]
    first, later = ev.ts + dt.timedelta(seconds=5), ev.ts + dt.timedelta(hours=2)
    w = ClickHouseWriter(ch)
    w.add_many("events_all", EVENT_COLUMN_NAMES, [event_row(ev, later)], ("raw", 0), 9, 9)
    w.flush()
    w.add_many("events_all", EVENT_COLUMN_NAMES, [event_row(ev, first)], ("raw", 0), 3, 3)
    w.flush()
    got = ch.query("SELECT received_at FROM events").result_rows
    assert [r[0].replace(tzinfo=dt.UTC) for r in got] == [first]


def _columns(evs: list[Any]) -> Any:
    """The events as the worker's columnar batch (what the intake inserts)."""
    import orjson

    from processors.intake import TimeLimits
    from processors.intake_columns import IntakeBatch

    batch = IntakeBatch(TimeLimits(1e300, 1e300))
    batch.add(orjson.dumps({"events": [e.model_dump(mode="json") for e in evs]}),
              evs[0].ts)
    cols, rejects = batch.build()
    assert not rejects and len(cols) == len(evs)
    return cols.store_table()


def test_arrow_batches_get_the_token_rows_with_the_same_ids_get() -> None:
    # (the ids as text, as the worker's row path had them: a batch written before and
    # retried after an upgrade is still the same block)
    evs = _events(5)
    rows_client, arrow_client = FlakyClient(failures=0), FlakyClient(failures=0)
    w = ClickHouseWriter(rows_client)
    rows = [(str(e.event_id), *event_row(e, e.ts)[1:]) for e in evs]
    w.add_many("t", EVENT_COLUMN_NAMES, rows, ("raw", 0), 3, 7)
    w.flush()
    w = ClickHouseWriter(arrow_client)  # not a clickhouse-connect Client: rows are sent
    table = _columns(evs)
    w.add_arrow("t", table.slice(0, 2), {("raw", 0): (3, 4)})
    w.add_arrow("t", table.slice(2), {("raw", 0): (5, 7)})
    assert w.pending_rows == 5
    assert w.flush() == 5
    assert arrow_client.inserts == rows_client.inserts


@pytest.mark.integration
def test_retried_arrow_batch_is_stored_once(ch: Any) -> None:
    migrate(ch)
    evs = _events(100)
    w = ClickHouseWriter(ch)
    table = _columns(evs)
    for _ in range(3):  # the same batch written three times (a retried flush)
        w.add_arrow("events_all", table, {("raw", 0): (0, 9)})
        w.flush()
    assert ch.command("SELECT count() FROM events_all") == 100
    w.add_arrow("events_all", table.slice(0, 40), {("raw", 1): (50, 59)})  # a resend
    w.flush()
    assert ch.command("SELECT count() FROM events_all") == 140
    assert ch.command("SELECT count() FROM events") == 100
