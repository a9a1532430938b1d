"""Read-only SQL for analysts: through the service's endpoint, or on chDB directly.

ClickHouse's ``readonly=2`` refuses writes, DDL and changing ``readonly``, and lets us set a
time and a row limit. It does NOT stop table functions that reach outside the database
(``file()``, ``url()``, ``s3()`` ...) or ``INTO OUTFILE``; with chDB those run with the
worker's own rights. So a query must also pass :func:`check_readonly_sql`: one statement,
starting with SELECT/WITH/SHOW/DESCRIBE/EXPLAIN/EXISTS, no ``INTO OUTFILE``, no external
table functions. On a ClickHouse server, also give the service a read-only user with grants
on the geotel database only (docs/operations.md).
"""

from __future__ import annotations

import re
import threading
from contextlib import nullcontext
from typing import Any

from schemas.errors import GeotelError

FORMATS: dict[str, tuple[str, str]] = {
    # name -> (ClickHouse output format, content type)
    "json": ("JSON", "application/json"),
    "jsonl": ("JSONEachRow", "application/x-ndjson"),
    "csv": ("CSVWithNames", "text/csv"),
    "tsv": ("TSVWithNames", "text/tab-separated-values"),
    "parquet": ("Parquet", "application/vnd.apache.parquet"),
    "table": ("PrettyCompactMonoBlock", "text/plain"),
}

_ALLOWED_FIRST = {"select", "with", "show", "describe", "desc", "explain", "exists"}
_EXTERNAL_FUNCS = {
    "file", "filecluster", "url", "urlcluster", "s3", "s3cluster", "gcs", "oss", "cosn",
    "hdfs", "hdfscluster", "azureblobstorage", "azureblobstoragecluster", "remote",
    "remotesecure", "cluster", "clusterallreplicas", "mysql", "postgresql", "mongodb",
    "redis", "sqlite", "odbc", "jdbc", "executable", "input", "iceberg", "icebergs3",
    "icebergazure", "iceberghdfs", "icebergcluster", "deltalake", "deltalakecluster", "hudi",
    "hudicluster", "python", "python3", "arrowflight", "ytsaurus", "paimon", "urlengine",
}
_STRIP = re.compile(
    r"'(?:[^'\\]|\\.|'')*'"  # string literals
    r"|--[^\n]*|#[^\n]*"  # line comments
    r"|/\*.*?\*/",  # block comments
    re.DOTALL,
)
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


class QueryError(GeotelError, ValueError):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def check_readonly_sql(sql: str) -> str:
    """Return the statement (trailing ``;`` removed) or raise QueryError with the reason."""
    if not isinstance(sql, str) or not sql.strip():
        raise QueryError("empty_query", "no SQL given")
    if len(sql) > 100_000:
        raise QueryError("query_too_long", "at most 100,000 characters")
    bare = _STRIP.sub(" ", sql).strip()
    stmt = bare.rstrip().rstrip(";")
    if ";" in stmt:
        raise QueryError("multiple_statements", "one statement per request")
    words = stmt.split(None, 1)
    if not words or words[0].lower() not in _ALLOWED_FIRST:
        raise QueryError("not_read_only", "only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN and "
                         "EXISTS queries are allowed", status=403)
    low = stmt.lower()
    if re.search(r"\binto\s+outfile\b", low):
        raise QueryError("not_read_only", "INTO OUTFILE is not allowed", status=403)
    for name in _CALL.findall(stmt):
        if name.lower() in _EXTERNAL_FUNCS:
            raise QueryError("not_read_only", f"table function {name}() reaches outside the "
                             "database and is not allowed", status=403)
    if re.search(r"\bformat\s+[a-z]", low):
        raise QueryError("format_clause", "choose the output format with the format "
                         "parameter, not a FORMAT clause")
    return sql.strip().rstrip(";")


_AST_FUNCTION = re.compile(r"^\s*Function (\S+)")


def check_ast(ast: str) -> None:
    """Refuse what the parser's own view of the query shows: a call to an external table
    function however it was quoted or escaped, or a destination file (INTO OUTFILE shows
    as a literal directly under the query). The text checks above are only a first line:
    quoting (`` `file`(...) ``) and ``$$`` strings can hide a call from them."""
    for line in ast.splitlines():
        m = _AST_FUNCTION.match(line)
        if m and m.group(1).strip("`\"").lower() in _EXTERNAL_FUNCS:
            raise QueryError("not_read_only", f"table function {m.group(1)}() reaches outside "
                             "the database and is not allowed", status=403)
        if line.startswith(" Literal"):
            raise QueryError("not_read_only", "INTO OUTFILE is not allowed", status=403)


def run_readonly(client: Any, lock: threading.Lock | None, sql: str, fmt: str,
                 max_rows: int, max_execution_s: float) -> tuple[bytes, str]:
    """Run one read-only query; return (body, content type)."""
    if fmt not in FORMATS:
        raise QueryError("bad_format", f"format must be one of {', '.join(FORMATS)}")
    stmt = check_readonly_sql(sql)
    ch_fmt, ctype = FORMATS[fmt]
    settings = {"readonly": 2, "max_result_rows": max_rows, "result_overflow_mode": "throw",
                "max_execution_time": max_execution_s}
    try:
        with lock or nullcontext():
            ast = client.raw_query(f"EXPLAIN AST {stmt}", fmt="TSVRaw",
                                   settings={"readonly": 2})
            check_ast(bytes(ast).decode("utf-8", "replace"))
            body = client.raw_query(stmt, fmt=ch_fmt, settings=settings)
    except QueryError:
        raise
    except Exception as exc:
        msg = str(exc)
        code, status = "query_failed", 400
        if "READONLY" in msg:
            code, status = "not_read_only", 403
        elif "TIMEOUT_EXCEEDED" in msg:
            code = "timeout"
        elif "TOO_MANY_ROWS" in msg:
            code = "too_many_rows"
        raise QueryError(code, msg[:2000], status) from exc
    return bytes(body), ctype
