"""The analyst SQL allowlist and the analyst session's limits, on real chDB (in this process).

Every table function of the ClickHouse in use is tried directly, nested (subquery, CTE,
join, IN) and inside ``eval``; every one outside the allowlist must be refused with a
reason. Limits are tried against a ``SETTINGS`` override the checker would refuse, run on
the session directly so the session itself is shown to hold them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
import pytest

from sinks.readonly import TABLE_FUNCTIONS, FunctionAllowlist, Limits, session_statements
from streams.query import AnalystSql, QueryError

LIMITS = Limits(max_rows=1000, max_result_bytes=10_000_000, max_execution_s=2.0,
                max_memory_bytes=200_000_000, max_read_bytes=2_000_000_000, max_threads=1)
# About 25 s on one core here: always past the 2 s limit.
HEAVY = ("SELECT count() FROM numbers(100000000) "
         "WHERE sipHash64(toString(number), 'salt') % 1000003 = 17")
EXPLICIT = ["filesystem", "file", "url", "s3", "remote", "executable", "input", "mysql",
            "postgresql", "jdbc", "odbc", "hdfs", "deltaLake", "deltaLakeS3", "iceberg",
            "icebergS3", "eval", "paimon", "bigquery", "arrowstream", "prometheusQuery",
            "timeSeriesData", "dictionary", "merge", "loop", "view"]


@pytest.fixture
def engine(ch: Any, chdb_dir: Path) -> Iterator[tuple[AnalystSql, Any]]:
    db = ch.database
    ch.command("CREATE TABLE events (rep_id String, ts DateTime64(3, 'UTC'), note String) "
               "ENGINE = MergeTree ORDER BY (rep_id, ts)")
    ch.command("CREATE VIEW reps AS SELECT DISTINCT rep_id FROM events")
    ch.insert("events", [["rep-1", 1_700_000_000, "hello"], ["rep-2", 1_700_000_100, "x"]],
              column_names=["rep_id", "ts", "note"])

    def open_session() -> Any:
        c = clickhouse_connect.get_client(dsn=f"chdb://{chdb_dir}", database=db)
        for stmt in session_statements(LIMITS):
            c.command(stmt)
        return c

    sql = AnalystSql(open_session, database=db, max_concurrent=2)
    yield sql, ch
    sql.close()


def rows(engine: AnalystSql, query: str) -> list[dict[str, Any]]:
    body, _ = engine.run(query, "json")
    return list(orjson.loads(body)["data"])


def refused(engine: AnalystSql, query: str) -> QueryError:
    with pytest.raises(QueryError) as exc:
        engine.run(query, "json")
    assert exc.value.status in (400, 403), (query, exc.value.code, str(exc.value))
    assert str(exc.value), query
    return exc.value


def test_every_table_function_outside_the_allowlist_is_refused(
        engine: tuple[AnalystSql, Any]) -> None:
    sql, ch = engine
    names = sorted(r[0] for r in ch.query("SELECT name FROM system.table_functions").result_rows)
    assert set(EXPLICIT) <= set(names), set(EXPLICIT) - set(names)
    forbidden = [n for n in names if n not in TABLE_FUNCTIONS]
    assert len(forbidden) > 80
    shapes = [
        "SELECT * FROM {f}{a}",
        "SELECT * FROM (SELECT * FROM {f}{a})",
        "WITH t AS (SELECT * FROM {f}{a}) SELECT * FROM t",
        "SELECT * FROM events AS e JOIN {f}{a} AS y ON 1 = 1",
        "SELECT * FROM events WHERE rep_id IN (SELECT * FROM {f}{a})",
        "SELECT * FROM `{f}`{a}",
        "SELECT * FROM eval('SELECT * FROM {f}{q}')",
        "EXPLAIN SELECT * FROM {f}{a}",
    ]
    not_refused = []
    for f in forbidden:
        for shape in shapes:
            a = {"view": "(SELECT 1)", "viewIfPermitted": "(SELECT 1 ELSE null('x Int8'))",
                 "viewExplain": "('EXPLAIN', '', (SELECT 1))"}.get(f, "('x')")
            q = shape.format(f=f, a=a, q=a.replace("'", "''"))
            try:
                sql.run(q, "json")
                not_refused.append(q)
            except QueryError as exc:
                if exc.status != 403 or not str(exc):
                    not_refused.append(f"{q} -> {exc.status} {exc.code}")
    assert not not_refused, not_refused[:20]
    print(f"RESULT security table_functions_refused={len(forbidden)} "
          f"queries={len(forbidden) * len(shapes)}")


def test_reason_names_the_table_function(engine: tuple[AnalystSql, Any]) -> None:
    err = refused(engine[0], "SELECT content FROM filesystem('/etc/passwd')")
    assert err.status == 403 and "filesystem" in str(err)
    err = refused(engine[0], "SELECT * FROM eval('SELECT 1')")
    assert "eval" in str(err)


@pytest.mark.parametrize("query, word", [
    ("SELECT file('/etc/passwd')", "file"),
    ("SELECT `file`('/etc/passwd')", "file"),
    ("SELECT FILE('/etc/passwd')", "FILE"),
    ("SELECT dictGet('d', 'a', 1)", "dictGet"),
    ("SELECT joinGet('t', 'a', 1)", "joinGet"),
    ("SELECT getSetting('max_result_rows')", "getSetting"),
    ("SELECT hostName()", "hostName"),
    ("SELECT hasColumnInTable('127.0.0.1', 'db', 't', 'c')", "hasColumnInTable"),
    ("SELECT sleepEachRow(1) FROM numbers(3)", "sleepEachRow"),
    ("SELECT aiGenerate('x')", "aiGenerate"),
    ("SELECT * FROM system.users", "system.users"),
    ("SELECT * FROM system.tables", "system.tables"),
    ("SELECT * FROM information_schema.tables", "information_schema"),
    ("SELECT 1 WHERE 'a' IN system.users", "system.users"),
    ("SELECT count() FROM events SETTINGS max_result_rows = 0", "SETTINGS"),
    ("SELECT count() FROM events FORMAT CSV", "format"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", "OUTFILE"),
    ("INSERT INTO events (rep_id) VALUES ('x')", "allowed"),
    ("SHOW TABLES FROM system", "SHOW TABLES"),
    ("SHOW PROCESSLIST", "allowed"),
    ("DESCRIBE system.users", "DESCRIBE"),
    ("DESCRIBE TABLE file('/etc/passwd')", "DESCRIBE"),
    ("SET readonly = 0", "allowed"),
    ("SELECT 1; SELECT 2", "one statement"),
])
def test_refused_with_a_reason(engine: tuple[AnalystSql, Any], query: str, word: str) -> None:
    err = refused(engine[0], query)
    assert word.lower() in str(err).lower(), str(err)


@pytest.mark.parametrize("query", [
    "SELECT rep_id, count() AS n FROM events GROUP BY rep_id ORDER BY rep_id",
    "WITH a AS (SELECT rep_id FROM events) SELECT count() FROM a JOIN reps USING rep_id",
    "SELECT sumIf(1, rep_id = 'rep-1'), uniqExactIf(rep_id, 1), argMaxState(ts, ts) IS NOT NULL"
    " FROM events",
    "SELECT quantile(0.5)(toUnixTimestamp(ts)), COUNT(*), max(ts) FROM events",
    "SELECT rep_id, row_number() OVER (PARTITION BY rep_id ORDER BY ts) FROM events",
    "SELECT CASE rep_id WHEN 'rep-1' THEN 1 ELSE 2 END, toDate(ts) - INTERVAL 1 DAY, "
    "arrayMap(x -> x + 1, [1, 2]), rep_id::String FROM events",
    "SELECT count() FROM events WHERE rep_id IN (SELECT rep_id FROM reps)",
    "SELECT number FROM numbers(10)", "SELECT * FROM system.one",
    "SELECT * FROM values('x UInt8', 1, 2)",
    "SHOW TABLES", "DESCRIBE events", "EXISTS TABLE events", "EXPLAIN SELECT * FROM events",
    "SELECT 1;",
])
def test_analyst_queries_are_allowed(engine: tuple[AnalystSql, Any], query: str) -> None:
    body, _ = engine[0].run(query, "jsonl")
    assert body is not None


def test_qualified_geotel_tables_and_results(engine: tuple[AnalystSql, Any]) -> None:
    sql, ch = engine
    got = rows(sql, f"SELECT rep_id FROM {ch.database}.events ORDER BY rep_id")
    assert [r["rep_id"] for r in got] == ["rep-1", "rep-2"]


def test_function_allowlist_covers_the_clickhouse_in_use(ch: Any) -> None:
    """An upgrade that adds functions makes this fail until they are reviewed
    (``python -m sinks.readonly review``); until then they are refused."""
    from sinks.readonly import unreviewed

    assert unreviewed(ch) == []
    allow = FunctionAllowlist.load()
    assert not allow.allows("file") and allow.allows("count") and allow.allows("sumIfState")
    assert not allow.allows("fileIf") and not allow.allows("dictGetOrNull")


# -- limits the query cannot change -------------------------------------------------------
def _session(engine: tuple[AnalystSql, Any]) -> Any:
    return engine[0]._session()


def test_rows_limit_holds_against_a_settings_override(engine: tuple[AnalystSql, Any]) -> None:
    err = refused(engine[0], f"SELECT number FROM numbers({LIMITS.max_rows + 1})")
    assert err.code == "too_many_rows"
    session = _session(engine)
    with pytest.raises(Exception, match=r"READONLY|readonly"):
        session.raw_query(f"SELECT number FROM numbers({LIMITS.max_rows + 1}) "
                          "SETTINGS max_result_rows = 0", fmt="JSON")
    with pytest.raises(Exception, match=r"READONLY|readonly"):
        session.command("SET max_result_rows = 0")


def test_time_limit_holds_against_a_settings_override(engine: tuple[AnalystSql, Any]) -> None:
    heavy = HEAVY
    t0 = time.monotonic()
    err = refused(engine[0], heavy)
    took = time.monotonic() - t0
    assert err.code == "timeout", str(err)
    assert took < LIMITS.max_execution_s + 3, took
    with pytest.raises(Exception, match=r"READONLY|readonly"):
        _session(engine).raw_query(heavy + " SETTINGS max_execution_time = 0", fmt="JSON")


def test_memory_limit_holds_against_a_settings_override(engine: tuple[AnalystSql, Any]) -> None:
    hog = "SELECT length(groupArray(randomString(1000))) FROM numbers(2000000)"
    err = refused(engine[0], hog)
    assert err.code in ("memory_limit", "timeout"), str(err)
    with pytest.raises(Exception, match=r"READONLY|readonly"):
        _session(engine).raw_query(hog + " SETTINGS max_memory_usage = 0", fmt="JSON")


def test_a_long_query_does_not_hold_up_inserts(engine: tuple[AnalystSql, Any]) -> None:
    sql, ch = engine
    heavy = HEAVY
    errors: list[str] = []
    started = threading.Event()

    def long_query() -> None:
        started.set()
        try:
            sql.run(heavy, "json")
        except QueryError as exc:
            errors.append(exc.code)

    t = threading.Thread(target=long_query)
    t.start()
    started.wait()
    time.sleep(0.3)
    waits = []
    for i in range(5):
        t0 = time.monotonic()
        ch.insert("events", [[f"rep-w{i}", 1_700_000_000 + i, ""]],
                  column_names=["rep_id", "ts", "note"])
        waits.append(time.monotonic() - t0)
        time.sleep(0.1)
    t.join()
    assert errors == ["timeout"]
    assert max(waits) < 1.0, waits
    print(f"RESULT security insert_during_long_query_max_s={max(waits):.3f}")


def test_more_queries_than_allowed_get_429(engine: tuple[AnalystSql, Any]) -> None:
    sql, _ = engine
    heavy = HEAVY
    def run_heavy() -> None:
        with pytest.raises(QueryError):
            sql.run(heavy, "json")

    threads = [threading.Thread(target=run_heavy) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    with pytest.raises(QueryError) as exc:
        sql.run("SELECT 1", "json")
    assert exc.value.status == 429
    for t in threads:
        t.join()
    assert sql.run("SELECT 1", "json")[0]  # slots come back
