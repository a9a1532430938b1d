"""ClickHouse cluster DDL, rendered from the same migration specs as the single-node schema.

A cluster keeps each migration table twice per node:

* ``<name>_local``: the data, ``Replicated<engine>`` with the ``{shard}``/``{replica}`` macros,
  the same columns, partitioning, ordering, TTL and settings as the single-node table;
* ``<name>``: a ``Distributed`` table over the locals, under the single-node name, so the
  writer, the views and analysts' queries work unchanged on one node and on a cluster.

Views are created over the Distributed tables. Every statement is ``ON CLUSTER``. The DDL
is the schema after the last migration: a view a later migration redefines (``replace``)
appears once, with its last definition, as ``CREATE OR REPLACE`` so that applying the file
again upgrades a cluster created from an older one; columns a later migration adds
(``AddColumns``) are part of the table's CREATE, at the end as on a single node (a table
created from an older file does not get them by re-applying it: ``ALTER TABLE <name>_local``
and ``<name> ON CLUSTER ... ADD COLUMN``).

Sharding key: rows that a (Replacing)MergeTree folds, or an insert that is retried, must land
on the same shard, or duplicates survive on two shards. So the key is a function of the ORDER
BY key: ``cityHash64(rep_id)`` when rep_id is part of it (a rep's day stays on one shard),
otherwise ``cityHash64`` of the whole ORDER BY key; ``rand()`` only for a table without one.

Usage::

    python -m sinks.cluster --cluster geotel > deploy/clickhouse/cluster.sql
    python -m sinks.cluster --cluster geotel --apply   # on GEOTEL_CLICKHOUSE__URL
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace

from sinks.exceptions import SinkError
from sinks.migrations import (
    MIGRATIONS,
    MIGRATIONS_TABLE,
    AddColumns,
    DbObject,
    MaterializedView,
    Migration,
    Table,
    View,
)

#: ZooKeeper/Keeper path of every replicated table; ClickHouse fills in the macros.
REPLICA_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA_NAME = "{replica}"
LOCAL_SUFFIX = "_local"

# Settings that only exist for non-replicated MergeTree: replicated tables deduplicate
# inserts (insert_deduplication_token included) through Keeper by default.
NON_REPLICATED_ONLY = frozenset({"non_replicated_deduplication_window",
                                 "non_replicated_deduplication_window_seconds"})

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENGINE = re.compile(r"^\s*(?P<name>[A-Za-z]*MergeTree)\s*(?:\((?P<args>.*)\))?\s*$", re.S)


class ClusterDDLError(SinkError, ValueError):
    """A migration spec cannot be rendered for a cluster."""


def _check_ident(kind: str, value: str) -> str:
    if not _IDENT.match(value):
        raise ClusterDDLError(f"{kind} must be a plain identifier, got {value!r}")
    return value


def replicated_engine(engine: str) -> str:
    """``ReplacingMergeTree(ver)`` -> ``ReplicatedReplacingMergeTree('<path>', '{replica}', ver)``.

    >>> replicated_engine("MergeTree")
    "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')"
    >>> replicated_engine("ReplacingMergeTree(version)").split(", ")[-1]
    'version)'
    """
    m = _ENGINE.match(engine)
    if m is None:
        raise ClusterDDLError(f"engine {engine!r} is not a MergeTree family engine: it cannot "
                              "be replicated")
    name, args = m["name"], (m["args"] or "").strip()
    if name.startswith("Replicated"):
        raise ClusterDDLError(f"engine {engine!r} is already replicated: migration specs "
                              "describe the single-node engine")
    head = f"'{REPLICA_PATH}', '{REPLICA_NAME}'"
    return f"Replicated{name}({head}{', ' + args if args else ''})"


def _order_key_exprs(order_by: str) -> list[str]:
    """Top-level expressions of an ORDER BY key: ``(a, f(b, c))`` -> ``['a', 'f(b, c)']``."""
    text = order_by.strip()
    if text.startswith("(") and text.endswith(")"):
        inner, depth = text[1:-1], 0
        for ch in inner:  # the outer parentheses enclose the whole key only if never closed
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth < 0:
                break
        else:
            text = inner
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return [p for p in parts if p not in ("tuple()", "")]


def sharding_key(table: Table) -> str:
    """The Distributed sharding expression of ``table`` (see the module docstring)."""
    key = _order_key_exprs(table.order_by)
    columns = dict(table.columns)
    if "rep_id" in key and "rep_id" in columns:
        return "cityHash64(rep_id)"
    if key:
        return f"cityHash64({', '.join(key)})"
    return "rand()"


def _qualify(select: str, database: str, names: Iterable[str]) -> str:
    """Qualify references to known tables/views in a view's SELECT with ``database``."""
    alternatives = "|".join(sorted((re.escape(n) for n in names), key=len, reverse=True))
    pattern = re.compile(rf"\b(FROM|JOIN)(\s+)({alternatives})\b(?!\s*\.)", re.I)
    return pattern.sub(lambda m: f"{m[1]}{m[2]}{database}.{m[3]}", select)


