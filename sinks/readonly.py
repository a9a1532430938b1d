"""The read-only SQL allowlist: what an analyst query may read and call.

A query is accepted only when ClickHouse's own parser (``parseQueryToJSON``, parse only,
nothing runs) shows a statement of an allowed kind in which

* every table is a table or view of the geotel database, a name defined by the query itself
  (a CTE), or one of :data:`SYSTEM_TABLES`;
* every table function is one of :data:`TABLE_FUNCTIONS` (``numbers``, ``values``, ``zeros``):
  ``file``, ``url``, ``s3``, ``remote``, ``eval``, ``filesystem``, ``deltaLake*``,
  ``iceberg*`` and every other one, including those a later ClickHouse adds, are refused;
* every other function (scalar, aggregate, window) is in the reviewed allowlist
  ``readonly_functions.json`` (made from ``system.functions`` of the ClickHouse in use,
  without the functions that reach outside the database: ``file``, dictionaries,
  ``joinGet``, settings and host introspection, the AI and model functions, ``sleep`` ...);
  aggregate combinators (``sumIf``, ``uniqMerge``, ``argMaxState`` ...) of an allowed
  aggregate are allowed;
* there is no ``SETTINGS``, ``FORMAT`` or ``INTO OUTFILE`` clause, and one statement only.

A function the allowlist does not know (a newer ClickHouse) is refused until it is reviewed:
``python -m sinks.readonly review`` lists them, ``python -m sinks.readonly write`` rewrites the
file (its ``denied`` section keeps each refused name with the reason).

This check is one of two walls. The other is the session the query runs in: limits set before
``readonly=1`` (see :func:`session_statements`), so a query can neither lift them nor call a
table function outside the server's own safe list; on a ClickHouse server, the analyst user's
settings profile and grants (deploy/clickhouse/analyst-user.sql) do the same.

>>> allow = FunctionAllowlist({"count", "sum", "plus"}, set(), {"count", "sum"})
>>> check_parsed({"type": "SelectWithUnionQuery", "list_of_selects": {"children": [
...     {"type": "SelectQuery", "select": {"children": [
...         {"type": "Function", "name": "sumIf", "arguments": {}}]}}]}},
...     database="geotel", tables={"events"}, functions=allow).kind
'select'
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.errors import GeotelError

#: Table functions a query may call: they read nothing but their arguments.
TABLE_FUNCTIONS = frozenset({"numbers", "values", "zeros"})
#: Tables outside the geotel database a query may read.
SYSTEM_TABLES = frozenset({"system.one", "system.numbers"})

_ALLOWLIST_FILE = Path(__file__).with_name("readonly_functions.json")
# Functions that are syntax rather than entries of system.functions.
_SYNTAX_FUNCTIONS = frozenset({"lambda", "exists"})
# Internal functions that are the parser's spelling of ordinary syntax (CASE x WHEN ...).
_PLANNER_SYNTAX = frozenset({"caseWithExpression"})
_COMBINATORS = ("MergeState", "SimpleState", "OrDefault", "Distinct", "Resample", "ForEach",
                "ArgMax", "ArgMin", "OrNull", "Tuple", "Merge", "State", "Array", "Null",
                "Map", "If")
# Categories of system.functions refused whole, and refused names of other categories.
DENIED_CATEGORIES = {
    "Dictionary": "reads dictionaries, whose sources can be files, URLs or other servers",
    "Embedded Dictionary": "reads the server's geobase files",
    "Internal": "internal to the query planner",
    "Introspection": "inspects the server process",
    "AI": "sends data to a model provider over the network",
    "Machine Learning": "loads models from the server's files",
}
DENIED_FUNCTIONS = {
    "file": "reads a file of the host",
    "filesystemAvailable": "host introspection", "filesystemCapacity": "host introspection",
    "filesystemUnreserved": "host introspection", "getOSKernelVersion": "host introspection",
    "hostName": "host introspection", "FQDN": "host introspection",
    "displayName": "host introspection", "buildId": "host introspection",
    "serverUUID": "host introspection", "tcpPort": "host introspection",
    "getServerPort": "host introspection", "showCertificate": "reads the server certificate",
    "getClientHTTPHeader": "reads request headers", "currentRequestURL": "reads the request",
    "getMacro": "reads server configuration", "getServerSetting": "reads server configuration",
    "getMergeTreeSetting": "reads server configuration",
    "getSetting": "reads session settings", "getSettingOrDefault": "reads session settings",
    "globalVariable": "reads server state",
    "hasColumnInTable": "can connect to another server",
    "joinGet": "reads Join tables by name", "joinGetOrNull": "reads Join tables by name",
    "generateSerialID": "writes to a coordination service",
    "zookeeperSessionUptime": "coordination service introspection",
    "sleep": "holds resources without reading data",
    "sleepEachRow": "holds resources without reading data",
    "fuzzQuery": "generates arbitrary queries",
}
_IDENT = r"(?:`[^`]{1,200}`|[A-Za-z_][A-Za-z0-9_]{0,199})"
_DESCRIBE = re.compile(
    rf"^\s*(?:DESCRIBE|DESC)\s+(?:TABLE\s+)?(?:({_IDENT})\.)?({_IDENT})\s*;?\s*$", re.IGNORECASE)
_EXISTS = re.compile(rf"^\s*EXISTS\s+(?:TABLE\s+)?(?:({_IDENT})\.)?({_IDENT})\s*;?\s*$",
                     re.IGNORECASE)
_SHOW_KEYS = {"type", "from", "like", "not_like", "case_insensitive_like", "is_outfile_append",
              "is_outfile_truncate", "is_into_outfile_with_stdout", "full", "terse"}
_QUERY_FLAGS = {"is_outfile_append", "is_outfile_truncate", "is_into_outfile_with_stdout"}


class QueryError(GeotelError, ValueError):
    """A query refused or failed, with a stable ``code`` and the HTTP status to answer."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _refuse(message: str) -> QueryError:
    return QueryError("not_allowed", message, status=403)


