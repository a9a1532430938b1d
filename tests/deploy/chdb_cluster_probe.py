"""Run the cluster DDL on chDB (a subprocess: chDB allows one database directory per process).

Keeper is not available in-process, so ``ON CLUSTER`` is stripped and each Replicated*
engine loses its Keeper path and replica name; everything else (columns, codecs, partition,
order, TTL, settings, the Distributed tables with their sharding keys, the views) is created
as written, on a one-shard cluster declared in a config file. The single-node DDL is created
in a second database. Every statement as written
(ON CLUSTER and Replicated engines included) must also parse (``formatQuery``). Prints a JSON
document: "single" and "cluster" map each table or view name to its [column, type] list,
"engines" each cluster object to its engine.

Usage: python tests/deploy/chdb_cluster_probe.py WORKDIR
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import chdb

from sinks.cluster import LOCAL_SUFFIX, cluster_ddl
from sinks.migrations import MIGRATIONS, MIGRATIONS_TABLE

CLUSTER = "geotel"
CONFIG = """<clickhouse>
  <remote_servers><{c}><shard><replica><host>localhost</host><port>9000</port></replica>
  </shard></{c}></remote_servers>
  <macros><shard>01</shard><replica>r1</replica></macros>
</clickhouse>
"""


def without_keeper(stmt: str) -> str:
    stmt = re.sub(r" ON CLUSTER '[^']+'", "", stmt)
    return re.sub(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'(?:, )?", r"\1(", stmt)


def columns(conn: chdb.state.sqlitelike.Connection, db: str) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    res = conn.query(f"SELECT table, name, type FROM system.columns WHERE database = '{db}' "
                     "ORDER BY table, position", "JSONCompact")
    for table, name, typ in json.loads(res.bytes())["data"]:
        out.setdefault(table, []).append([name, typ])
    return out


def main() -> None:
    work = Path(sys.argv[1])
    cfg = work / "config.xml"
    cfg.write_text(CONFIG.format(c=CLUSTER))
    conn = chdb.connect(f"{work / 'data'}?config-file={cfg}")
    conn.query("CREATE DATABASE single")
    conn.query("USE single")
    conn.query(MIGRATIONS_TABLE.ddl())
    for m in MIGRATIONS:
        for obj in m.objects:
            conn.query(obj.ddl())
    parsed = 0
    for stmt in cluster_ddl(CLUSTER, "geotel"):
        # The statement as written (ON CLUSTER, Replicated engines) must parse...
        literal = stmt.replace("\\", "\\\\").replace("'", "\\'")
        conn.query(f"SELECT formatQuery('{literal}')")
        parsed += 1
        # ...and, without Keeper, create.
        conn.query(without_keeper(stmt))
    engines = json.loads(conn.query(
        "SELECT name, engine, engine_full FROM system.tables WHERE database = 'geotel'",
        "JSONCompact").bytes())["data"]
    print(json.dumps({"single": columns(conn, "single"), "cluster": columns(conn, "geotel"),
                      "engines": {n: [e, full] for n, e, full in engines},
                      "local_suffix": LOCAL_SUFFIX, "parsed": parsed}))
    conn.close()


if __name__ == "__main__":
    main()
