"""The ClickHouse cluster DDL (sinks/cluster.py) against the single-node migration specs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sinks.cluster import (
    LOCAL_SUFFIX,
    NON_REPLICATED_ONLY,
    ClusterDDLError,
    _order_key_exprs,
    cluster_ddl,
    render_sql,
    replicated_engine,
    schema_objects,
    sharding_key,
)
from sinks.migrations import MIGRATIONS, Migration, Table, View

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SQL = ROOT / "deploy" / "clickhouse" / "cluster.sql"
CLUSTER = "geotel"  # the cluster name in deploy/kubernetes/clickhouse.yaml
CREATE = r"CREATE (?:TABLE IF NOT EXISTS|VIEW IF NOT EXISTS|OR REPLACE VIEW)"


def all_objects() -> list[Table | View]:
    """The schema after every migration (a redefined view once, where redefined)."""
    return schema_objects()  # type: ignore[return-value]


def tables() -> list[Table]:
    return [o for o in all_objects() if isinstance(o, Table)]


def statement_for(ddl: list[str], name: str) -> str:
    pat = re.compile(rf"^{CREATE} geotel\.{re.escape(name)} ")
    found = [s for s in ddl if pat.match(s)]
    assert len(found) == 1, f"{name}: {len(found)} statements"
    return found[0]


def test_committed_cluster_sql_is_current() -> None:
    assert CLUSTER_SQL.read_text() == render_sql(CLUSTER), (
        "deploy/clickhouse/cluster.sql is stale: run "
        "`python -m sinks.cluster --cluster geotel > deploy/clickhouse/cluster.sql`")


def test_every_table_is_replicated_and_distributed_under_its_own_name() -> None:
    ddl = cluster_ddl(CLUSTER)
    assert ddl[0] == "CREATE DATABASE IF NOT EXISTS geotel ON CLUSTER 'geotel'"
    assert all(f"ON CLUSTER '{CLUSTER}'" in s for s in ddl)
    for t in tables():
        local = statement_for(ddl, t.name + LOCAL_SUFFIX)
        engine = re.search(r"^ENGINE = (.*)$", local, re.M)
        assert engine is not None
        assert engine[1].startswith(f"Replicated{t.engine.split('(')[0]}("), local
        assert "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'" in engine[1]
        assert f"ORDER BY {t.order_by}" in local
        if t.partition_by:
            assert f"PARTITION BY {t.partition_by}" in local
        if t.ttl:
            assert f"TTL {t.ttl}" in local
        for key, value in t.settings.items():
            if key in NON_REPLICATED_ONLY:
                assert key not in local
            else:
                assert f"{key} = {value}" in local
        for col, typ in t.columns:
            assert f"    {col} {typ}" in local
        dist = statement_for(ddl, t.name)
        assert (f"ENGINE = Distributed('{CLUSTER}', 'geotel', '{t.name}{LOCAL_SUFFIX}', "
                f"{sharding_key(t)})") in dist
        for col, typ in t.columns:
            assert f"    {col} {typ}" in dist
        # the local table exists before the Distributed table over it
        assert ddl.index(local) < ddl.index(dist)


def test_views_read_the_distributed_tables_in_the_database() -> None:
    ddl = cluster_ddl(CLUSTER, database="analytics")
    names = {o.name for o in all_objects()}
    for v in (o for o in all_objects() if isinstance(o, View)):
        stmt = statement_for_db(ddl, "analytics", v.name)
        for ref in re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)", stmt, re.I):
            if ref.split(".")[-1] in names:
                assert ref.startswith("analytics."), (v.name, ref)
                assert not ref.endswith(LOCAL_SUFFIX)
    assert not [s for s in ddl if "geotel." in s]


def test_single_node_and_cluster_cover_the_same_objects_in_order() -> None:
    ddl = cluster_ddl(CLUSTER)
    created = [re.match(r"CREATE (?:(?:TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS|OR REPLACE "
                        r"VIEW) geotel\.(\w+) ", s)[1]  # type: ignore[index]
               for s in ddl[1:]]
    public = [n for n in created if not n.endswith(LOCAL_SUFFIX)]
    assert public == [o.name for o in all_objects()]
    assert sorted(n for n in created if n.endswith(LOCAL_SUFFIX)) == sorted(
        t.name + LOCAL_SUFFIX for t in tables())


def test_sharding_key_keeps_foldable_rows_on_one_shard() -> None:
    # Rows a ReplacingMergeTree folds share the ORDER BY key: the sharding key must be a
    # function of it, or a duplicate lands on another shard and is never folded.
    for t in tables():
        key = sharding_key(t)
        exprs = _order_key_exprs(t.order_by)
        if key == "cityHash64(rep_id)":
            assert "rep_id" in exprs
        else:
            assert key == f"cityHash64({', '.join(exprs)})", (t.name, key)
    events = next(t for t in tables() if t.name == "events_all")
    assert sharding_key(events) == "cityHash64(rep_id)"


def test_tables_added_later_render_generically() -> None:
    later = Migration(99, "later", [
        Table("visits_by_hour", [("rep_id", "String"), ("hour", "DateTime"),
                                 ("n", "UInt64"), ("ver", "UInt64")],
              order_by="(hour, rep_id)", engine="ReplacingMergeTree(ver)",
              partition_by="toYYYYMM(hour)", ttl="hour + INTERVAL 1 YEAR",
              settings={"index_granularity": 4096, "non_replicated_deduplication_window": 100}),
        Table("no_key", [("x", "UInt8")], order_by="tuple()"),
        View("visits_by_hour_v", "SELECT * FROM visits_by_hour FINAL JOIN no_key ON 1"),
    ])
    ddl = cluster_ddl("c1", "db", migrations=[*MIGRATIONS, later])
    local = statement_for_db(ddl, "db", "visits_by_hour_local")
    assert ("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/"
            "{table}', '{replica}', ver)") in local
    assert "TTL hour + INTERVAL 1 YEAR" in local
    assert "SETTINGS index_granularity = 4096" in local
    assert "non_replicated" not in local
    assert "cityHash64(rep_id))" in statement_for_db(ddl, "db", "visits_by_hour")
    assert "ENGINE = ReplicatedMergeTree(" in statement_for_db(ddl, "db", "no_key_local")
    assert "'no_key_local', rand())" in statement_for_db(ddl, "db", "no_key")
    assert ("SELECT * FROM db.visits_by_hour FINAL JOIN db.no_key ON 1"
            in statement_for_db(ddl, "db", "visits_by_hour_v"))


def statement_for_db(ddl: list[str], db: str, name: str) -> str:
    return next(s for s in ddl if re.match(rf"{CREATE} {db}\.{name} ", s))


@pytest.mark.parametrize("engine", ["Memory", "Log", "ReplicatedMergeTree('/p', 'r')"])
def test_engines_that_cannot_be_replicated_are_refused(engine: str) -> None:
    with pytest.raises(ClusterDDLError):
        replicated_engine(engine)


@pytest.mark.parametrize(("cluster", "db"), [("a b", "geotel"), ("c", "x;DROP"), ("'", "g")])
def test_names_are_identifiers(cluster: str, db: str) -> None:
    with pytest.raises(ClusterDDLError):
        cluster_ddl(cluster, db)


def test_order_key_split() -> None:
    assert _order_key_exprs("(rep_id, toDate(ts), ts)") == ["rep_id", "toDate(ts)", "ts"]
    assert _order_key_exprs("version") == ["version"]
    assert _order_key_exprs("(a) + (b)") == ["(a) + (b)"]
    assert _order_key_exprs("tuple()") == []


def test_module_entry_prints_the_committed_file() -> None:
    out = subprocess.run([sys.executable, "-m", "sinks.cluster", "--cluster", CLUSTER],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout == CLUSTER_SQL.read_text()


@pytest.mark.integration
def test_cluster_ddl_creates_on_clickhouse_with_the_single_node_columns(tmp_path: Path) -> None:
    """chDB (the ClickHouse engine) parses every statement as written and creates all of it
    without Keeper; the tables and views analysts see have the single-node columns."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "chdb_cluster_probe.py"),
                          str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    single, cluster, engines = doc["single"], doc["cluster"], doc["engines"]
    assert doc["parsed"] == len(cluster_ddl(CLUSTER))
    public = {n: cols for n, cols in cluster.items() if not n.endswith(LOCAL_SUFFIX)}
    assert public == single
    for t in tables():
        assert engines[t.name][0] == "Distributed"
        assert cluster[t.name + LOCAL_SUFFIX] == single[t.name]