@dataclass(frozen=True)
class FunctionAllowlist:
    """Allowed function names: exact, case-insensitive (kept lowercased), and which of them
    are aggregates (the ones combinators may extend)."""

    exact: set[str]
    case_insensitive: set[str]
    aggregates: set[str]
    clickhouse_version: str = ""
    denied: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = _ALLOWLIST_FILE) -> FunctionAllowlist:
        doc = json.loads(path.read_text())
        ci = set(doc["case_insensitive"])
        aggs = set(doc["aggregates"])
        return cls(set(doc["allowed"]), {n.lower() for n in ci},
                   aggs | {a.lower() for a in aggs & ci}, doc.get("clickhouse_version", ""),
                   dict(doc.get("denied", {})))

    def _known(self, name: str) -> bool:
        return name in self.exact or name.lower() in self.case_insensitive

    def allows(self, name: str) -> bool:
        if name in _SYNTAX_FUNCTIONS or self._known(name):
            return True
        base = name  # an aggregate with combinators: strip them one by one
        while True:
            for suffix in _COMBINATORS:
                if base.endswith(suffix) and len(base) > len(suffix):
                    base = base[: -len(suffix)]
                    break
            else:
                return False
            if base in self.aggregates or base.lower() in self.aggregates:
                return True


@dataclass(frozen=True)
class Checked:
    """An accepted query: its kind and the statement to run."""

    kind: str  # select, explain, show_tables, describe, exists
    sql: str


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith("`") and name.endswith("`") else name


def _table_statement(sql: str, database: str, tables: set[str]) -> Checked | None:
    """DESCRIBE and EXISTS of a geotel table, rebuilt from the validated name (the JSON
    parser output does not cover them)."""
    for kind, pattern, verb in (("describe", _DESCRIBE, "DESCRIBE TABLE"),
                                ("exists", _EXISTS, "EXISTS TABLE")):
        m = pattern.match(sql)
        if m:
            db, name = (_unquote(m.group(1)) if m.group(1) else database), _unquote(m.group(2))
            if db != database or name not in tables:
                raise _refuse(f"{kind.upper()} is allowed for the tables of the {database} "
                              f"database only, not {db}.{name}")
            return Checked(kind, f"{verb} `{database}`.`{name}`")
    return None


def _walk(node: Any, parent_key: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield parent_key, node
        for k, v in node.items():
            yield from _walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, parent_key)


def _cte_names(tree: Any) -> set[str]:
    return {n["name"] for _, n in _walk(tree)
            if n.get("type") == "WithElement" and isinstance(n.get("name"), str)}


