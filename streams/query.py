"""Read-only SQL for analysts: the engine behind ``POST /v1/sql`` and ``geotel sql``.

Two walls stand between a query and anything outside the geotel database:

1. :func:`sinks.readonly.check_query` accepts a statement only when ClickHouse's own parser
   shows allowed tables, table functions and functions, and no SETTINGS/FORMAT/INTO OUTFILE
   clause (an allowlist: what a later ClickHouse adds is refused until reviewed);
2. the statement runs in an *analyst session*: a connection of its own whose limits (rows,
   result bytes, time, memory, bytes read, threads) were set before ``readonly=1``, so no
   ``SETTINGS`` clause or ``SET`` can lift them. On a ClickHouse server the analyst user's
   settings profile holds the same limits (deploy/clickhouse/analyst-user.sql).

Analyst sessions are separate connections from the writer's: a query, however long, never
waits on the intake's inserts or makes them wait (chDB runs queries of different
connections concurrently). At most ``query.max_concurrent`` run at once; more get 429.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from sinks.readonly import FunctionAllowlist, Limits, QueryError, check_query

__all__ = ["FORMATS", "AnalystSql", "Limits", "QueryError", "limits_from"]

FORMATS: dict[str, tuple[str, str]] = {
    # name -> (ClickHouse output format, content type)
    "json": ("JSON", "application/json"),
    "jsonl": ("JSONEachRow", "application/x-ndjson"),
    "csv": ("CSVWithNames", "text/csv"),
    "tsv": ("TSVWithNames", "text/tab-separated-values"),
    "parquet": ("Parquet", "application/vnd.apache.parquet"),
    "table": ("PrettyCompactMonoBlock", "text/plain"),
}
_TABLES_TTL_S = 5.0


def limits_from(q: Any) -> Limits:
    """The :class:`Limits` of ``settings.query``."""
    return Limits(max_rows=q.max_rows, max_result_bytes=q.max_result_bytes,
                  max_execution_s=q.max_execution_s, max_memory_bytes=q.max_memory_bytes,
                  max_read_bytes=q.max_read_bytes, max_threads=q.max_threads)


def _classify(exc: Exception) -> QueryError:
    msg = str(exc)
    code, status = "query_failed", 400
    if "READONLY" in msg or "ACCESS_DENIED" in msg:
        code, status = "not_allowed", 403
    elif "TIMEOUT_EXCEEDED" in msg:
        code = "timeout"
    elif "TOO_MANY_ROWS" in msg or "TOO_MANY_BYTES" in msg:
        code = "too_many_rows"
    elif "MEMORY_LIMIT_EXCEEDED" in msg:
        code = "memory_limit"
    return QueryError(code, msg[:2000], status)


class AnalystSql:
    """Checks and runs analyst queries on a pool of analyst sessions.

    ``open_session()`` returns a clickhouse-connect client already in analyst mode (see
    :func:`streams.storage.open_analyst_session`); sessions are opened lazily, at most
    ``max_concurrent``, and reused. :meth:`run` blocks: call it from an executor.
    """

    def __init__(self, open_session: Callable[[], Any], *, database: str,
                 max_concurrent: int = 2, functions: FunctionAllowlist | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._open = open_session
        self.database = database
        self.functions = functions or FunctionAllowlist.load()
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._clock = clock
        self._tables: tuple[float, set[str], set[str]] = (-1e18, set(), set())
        self.running = 0

    def _session(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            s = self._open()
            with self._lock:
                self._all.append(s)
            return s

    def _catalogue(self, session: Any) -> tuple[set[str], set[str]]:
        at, tables, dbs = self._tables
        if self._clock() - at > _TABLES_TTL_S:
            # One row each: the session's own row limit applies to these too.
            row = session.query(
                "SELECT (SELECT groupArray(name) FROM system.tables "
                "WHERE database = currentDatabase()), "
                "(SELECT groupArray(name) FROM system.databases)").result_rows[0]
            tables, dbs = {str(n) for n in row[0]}, {str(n) for n in row[1]}
            self._tables = (self._clock(), tables, dbs)
        return tables, dbs

    def run(self, sql: str, fmt: str = "json") -> tuple[bytes, str]:
        """Run one read-only query; return (body, content type) or raise QueryError."""
        if fmt not in FORMATS:
            raise QueryError("bad_format", f"format must be one of {', '.join(FORMATS)}")
        if not self._slots.acquire(blocking=False):
            raise QueryError("busy", "as many queries as allowed are running; retry later",
                             status=429)
        session = None
        healthy = False
        try:
            session = self._session()
            self.running += 1
            tables, dbs = self._catalogue(session)

            def parse(text: str) -> dict[str, Any]:
                res = session.query("SELECT parseQueryToJSON({q:String})",
                                    parameters={"q": text})
                return dict(orjson.loads(res.result_rows[0][0]))

            checked = check_query(sql, parse=parse, database=self.database, tables=tables,
                                  functions=self.functions, databases=dbs)
            ch_fmt, ctype = FORMATS[fmt]
            try:
                body = session.raw_query(checked.sql, fmt=ch_fmt)
            except Exception as exc:
                raise _classify(exc) from exc
            healthy = True
            return bytes(body), ctype
        except QueryError:
            raise
        except Exception as exc:
            raise _classify(exc) from exc
        finally:
            if session is not None:
                self.running -= 1
                if healthy:
                    self._idle.put(session)
                else:
                    # A query that failed part-way can leave its output in the connection,
                    # where the next query would read it: never reuse such a session.
                    self._discard(session)
            self._slots.release()

    def _discard(self, session: Any) -> None:
        with self._lock:
            if session in self._all:
                self._all.remove(session)
        with contextlib.suppress(Exception):
            session.close()

    def close(self) -> None:
        with self._lock:
            sessions, self._all = self._all, []
        for s in sessions:
            with contextlib.suppress(Exception):  # closing on shutdown
                s.close()
