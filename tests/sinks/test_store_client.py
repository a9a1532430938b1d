"""`geotel store` + StoreClient: rows round-trip with their ClickHouse types, retried batches
fold, errors carry ClickHouse's message. The store runs in this process, on the test's chDB."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sinks.clickhouse import connect
from sinks.migrations import migrate
from sinks.readonly import Limits, session_statements
from sinks.rows import EVENT_COLUMN_NAMES, REP_DAILY_COLUMN_NAMES, stored_event
from sinks.store_client import StoreClient, StoreClientError
from streams.query import AnalystSql, QueryError
from streams.store import Store, make_app
from tests.conftest import free_port

UTC = dt.UTC


@pytest.fixture
def served(ch: Any, chdb_dir: Path) -> Iterator[tuple[StoreClient, Any]]:
    migrate(ch)
    reader = connect(url=None, chdb_path=chdb_dir, database=ch.database)

    def analyst_session() -> Any:
        c = connect(url=None, chdb_path=chdb_dir, database=ch.database)
        for stmt in session_statements(Limits(10, 10_000_000, 5, 200_000_000, 10**9)):
            c.command(stmt)
        return c

    store = Store(ch, reader, AnalystSql(analyst_session, database=ch.database))
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(store))
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert ready.wait(10)
    client = connect(url=f"store://127.0.0.1:{port}", chdb_path=None, database=ch.database)
    try:
        yield client, ch  # type: ignore[misc]
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
        store.executor.shutdown()
        reader.close()


def _event(kind: str, **kw: Any) -> tuple[object, ...]:
    base: dict[str, Any] = {c: None for c in EVENT_COLUMN_NAMES}
    base.update(event_id=uuid.uuid4(), rep_id="rep-1", device_id="dev-1", kind=kind,
                ts=dt.datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC),
                received_at=dt.datetime(2025, 3, 4, 5, 6, 8, 2000, tzinfo=UTC),
                is_mock=False, notes="", form={}, tags=[], photo_count=0, photos="",
                order_lines="", geo_version=0)
    base.update(kw)
    return tuple(base[c] for c in EVENT_COLUMN_NAMES)


ROWS = [
    _event("ping", lat=52.520008, lon=13.404954, accuracy_m=7.5, speed_mps=1.25,
           heading_deg=None, battery_pct=81.0, provider="gps", is_mock=True,
           territory_id="T-1", region="north", in_assigned_territory=True,
           geo_account_id="A-9", geo_account_distance_m=12.5, geo_version=3),
    _event("check_in", action="start_visit", account_id="A-9", visit_id="v-1",
           lat=-33.8688, lon=151.2093, accuracy_m=20.0, in_assigned_territory=False),
    _event("visit_submission", account_id="A-9", visit_id="v-1",
           started_at=dt.datetime(2025, 3, 4, 9, 0, 0, 123000, tzinfo=UTC),
           ended_at=dt.datetime(2025, 3, 4, 9, 30, 0, 999000, tzinfo=UTC),
           outcome="order", notes="It's \"quoted\", \\ back\nslash, ünïcode ✓",
           form={"competitor": "Acme", "needs": '["a","b"]', "": "empty key"},
           tags=["vip", "ünï"], photo_count=2, photos='[{"id":"p1"}]',
           order_currency="EUR", order_total=Decimal("12345.6789"),
           order_lines='[{"sku":"x","qty":2}]'),
]


def _naive(v: Any) -> Any:
    return v.replace(tzinfo=None) if isinstance(v, dt.datetime) else v


def test_event_rows_round_trip_with_their_types(served: tuple[StoreClient, Any]) -> None:
    client, ch = served
    n = client.insert("events_all", ROWS, column_names=EVENT_COLUMN_NAMES,
                      settings={"async_insert": 0, "insert_deduplicate": 1,
                                "insert_deduplication_token": "t-1"})
    assert n == len(ROWS)
    cols = ", ".join(EVENT_COLUMN_NAMES)
    order = "ORDER BY kind"
    direct = ch.query(f"SELECT {cols} FROM events_all {order}").result_rows
    by_kind = {r[3]: r for r in ROWS}
    for got in direct:
        exp = by_kind[got[3]]
        for name, g, e in zip(EVENT_COLUMN_NAMES, got, exp, strict=True):
            if isinstance(e, float) and g is not None:
                assert g == pytest.approx(e, rel=1e-6), name  # Float32 columns
            else:
                assert _naive(g) == _naive(e), (name, g, e)
    # The same rows through the store's query, with the same Python types.
    through = client.query(f"SELECT {cols} FROM events_all {order}")
    assert through.column_names == tuple(EVENT_COLUMN_NAMES)
    assert through.result_rows == [tuple(r) for r in direct]
    assert isinstance(through.result_rows[0][0], uuid.UUID)
    sub = next(r for r in through.result_rows if r[3] == "visit_submission")
    assert sub[EVENT_COLUMN_NAMES.index("order_total")] == Decimal("12345.6789")
    assert sub[EVENT_COLUMN_NAMES.index("started_at")].microsecond == 123000
    # ... good enough for the sessions rebuild.
    ev = stored_event(dict(zip(through.column_names, sub, strict=True)))
    assert ev["ts"] == dt.datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    assert ev["form"]["needs"] == ["a", "b"] and ev["order"]["total"] == Decimal("12345.6789")


def test_a_retried_batch_is_a_no_op(served: tuple[StoreClient, Any]) -> None:
    client, ch = served
    s = {"async_insert": 0, "insert_deduplicate": 1, "insert_deduplication_token": "same"}
    rows = [_event("ping", lat=1.0, lon=2.0)]
    client.insert("events_all", rows, column_names=EVENT_COLUMN_NAMES, settings=s)
    client.insert("events_all", rows, column_names=EVENT_COLUMN_NAMES, settings=s)
    assert ch.query("SELECT count() FROM events_all").result_rows[0][0] == 1
    other = {**s, "insert_deduplication_token": "other"}
    client.insert("events_all", [_event("ping")], column_names=EVENT_COLUMN_NAMES,
                  settings=other)
    assert ch.query("SELECT count() FROM events_all").result_rows[0][0] == 2


def test_rep_daily_map_date_and_nullable_times(served: tuple[StoreClient, Any]) -> None:
    client, _ = served
    row: dict[str, Any] = {c: 0 for c in REP_DAILY_COLUMN_NAMES}
    row.update(day_id=uuid.uuid4(), rep_id="rep-1", local_date=dt.date(2025, 3, 4),
               tz="Europe/Berlin", workday_start=dt.datetime(2025, 3, 4, 7, 0, 0, 5000,
                                                             tzinfo=UTC),
               workday_end=None, workday_start_inferred=True, workday_end_inferred=False,
               workday_s=3600.5, pings_dropped={"jump": 3, "accuracy": 7}, version=42)
    client.insert("rep_daily_all", [tuple(row[c] for c in REP_DAILY_COLUMN_NAMES)],
                  column_names=REP_DAILY_COLUMN_NAMES, settings={"async_insert": 0})
    got = client.query("SELECT * FROM rep_daily").named_results()[0]
    assert got["local_date"] == dt.date(2025, 3, 4)
    assert got["workday_start"] == dt.datetime(2025, 3, 4, 7, 0, 0, 5000)
    assert got["workday_end"] is None and got["workday_start_inferred"] is True
    assert got["pings_dropped"] == {"jump": 3, "accuracy": 7} and got["version"] == 42


def test_migrations_through_the_store_are_idempotent(served: tuple[StoreClient, Any]) -> None:
    client, _ = served
    assert migrate(client) == []  # type: ignore[arg-type]


def test_raw_command_and_errors(served: tuple[StoreClient, Any]) -> None:
    client, ch = served
    assert client.raw_query("SELECT 1 AS x", fmt="JSONEachRow").strip() == b'{"x":1}'
    client.command("CREATE TABLE IF NOT EXISTS scratch (x UInt8) ENGINE = Memory")
    assert client.command("SELECT 7") in (7, "7")
    with pytest.raises(StoreClientError) as err:
        client.query("SELECT * FROM no_such_table")
    assert "UNKNOWN_TABLE" in str(err.value) and err.value.status == 400
    # Analyst queries are checked and run by the store, in its analyst sessions; refusals
    # and ClickHouse's limits come back with their codes.
    body, _ = client.analyst("SELECT count() AS n FROM events", "jsonl")
    assert body.strip() == b'{"n":"0"}' or body.strip() == b'{"n":0}'
    with pytest.raises(QueryError) as qerr:
        client.analyst("SELECT number FROM system.numbers LIMIT 100", "json")
    assert qerr.value.code == "too_many_rows"
    with pytest.raises(QueryError) as qerr:
        client.analyst("SELECT * FROM file('/etc/passwd')", "json")
    assert qerr.value.status == 403 and "file" in str(qerr.value)
    # readonly ran on the store's analyst sessions: writes still work afterwards.
    client.insert("events_all", [_event("ping")], column_names=EVENT_COLUMN_NAMES,
                  settings={"async_insert": 0})
    assert ch.query("SELECT count() FROM events_all").result_rows[0][0] == 1