def _check_table(name: str, parts: list[str] | None, database: str, tables: set[str],
                 ctes: set[str]) -> None:
    parts = parts or name.split(".", 1)
    if len(parts) == 1:
        # A bare name is a CTE of the query or a table of the current (geotel) database.
        if parts[0] in ctes or parts[0] in tables:
            return
        raise _refuse(f"unknown table {parts[0]}: a query reads the tables and views of the "
                      f"{database} database")
    qualified = ".".join(parts)
    if (parts[0] == database and parts[1] in tables) or qualified in SYSTEM_TABLES:
        return
    raise _refuse(f"table {qualified} is not readable here: a query reads the tables and "
                  f"views of the {database} database (and {', '.join(sorted(SYSTEM_TABLES))})")


def check_parsed(tree: dict[str, Any], *, database: str, tables: set[str],
                 functions: FunctionAllowlist, databases: set[str] | None = None) -> Checked:
    """Check the JSON syntax tree of one statement (``parseQueryToJSON``) against the
    allowlist; raise :class:`QueryError` (403) with the reason, or return its kind."""
    root = tree.get("type")
    if root == "SelectWithUnionQuery":
        kind = "select"
    elif root == "ExplainQuery" and isinstance(tree.get("query"), dict) and \
            tree["query"].get("type") == "SelectWithUnionQuery":
        kind = "explain"
    elif root == "ShowTablesQuery":
        extra = set(tree) - _SHOW_KEYS
        if extra:
            raise _refuse("only SHOW TABLES (of the geotel database) is allowed")
        src = tree.get("from")
        if src is not None and (not isinstance(src, dict) or src.get("name") != database):
            raise _refuse(f"SHOW TABLES is allowed for the {database} database only")
        kind = "show_tables"
    else:
        raise _refuse("only SELECT, WITH, EXPLAIN (of a SELECT), SHOW TABLES, DESCRIBE and "
                      f"EXISTS are allowed, not {root}")
    ctes = _cte_names(tree)
    other_dbs = (databases or set()) - {database}
    for key, node in _walk(tree):
        t = node.get("type")
        if key == "out_file" or node.get("is_into_outfile_with_stdout") is True:
            raise _refuse("INTO OUTFILE is not allowed")
        if key == "format_ast":
            raise QueryError("format_clause", "choose the output format with the format "
                             "parameter, not a FORMAT clause")
        if key in ("settings_ast", "settings") and not (key == "settings" and
                                                       root == "ExplainQuery" and
                                                       node is tree.get("settings")):
            raise _refuse("a SETTINGS clause is not allowed: the endpoint's limits are fixed")
        if t == "SetQuery" and node is not tree.get("settings"):
            raise _refuse("a SETTINGS clause is not allowed: the endpoint's limits are fixed")
        if t == "Function":
            name = str(node.get("name", ""))
            if key == "table_function":
                if name not in TABLE_FUNCTIONS:
                    raise _refuse(f"table function {name}() is not allowed (allowed: "
                                  f"{', '.join(sorted(TABLE_FUNCTIONS))})")
            elif not functions.allows(name):
                reason = functions.denied.get(name, "not in the reviewed allowlist")
                raise _refuse(f"function {name}() is not allowed: {reason}")
        elif t == "TableIdentifier":
            _check_table(str(node.get("name", "")), node.get("name_parts"), database, tables,
                         ctes)
        elif t == "Identifier":
            parts = node.get("name_parts")
            # `x IN system.users` names a table with a plain identifier.
            if isinstance(parts, list) and len(parts) >= 2 and parts[0] in other_dbs and \
                    ".".join(parts[:2]) not in SYSTEM_TABLES:
                raise _refuse(f"{'.'.join(parts)} is outside the {database} database")
        elif t in ("Dictionary", "DictionaryIdentifier"):
            raise _refuse("dictionaries are not readable here")
    return Checked(kind, "")


def check_query(sql: str, *, parse: Callable[[str], dict[str, Any]], database: str,
                tables: set[str], functions: FunctionAllowlist,
                databases: set[str] | None = None) -> Checked:
    """Check one analyst statement; return what to run or raise :class:`QueryError`."""
    if not isinstance(sql, str) or not sql.strip():
        raise QueryError("empty_query", "no SQL given")
    if len(sql) > 100_000:
        raise QueryError("query_too_long", "at most 100,000 characters")
    special = _table_statement(sql, database, tables)
    if special is not None:
        return special
    try:
        tree = parse(sql)
    except QueryError:
        raise
    except Exception as exc:
        msg = str(exc)
        if "does not support JSON serialization" in msg or \
                "not supported by parseQueryToJSON" in msg:
            raise _refuse("only SELECT, WITH, EXPLAIN (of a SELECT), SHOW TABLES, DESCRIBE "
                          "and EXISTS are allowed") from exc
        if "Multi-statements" in msg:
            raise QueryError("multiple_statements", "one statement per request") from exc
        raise QueryError("syntax_error", _first_line(msg)) from exc
    checked = check_parsed(tree, database=database, tables=tables, functions=functions,
                           databases=databases)
    return Checked(checked.kind, sql.strip().rstrip(";").strip())