def _columns(table: Table) -> str:
    return ",\n    ".join(f"{n} {t}" for n, t in table.columns)


def local_table_ddl(table: Table, cluster: str, database: str) -> str:
    parts = [f"CREATE TABLE IF NOT EXISTS {database}.{table.name}{LOCAL_SUFFIX} "
             f"ON CLUSTER '{cluster}'\n(\n    {_columns(table)}\n)",
             f"ENGINE = {replicated_engine(table.engine)}"]
    if table.partition_by:
        parts.append(f"PARTITION BY {table.partition_by}")
    parts.append(f"ORDER BY {table.order_by}")
    if table.ttl:
        parts.append(f"TTL {table.ttl}")
    settings = {k: v for k, v in table.settings.items() if k not in NON_REPLICATED_ONLY}
    if settings:
        parts.append("SETTINGS " + ", ".join(f"{k} = {v}" for k, v in settings.items()))
    if table.comment:
        parts.append(f"COMMENT '{table.comment} (replicated shard-local data)'")
    return "\n".join(parts)


def distributed_table_ddl(table: Table, cluster: str, database: str) -> str:
    parts = [f"CREATE TABLE IF NOT EXISTS {database}.{table.name} ON CLUSTER '{cluster}'\n"
             f"(\n    {_columns(table)}\n)",
             f"ENGINE = Distributed('{cluster}', '{database}', '{table.name}{LOCAL_SUFFIX}', "
             f"{sharding_key(table)})"]
    if table.comment:
        parts.append(f"COMMENT '{table.comment}'")
    return "\n".join(parts)


def view_ddl(view: View, cluster: str, database: str, names: Iterable[str]) -> str:
    select = _qualify(view.select, database, names)
    create = "CREATE OR REPLACE VIEW" if view.replace else "CREATE VIEW IF NOT EXISTS"
    return f"{create} {database}.{view.name} ON CLUSTER '{cluster}' AS\n{select}"


def materialized_view_ddl(mv: MaterializedView, cluster: str, database: str) -> str:
    """On every node, from the shard-local source into the shard-local target: inserts
    reach the source's local table, so that is where the view must fire. The source is
    sharded by rep_id, and the rollups group by keys a shard holds whole (rep_id) or
    merge per key at query time through the target's Distributed table."""
    select = re.sub(rf"\bFROM(\s+){re.escape(mv.source)}\b",
                    lambda m: f"FROM{m[1]}{database}.{mv.source}{LOCAL_SUFFIX}", mv.select)
    return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{mv.name} ON CLUSTER "
            f"'{cluster}' TO {database}.{mv.to}{LOCAL_SUFFIX} AS\n{select}")


