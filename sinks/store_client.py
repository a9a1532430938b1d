"""A ClickHouse client that talks to `geotel store` (streams/store.py) over HTTP.

It implements what geotel uses of a clickhouse-connect ``Client``: ``insert``, ``query``
(``.result_rows``, ``.column_names``), ``raw_query``, ``command`` and ``close``, so several
worker processes on one machine share one embedded chDB. Synchronous, like the driver: the
callers run it on their executor threads. Selected by ``clickhouse.url=store://host:port``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sinks.exceptions import SinkError

_OPTS = (orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
         | orjson.OPT_PASSTHROUGH_SUBCLASS)


class StoreClientError(SinkError):
    """A call the store answered with an error; ``str()`` is ClickHouse's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _default(v: Any) -> Any:
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, set | frozenset | tuple):
        return list(v)
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8", "replace")
    return str(v)


def to_json_each_row(rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> bytes:
    """Rows (tuples in ``columns`` order) as JSONEachRow lines."""
    cols = list(columns)
    out = bytearray()
    for r in rows:
        if len(r) != len(cols):
            raise SinkError(f"a row has {len(r)} values for {len(cols)} columns")
        out += orjson.dumps(dict(zip(cols, r, strict=True)), default=_default, option=_OPTS)
        out += b"\n"
    return bytes(out)


# -- values back from JSON, by ClickHouse type ---------------------------------------------
_WRAP = re.compile(r"^(Nullable|LowCardinality)\((.*)\)$")


def _parse_dt(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    return dt.datetime.fromisoformat(v)


def _decoder(ch_type: str) -> Callable[[Any], Any] | None:
    t = ch_type.strip()
    m = _WRAP.match(t)
    while m:
        t = m.group(2).strip()
        m = _WRAP.match(t)
    if t.startswith(("DateTime64", "DateTime")):
        return _parse_dt
    if t in ("Date", "Date32"):
        return lambda v: dt.date.fromisoformat(v) if isinstance(v, str) else v
    if t == "UUID":
        return lambda v: uuid.UUID(v) if isinstance(v, str) else v
    if t.startswith("Decimal"):
        return lambda v: decimal.Decimal(v) if isinstance(v, str | int | float) else v
    if t.startswith("Array(") and t.endswith(")"):
        inner = _decoder(t[6:-1])
        if inner is None:
            return None
        return lambda v: [inner(x) if x is not None else None for x in v] if v is not None else v
    return None


@dataclass
class StoreQueryResult:
    column_names: tuple[str, ...]
    column_type_names: tuple[str, ...]
    result_rows: list[tuple[Any, ...]]

    @property
    def row_count(self) -> int:
        return len(self.result_rows)

    def named_results(self) -> list[dict[str, Any]]:
        return [dict(zip(self.column_names, r, strict=True)) for r in self.result_rows]


class StoreClient:
    """The subset of clickhouse-connect's ``Client`` geotel uses, against `geotel store`."""

    def __init__(self, base_url: str, *, timeout_s: float = 300.0,
                 database: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.database = database
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- transport ---------------------------------------------------------------------------
    def _call(self, path: str, body: bytes, ctype: str = "application/json") -> bytes:
        req = urllib.request.Request(self.base_url + path, data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": ctype})
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                msg = str(json.loads(raw).get("message") or raw.decode("utf-8", "replace"))
            except ValueError:
                msg = raw.decode("utf-8", "replace")
            raise StoreClientError(exc.code, msg) from None
        except (urllib.error.URLError, OSError) as exc:
            raise StoreClientError(0, f"store at {self.base_url} unreachable: {exc}") from exc

    def ping(self) -> bool:
        try:
            with self._opener.open(self.base_url + "/health", timeout=5) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    # -- the Client surface --------------------------------------------------------------------
    def insert(self, table: str, data: Sequence[Sequence[Any]], column_names: Sequence[str]
               | str = "*", settings: dict[str, Any] | None = None, **_: Any) -> int:
        if isinstance(column_names, str):
            raise SinkError("StoreClient.insert needs explicit column names")
        rows = list(data)
        if not rows:
            return 0
        settings = dict(settings or {})
        token = settings.pop("insert_deduplication_token", None)
        q = {"table": table, "columns": ",".join(column_names),
             "settings": orjson.dumps(settings, default=str).decode()}
        if token is not None:
            q["token"] = str(token)
        out = self._call("/insert?" + urllib.parse.urlencode(q),
                         to_json_each_row(rows, column_names), "application/x-ndjson")
        return int(orjson.loads(out).get("rows", len(rows)))

    def query(self, query: str, parameters: Any = None, settings: dict[str, Any] | None = None,
              **_: Any) -> StoreQueryResult:
        if parameters:
            raise SinkError("StoreClient.query does not bind parameters")
        doc = orjson.loads(self._call("/query", orjson.dumps(
            {"sql": query, "settings": settings or {}}, default=str)))
        names = tuple(doc["columns"])
        types = tuple(doc.get("types") or ("",) * len(names))
        decoders = [(i, d) for i, t in enumerate(types) if (d := _decoder(t)) is not None]
        rows: list[tuple[Any, ...]] = []
        for r in doc["rows"]:
            if decoders:
                r = list(r)
                for i, d in decoders:
                    if r[i] is not None:
                        r[i] = d(r[i])
            rows.append(tuple(r))
        return StoreQueryResult(names, types, rows)

    def raw_query(self, query: str, parameters: Any = None,
                  settings: dict[str, Any] | None = None, fmt: str | None = None,
                  **_: Any) -> bytes:
        if parameters:
            raise SinkError("StoreClient.raw_query does not bind parameters")
        return self._call("/raw", orjson.dumps(
            {"sql": query, "fmt": fmt or "TabSeparated", "settings": settings or {}},
            default=str))

    def command(self, cmd: str, parameters: Any = None, data: Any = None,
                settings: dict[str, Any] | None = None, **_: Any) -> Any:
        if parameters or data:
            raise SinkError("StoreClient.command takes neither parameters nor data")
        out = orjson.loads(self._call("/command", orjson.dumps(
            {"sql": cmd, "settings": settings or {}}, default=str)))
        return out.get("result")

    def analyst(self, query: str, fmt: str) -> tuple[bytes, str]:
        """An analyst query (streams/query.py), checked and run by the store that owns
        chDB; refusals come back as :class:`sinks.readonly.QueryError`."""
        from sinks.readonly import QueryError

        try:
            body = self._call("/analyst", orjson.dumps({"sql": query, "format": fmt}))
        except StoreClientError as exc:
            code, sep, detail = str(exc).partition("\t")  # the store's "code<TAB>detail"
            if not sep or exc.status == 0:
                raise QueryError("store_unavailable", str(exc)[:2000], 503) from exc
            raise QueryError(code, detail, exc.status) from exc
        from streams.query import FORMATS

        return body, FORMATS.get(fmt, ("", "application/octet-stream"))[1]

    def close(self) -> None:
        self._opener.close()


__all__ = ["StoreClient", "StoreClientError", "StoreQueryResult", "to_json_each_row"]