def _first_line(msg: str) -> str:
    return msg.strip().splitlines()[0][:500] if msg.strip() else "query failed"


@dataclass(frozen=True)
class Limits:
    """What one analyst query may use; set in its session before ``readonly=1``."""

    max_rows: int
    max_result_bytes: int
    max_execution_s: float
    max_memory_bytes: int
    max_read_bytes: int
    max_threads: int = 1

    def settings(self) -> dict[str, Any]:
        return {
            "max_threads": self.max_threads,
            "max_result_rows": self.max_rows, "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw", "max_execution_time": self.max_execution_s,
            "timeout_overflow_mode": "throw", "max_memory_usage": self.max_memory_bytes,
            "max_bytes_to_read": self.max_read_bytes, "read_overflow_mode": "throw",
        }


def session_statements(limits: Limits) -> list[str]:
    """``SET`` statements that make a session an analyst's: the limits, then ``readonly=1``
    (after which no statement or ``SETTINGS`` clause can change a setting, and the server
    refuses table functions outside its own safe list)."""
    out = []
    for k, v in limits.settings().items():
        out.append(f"SET {k} = {v!r}" if isinstance(v, str) else f"SET {k} = {v}")
    out.append("SET readonly = 1")
    return out


# -- the allowlist file ------------------------------------------------------------------
def _catalogue(client: Any) -> list[tuple[str, int, int, str, str]]:
    return [(str(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4])) for r in client.query(
        "SELECT name, is_aggregate, case_insensitive, alias_to, categories "
        "FROM system.functions ORDER BY name").result_rows]


def build_allowlist(client: Any) -> dict[str, Any]:
    """The allowlist document from ``system.functions`` of the ClickHouse behind ``client``:
    every function but the denied categories and names (aliases follow their target)."""
    rows = _catalogue(client)
    category = {name: cat for name, _, _, alias, cat in rows if not alias}
    denied: dict[str, str] = {}
    for name, _, _, alias, cat in rows:
        target = alias or name
        tcat = category.get(target, cat)
        if target in DENIED_FUNCTIONS:
            denied[name] = DENIED_FUNCTIONS[target]
        elif tcat in DENIED_CATEGORIES and target not in _PLANNER_SYNTAX:
            denied[name] = f"{tcat}: {DENIED_CATEGORIES[tcat]}"
        elif name.startswith("_") and name not in ("_CAST",):
            denied[name] = "internal"
    allowed = sorted(n for n, *_ in rows if n not in denied)
    allowed_set = set(allowed)
    version = str(client.query("SELECT version()").result_rows[0][0])
    return {
        "clickhouse_version": version,
        "allowed": allowed,
        "case_insensitive": sorted(n for n, _, ci, _, _ in rows if ci and n in allowed_set),
        "aggregates": sorted(n for n, agg, _, _, _ in rows if agg and n in allowed_set),
        "denied": dict(sorted(denied.items())),
    }


def unreviewed(client: Any, path: Path = _ALLOWLIST_FILE) -> list[str]:
    """Functions of the ClickHouse in use that the committed file neither allows nor denies."""
    doc = json.loads(path.read_text())
    known = set(doc["allowed"]) | set(doc["denied"])
    return sorted(n for n, *_ in _catalogue(client) if n not in known)


def main(argv: list[str]) -> int:  # pragma: no cover - a maintainer's tool
    import tempfile

    import clickhouse_connect

    with tempfile.TemporaryDirectory() as d:
        client = clickhouse_connect.get_client(dsn=f"chdb://{d}")
        if argv[:1] == ["write"]:
            doc = build_allowlist(client)
            _ALLOWLIST_FILE.write_text(json.dumps(doc, indent=1) + "\n")
            print(f"{len(doc['allowed'])} allowed, {len(doc['denied'])} denied "
                  f"(ClickHouse {doc['clickhouse_version']})")
            return 0
        missing = unreviewed(client)
        print("\n".join(missing) or "every function is reviewed")
        return 1 if missing else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
