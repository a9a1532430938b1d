"""`geotel reps export/erase` against chDB with the service stopped."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.records import SegmentKind
from sinks.clickhouse import connect
from sinks.migrations import migrate
from sinks.readonly import Limits, session_statements
from streams.devices import Journal, issue
from streams.query import AnalystSql
from streams.reps import EXPORT_TABLES, erase_rep, export_rep, rep_devices, revocations
from tests.conftest import GEOTEL, ROOT, free_port
from tests.privacy.privacy_data import insert_day, insert_events, local, pings, seg, summary

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)


def _fill(ch: Any) -> None:
    migrate(ch)
    for rep in ("r1", "r2"):
        insert_events(ch, pings(rep, every_min=60))
        insert_day(ch, summary(rep, start=local(8), end=local(17), version=24),
                   [seg(SegmentKind.stop, local(9), local(10), rep=rep, version=24)])
    ch.command("INSERT INTO deadletters (at, reason, detail, source_topic, rep_id, payload) "
               "VALUES (now64(3), 'too_late', 'x', 'telemetry.enriched', 'r1', '{}')",
               settings={"async_insert": 0})
    ch.command("INSERT INTO rep_territories_all (rep_id, territory_id, geo_version) VALUES "
               "('r1', 'T1', 1), ('r1', 'T2', 1), ('r2', 'T1', 1)", settings={"async_insert": 0})
    ch.command("INSERT INTO reps_all (rep_id, name, team, manager, tz, geo_version) VALUES "
               "('r1', 'Rep One', 'North', 'Boss', 'Europe/Berlin', 1), "
               "('r2', 'Rep Two', 'North', 'Boss', NULL, 1)", settings={"async_insert": 0})
    ch.command("INSERT INTO alerts_all (alert_id, state, rule, rep_id, local_date, at, detail) "
               "VALUES (generateUUIDv4(), 'raised', 'long_break', 'r1', today(), now64(3), "
               "'{}')", settings={"async_insert": 0})


def test_export_then_erase_leaves_other_reps(ch: Any, chdb_dir: Path) -> None:
    _fill(ch)
    db = ch.query("SELECT currentDatabase()").result_rows[0][0]

    def analyst_session() -> Any:  # readonly sticks to a client: one of its own
        c = connect(url=None, chdb_path=chdb_dir, database=db)
        for stmt in session_statements(Limits(1000, 10**8, 30, 10**9, 10**10)):
            c.command(stmt)
        return c

    analyst = AnalystSql(analyst_session, database=db)
    _, dev = issue("dev-r1", "r1", NOW)
    _, other = issue("dev-r2", "r2", NOW)

    def run(sql: str) -> bytes:
        return analyst.run(sql, "jsonl")[0]

    out = io.BytesIO()
    counts = export_rep(run, "r1", out, page_rows=7, devices=rep_devices([dev, other], "r1"))
    lines = [orjson.loads(ln) for ln in out.getvalue().splitlines()]
    assert counts == {"events_all": 24, "deadletters": 1, "rep_daily_all": 1,
                      "segments_all": 1, "transitions_all": 0, "visit_forms": 0,
                      "rep_last_position": 1, "rep_territories_all": 2,
                      "reps_all": 1, "alerts_all": 1, "closed_rep_days": 0, "devices": 1,
                      "places": 0}
    assert len(lines) == sum(counts.values())
    assert {ln["table"] for ln in lines} == {t for t, n in counts.items() if n}
    assert all(ln["rep_id"] == "r1" for ln in lines)
    assert len({ln["event_id"] for ln in lines if ln["table"] == "events_all"}) == 24
    assert "token_hash" not in lines[-1] and lines[-1]["device_id"] == "dev-r1"

    hourly = ch.query("SELECT territory_id, hour, active_reps, pings FROM territory_hourly "
                      "ORDER BY hour").result_rows
    assert {r[2] for r in hourly} == {2}
    removed = erase_rep(ch, "r1")
    assert removed == {"events_all": 24, "deadletters": 1, "rep_daily_all": 1,
                       "segments_all": 1, "segments_current": 1, "visits_current": 0,
                       "closed_rep_days": 0, "transitions_all": 0,
                       "transitions_current": 0, "visit_forms": 0,
                       "rep_last_position_agg": 1, "rep_territories_all": 2,
                       "reps_all": 1, "alerts_all": 1, "territory_hourly_agg": 24}
    for table, _ in EXPORT_TABLES:
        assert ch.command(f"SELECT count() FROM {table} WHERE rep_id = 'r1'") == 0
        if table not in ("deadletters", "transitions_all", "visit_forms", "closed_rep_days",
                         "alerts_all"):
            assert ch.command(f"SELECT count() FROM {table} WHERE rep_id = 'r2'") > 0
    after = ch.query("SELECT territory_id, hour, active_reps, pings FROM territory_hourly "
                     "ORDER BY hour").result_rows
    assert [(r[0], r[1], r[2], r[3]) for r in after] == [(r[0], r[1], 1, r[3] // 2)
                                                         for r in hourly]
    assert erase_rep(ch, "r1")["events_all"] == 0  # idempotent
    assert revocations([dev, other], "r1")[0].revoked
    assert revocations([dev.model_copy(update={"revoked": True})], "r1") == []


def test_cli_export_and_erase_with_the_service_stopped(tmp_path: Path) -> None:
    env = {**os.environ, "GEOTEL_DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT),
           "GEOTEL_WEB_PORT": str(free_port()),
           "GEOTEL_KAFKA__EMBEDDED_PORT": str(free_port())}
    setup = textwrap.dedent(f"""
        import datetime as dt
        from pathlib import Path
        from sinks.clickhouse import connect
        from streams.devices import Journal, issue
        from tests.privacy.test_reps_export_erase import _fill
        ch = connect(url=None, chdb_path=Path({str(tmp_path / 'var' / 'chdb')!r}),
                     database="geotel")
        _fill(ch)
        now = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)
        Journal(Path({str(tmp_path / 'var' / 'devices.jsonl')!r})).append(
            [issue("dev-r1", "r1", now)[1], issue("dev-r2", "r2", now)[1]])
    """)
    subprocess.run([sys.executable, "-c", setup], env=env, cwd=ROOT, check=True, timeout=120)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GEOTEL, *args], env=env, cwd=ROOT, text=True,
                              capture_output=True, timeout=120)

    out = tmp_path / "r1.jsonl"
    r = cli("reps", "export", "r1", "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert "from the store (service stopped)" in r.stderr
    tables = [orjson.loads(ln)["table"] for ln in out.read_bytes().splitlines()]
    assert tables.count("events_all") == 24 and tables.count("devices") == 1

    r = cli("reps", "erase", "r1")
    assert r.returncode == 2 and "--yes" in r.stderr
    r = cli("reps", "erase", "r1", "--yes")
    assert r.returncode == 0, r.stderr
    assert "device tokens revoked: 1" in r.stdout
    assert "events_all: 24 rows" in r.stdout and "(directly)" in r.stdout
    revoked = [rec for rec in Journal(tmp_path / "var" / "devices.jsonl").read() if rec.revoked]
    assert [(x.device_id, x.rep_id) for x in revoked] == [("dev-r1", "r1")]

    r = cli("reps", "export", "r1")
    assert r.returncode == 0, r.stderr
    lines = [orjson.loads(ln) for ln in r.stdout.splitlines()]
    assert [ln["table"] for ln in lines] == ["devices"] and lines[0]["revoked"] is True
    r = cli("reps", "export", "r2")
    assert sum(1 for ln in r.stdout.splitlines() if b"events_all" in ln.encode()) == 24
    assert cli("reps", "export", "bad id!").returncode == 1