def schema_objects(migrations: Sequence[Migration] = MIGRATIONS) -> list[DbObject]:
    """The objects of the schema after every migration, in creation order: a view that a
    later migration redefines (``View.replace``) is left out where first defined and
    created where redefined (its new definition may read objects created in between)."""
    objects: list[DbObject] = [MIGRATIONS_TABLE]
    for m in sorted(migrations, key=lambda m: m.version):
        for obj in m.objects:
            if isinstance(obj, AddColumns):  # folded into the table's CREATE
                i = next((i for i, o in enumerate(objects)
                          if isinstance(o, Table) and o.name == obj.table), None)
                if i is None:
                    raise ClusterDDLError(f"columns added to {obj.table}, which no earlier "
                                          "migration creates")
                t = objects[i]
                if not isinstance(t, Table):  # the search above only matches tables
                    raise ClusterDDLError(f"{obj.table} is not a table")
                known = {n for n, _ in t.columns}
                objects[i] = replace(t, columns=[*t.columns, *(
                    c for c in obj.columns if c[0] not in known)])
                continue
            if isinstance(obj, View) and obj.replace:
                objects = [o for o in objects if not (isinstance(o, View) and o.name == obj.name)]
            objects.append(obj)
    return objects


def cluster_ddl(cluster: str, database: str = "geotel",
                migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Every statement that creates geotel's schema on ClickHouse cluster ``cluster``, in order.

    The migration ledger (``schema_migrations``) is created the same way, so the workers'
    ``migrate()`` finds one shared ledger and the objects already there.
    """
    _check_ident("cluster", cluster)
    _check_ident("database", database)
    objects = schema_objects(migrations)
    names = [o.name for o in objects]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ClusterDDLError(f"objects defined twice in the migrations: {sorted(dupes)}")
    clash = {n for n in names if n.endswith(LOCAL_SUFFIX)}
    if clash:
        raise ClusterDDLError(f"names ending in {LOCAL_SUFFIX} are reserved for shard-local "
                              f"tables: {sorted(clash)}")
    out = [f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER '{cluster}'"]
    for obj in objects:
        if isinstance(obj, Table):
            out.append(local_table_ddl(obj, cluster, database))
            out.append(distributed_table_ddl(obj, cluster, database))
        elif isinstance(obj, MaterializedView):
            out.append(materialized_view_ddl(obj, cluster, database))
        elif isinstance(obj, View):
            out.append(view_ddl(obj, cluster, database, names))
    return out


def render_sql(cluster: str, database: str = "geotel") -> str:
    """The statements as one SQL script (``clickhouse-client --multiquery`` reads it)."""
    head = (f"-- geotel schema for ClickHouse cluster '{cluster}', database '{database}'.\n"
            f"-- Generated from sinks/migrations.py by `python -m sinks.cluster --cluster "
            f"{cluster}`; do not edit.\n"
            "-- Needs Keeper and the {shard}/{replica} macros on every node.\n\n")
    return head + "".join(f"{s};\n\n" for s in cluster_ddl(cluster, database)).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sinks.cluster", description=__doc__.split(
        "\n")[0])
    p.add_argument("--cluster", required=True, help="Cluster name in remote_servers.")
    p.add_argument("--database", default=None,
                   help="Database (default: GEOTEL_CLICKHOUSE__DATABASE with --apply, else "
                   "geotel).")
    p.add_argument("--apply", action="store_true",
                   help="Run the statements on GEOTEL_CLICKHOUSE__URL instead of printing.")
    args = p.parse_args(argv)
    if not args.apply:
        sys.stdout.write(render_sql(args.cluster, args.database or "geotel"))
        return 0
    # The entry point builds the one settings object; nothing else here reads the environment.
    from sinks.clickhouse import connect
    from streams.settings import Settings

    s = Settings()
    c = s.clickhouse
    if c.url is None:
        p.error("--apply needs GEOTEL_CLICKHOUSE__URL (a cluster node or its load balancer)")
    database = args.database or c.database
    client = connect(url=c.url, chdb_path=None, database="default", user=c.user,
                     password=c.password.get_secret_value(), verify=c.verify_tls)
    try:
        for stmt in cluster_ddl(args.cluster, database):
            client.command(stmt)
            print(stmt.splitlines()[0], file=sys.stderr)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
