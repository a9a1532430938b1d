"""`geotel store`: one process owns the embedded chDB and serves it to several workers.

A chDB directory can be opened by one process only, so in the embedded profile N worker
processes cannot each open it. The store opens it once (and runs the migrations) and
answers on 127.0.0.1 with the few calls the pipeline makes of a ClickHouse client
(:class:`sinks.store_client.StoreClient`, selected with ``clickhouse.url=store://host:port``):

* ``POST /insert?table=T&columns=a,b,c&settings={json}`` with a JSONEachRow body: one
  insert, with the caller's ``insert_deduplication_token`` (so a retried batch is a no-op,
  exactly as against a server);
* ``POST /query`` ``{"sql", "settings"}`` -> ``{"columns", "types", "rows"}``: values JSON
  cannot carry (times, dates, UUIDs, decimals) as text, decoded back by the client from the
  column types;
* ``POST /raw`` ``{"sql", "fmt", "settings"}`` -> the bytes of the output format;
* ``POST /command`` ``{"sql", "settings"}`` -> ``{"result"}``;
* ``GET /health``.

Every call runs on one thread under one lock (chDB is not safe from several threads).
Queries that set ``readonly`` (the SQL endpoint of the workers) run on a second chDB
client, because chDB keeps ``readonly`` on a client's session once a query set it.
Errors answer 400 (the statement failed) or 500 with ``{"error", "message"}``, the message
being ClickHouse's own, so callers can match its error codes. Only for one machine: there is
no authentication, so it binds to 127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
import decimal
import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
from aiohttp import web

from streams.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
MAX_BODY_BYTES = 512 * 1024 * 1024
DEFAULT_PORT = 6067
# Rows arrive as JSON: ISO times with a zone or 'T', decimals as text.
INSERT_SETTINGS = {"date_time_input_format": "best_effort"}


def _default(v: Any) -> Any:
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, set | frozenset | tuple):
        return list(v)
    if isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(v)
    raise TypeError(f"cannot serialise {type(v).__name__}")


def encode_rows(rows: Any) -> bytes:
    return orjson.dumps(rows, default=_default,
                        option=orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_NON_STR_KEYS)


class StoreError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Store:
    """The chDB clients and the lock that serialises them."""

    def __init__(self, writer: Any, reader: Any, analyst: Any = None) -> None:
        self.writer = writer
        self.reader = reader
        self.analyst = analyst  # streams.query.AnalystSql: its own sessions and threads
        self.lock = threading.Lock()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb")
        self.calls = 0
        self.inserted_rows = 0
        self.busy_s = 0.0
        self.started = time.monotonic()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()

        def call() -> T:
            with self.lock:
                t0 = time.perf_counter()
                try:
                    return fn(*args)
                finally:
                    self.busy_s += time.perf_counter() - t0
                    self.calls += 1

        return await loop.run_in_executor(self.executor, call)

    def _client(self, settings: dict[str, Any]) -> Any:
        return self.reader if "readonly" in settings else self.writer

    # -- the calls (on the chDB thread) --------------------------------------------------
    def insert(self, table: str, columns: list[str], body: bytes,
               settings: dict[str, Any]) -> int:
        merged = {**INSERT_SETTINGS, **settings}
        self.writer.raw_insert(table, columns, insert_block=body, settings=merged,
                               fmt="JSONEachRow")
        n = body.count(b"\n") + (0 if body.endswith(b"\n") else 1) if body else 0
        self.inserted_rows += n
        return n

    def query(self, sql: str, settings: dict[str, Any]) -> bytes:
        res = self._client(settings).query(sql, settings=settings or None)
        types = [t.name for t in res.column_types]
        return encode_rows({"columns": list(res.column_names), "types": types,
                            "rows": res.result_rows})

    def raw(self, sql: str, fmt: str, settings: dict[str, Any]) -> bytes:
        return bytes(self._client(settings).raw_query(sql, fmt=fmt, settings=settings or None))

    def command(self, sql: str, settings: dict[str, Any]) -> Any:
        out = self.writer.command(sql, settings=settings or None)
        return out if isinstance(out, str | int | float) or out is None else str(out)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        for c in (self.reader, self.writer):
            try:
                c.close()
            except Exception:
                log.debug("closing a chDB client failed", exc_info=True)


def _settings_arg(raw: Any) -> dict[str, Any]:
    if raw in (None, ""):
        return {}
    if isinstance(raw, str | bytes):
        raw = orjson.loads(raw)
    if not isinstance(raw, dict):
        raise StoreError(400, "settings must be a JSON object")
    return raw


def _error(exc: Exception) -> web.Response:
    if isinstance(exc, StoreError):
        status, kind = exc.status, "bad_request"
    elif isinstance(exc, orjson.JSONDecodeError | ValueError | KeyError | TypeError):
        status, kind = 400, "bad_request"
    else:
        # A ClickHouse error of the statement (its message carries the code), or the engine.
        status, kind = 400, "clickhouse"
        if isinstance(exc, MemoryError | OSError):
            status, kind = 500, "internal"
    return web.json_response({"error": kind, "message": str(exc)[:20_000],
                              "type": type(exc).__name__}, status=status)


def make_app(store: Store) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)

    async def insert(request: web.Request) -> web.Response:
        try:
            table = request.query.get("table", "")
            if not _IDENT.match(table):
                raise StoreError(400, f"bad table name {table!r}")
            cols = [c for c in request.query.get("columns", "").split(",") if c]
            if not cols or not all(_IDENT.match(c) for c in cols):
                raise StoreError(400, "columns: a comma-separated list of column names")
            settings = _settings_arg(request.query.get("settings"))
            token = request.query.get("token")
            if token:
                settings["insert_deduplication_token"] = token
            body = await request.read()
            n = await store.run(store.insert, table, cols, body, settings)
        except Exception as exc:
            return _error(exc)
        return web.json_response({"rows": n})

    async def _json(request: web.Request) -> dict[str, Any]:
        doc = orjson.loads(await request.read())
        if not isinstance(doc, dict) or not isinstance(doc.get("sql"), str):
            raise StoreError(400, 'body: {"sql": "...", "settings": {...}}')
        return doc

    async def query(request: web.Request) -> web.Response:
        try:
            doc = await _json(request)
            body = await store.run(store.query, doc["sql"], _settings_arg(doc.get("settings")))
        except Exception as exc:
            return _error(exc)
        return web.Response(body=body, content_type="application/json")

    async def raw(request: web.Request) -> web.Response:
        try:
            doc = await _json(request)
            fmt = str(doc.get("fmt") or "TabSeparated")
            if not _IDENT.match(fmt):
                raise StoreError(400, f"bad format {fmt!r}")
            body = await store.run(store.raw, doc["sql"], fmt, _settings_arg(doc.get("settings")))
        except Exception as exc:
            return _error(exc)
        return web.Response(body=body, content_type="application/octet-stream")

    async def command(request: web.Request) -> web.Response:
        try:
            doc = await _json(request)
            out = await store.run(store.command, doc["sql"], _settings_arg(doc.get("settings")))
        except Exception as exc:
            return _error(exc)
        return web.json_response({"result": out})

    async def analyst(request: web.Request) -> web.Response:
        from streams.query import QueryError

        try:
            doc = orjson.loads(await request.read())
            sql, fmt = doc["sql"], doc.get("format", "json")
            if store.analyst is None:
                raise QueryError("no_store", "this store serves no analyst queries", 503)
            loop = asyncio.get_running_loop()
            body, ctype = await loop.run_in_executor(None, store.analyst.run, sql, fmt)
        except QueryError as exc:
            return web.json_response({"error": exc.code, "message": f"{exc.code}\t{exc}"},
                                     status=exc.status)
        except Exception as exc:
            return _error(exc)
        return web.Response(body=body, content_type=ctype.split(";")[0])

    async def health(request: web.Request) -> web.Response:
        up = time.monotonic() - store.started
        return web.json_response({"status": "ok", "calls": store.calls,
                                  "inserted_rows": store.inserted_rows,
                                  "busy_s": round(store.busy_s, 3), "uptime_s": round(up, 1)})

    app.router.add_post("/insert", insert)
    app.router.add_post("/query", query)
    app.router.add_post("/raw", raw)
    app.router.add_post("/command", command)
    app.router.add_post("/analyst", analyst)
    app.router.add_get("/health", health)
    return app


def open_store(settings: Settings) -> Store:
    """Open chDB under ``data_dir/chdb`` (whatever ``clickhouse.url`` says: the workers point
    it at this store) and run the migrations."""
    from streams.storage import analyst_sql, open_clickhouse

    local = settings.model_copy(update={
        "clickhouse": settings.clickhouse.model_copy(update={"url": None})})
    writer = open_clickhouse(local)
    reader = open_clickhouse(local, run_migrations=False)
    return Store(writer, reader, analyst_sql(local))


def run_store(settings: Settings, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> int:
    from schemas.errors import GeotelError
    from streams.settings import is_loopback
    from streams.storage import prepare_data_dir

    if not is_loopback(host):
        raise GeotelError(f"geotel store has no authentication: it binds a loopback address "
                          f"only, not {host}")
    prepare_data_dir(settings)
    store = open_store(settings)
    log.info("store: chDB %s served on http://%s:%d", settings.chdb_path, host, port)
    try:
        web.run_app(make_app(store), host=host, port=port, print=None,
                    handle_signals=True, shutdown_timeout=5)
    finally:
        store.close()
        if store.analyst is not None:
            store.analyst.close()
    return 0


__all__ = ["DEFAULT_PORT", "Store", "encode_rows", "make_app", "open_store", "run_store"]
