"""Versioned, idempotent ClickHouse schema migrations.

Each migration is a list of table/view specs rendered to DDL. The same specs render the
single-node DDL (chDB or one server) and, later, the cluster variant, so there is never a
hand-kept second copy. ``migrate(client)`` applies what is missing and records it in
``schema_migrations``; running it twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from sinks.exceptions import SinkError


@dataclass(frozen=True)
class Table:
    name: str
    columns: Sequence[tuple[str, str]]
    order_by: str
    engine: str = "MergeTree"  # MergeTree | ReplacingMergeTree | ReplacingMergeTree(ver)
    partition_by: str | None = None
    ttl: str | None = None
    settings: dict[str, str | int] = field(default_factory=dict)
    comment: str = ""

    def ddl(self) -> str:
        cols = ",\n    ".join(f"{n} {t}" for n, t in self.columns)
        parts = [f"CREATE TABLE IF NOT EXISTS {self.name}\n(\n    {cols}\n)",
                 f"ENGINE = {self.engine}"]
        if self.partition_by:
            parts.append(f"PARTITION BY {self.partition_by}")
        parts.append(f"ORDER BY {self.order_by}")
        if self.ttl:
            parts.append(f"TTL {self.ttl}")
        if self.settings:
            parts.append("SETTINGS " + ", ".join(f"{k} = {v}" for k, v in self.settings.items()))
        if self.comment:
            parts.append(f"COMMENT '{self.comment}'")
        return "\n".join(parts)


@dataclass(frozen=True)
class View:
    name: str
    select: str

    def ddl(self) -> str:
        return f"CREATE VIEW IF NOT EXISTS {self.name} AS\n{self.select}"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    objects: Sequence[Table | View]


# Re-inserting a block with the same insert_deduplication_token is a no-op only when the
# table keeps a deduplication window (plain MergeTree has none by default).
DEDUP = {"non_replicated_deduplication_window": 10_000}

EVENT_COLUMNS: list[tuple[str, str]] = [
    ("event_id", "UUID"),
    ("rep_id", "LowCardinality(String)"),
    ("device_id", "LowCardinality(String)"),
    ("kind", "Enum8('ping' = 1, 'check_in' = 2, 'visit_submission' = 3)"),
    ("ts", "DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1))"),
    ("received_at", "DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1))"),
    # ping, and the position of a check-in
    ("lat", "Nullable(Float64)"),
    ("lon", "Nullable(Float64)"),
    ("accuracy_m", "Nullable(Float32)"),
    ("speed_mps", "Nullable(Float32)"),
    ("heading_deg", "Nullable(Float32)"),
    ("altitude_m", "Nullable(Float32)"),
    ("battery_pct", "Nullable(Float32)"),
    ("provider", "LowCardinality(Nullable(String))"),
    ("is_mock", "Bool"),
    # check-in
    ("action", "LowCardinality(Nullable(String))"),
    ("account_id", "Nullable(String)"),
    ("visit_id", "Nullable(String)"),
    # visit submission
    ("started_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("ended_at", "Nullable(DateTime64(3, 'UTC'))"),
    ("outcome", "LowCardinality(Nullable(String))"),
    ("notes", "String CODEC(ZSTD(3))"),
    ("form", "Map(LowCardinality(String), String)"),
    ("tags", "Array(LowCardinality(String))"),
    ("photo_count", "UInt16"),
    ("photos", "String CODEC(ZSTD(3))"),
    ("order_currency", "LowCardinality(Nullable(String))"),
    ("order_total", "Nullable(Decimal(18, 4))"),
    ("order_lines", "String CODEC(ZSTD(3))"),
    # enrichment
    ("territory_id", "LowCardinality(Nullable(String))"),
    ("region", "LowCardinality(Nullable(String))"),
    ("in_assigned_territory", "Nullable(Bool)"),
    ("geo_account_id", "Nullable(String)"),
    ("geo_account_distance_m", "Nullable(Float32)"),
    ("geo_version", "UInt32"),
]

DEADLETTER_COLUMNS: list[tuple[str, str]] = [
    ("at", "DateTime64(3, 'UTC')"),
    ("reason", "LowCardinality(String)"),
    ("detail", "String"),
    ("source_topic", "LowCardinality(String)"),
    ("source_partition", "UInt32"),
    ("source_offset", "UInt64"),
    ("item_index", "Int32"),
    ("event_id", "Nullable(UUID)"),
    ("rep_id", "Nullable(String)"),
    ("payload", "String CODEC(ZSTD(3))"),
    ("payload_b64", "Nullable(String) CODEC(ZSTD(3))"),
]

MIGRATIONS: list[Migration] = [
    Migration(1, "events and dead letters", [
        Table(
            "events_all", EVENT_COLUMNS,
            # Duplicates of one event share (rep_id, ts, event_id): a resend is the same event,
            # so ReplacingMergeTree folds them; the `events` view reads with FINAL.
            engine="ReplacingMergeTree",
            partition_by="toYYYYMM(ts)",
            order_by="(rep_id, toDate(ts), ts, event_id)",
            settings=DEDUP,
            comment="Every accepted event; may hold not-yet-merged duplicates: query events",
        ),
        View("events", "SELECT * FROM events_all FINAL"),
        Table(
            "deadletters", DEADLETTER_COLUMNS,
            engine="ReplacingMergeTree",
            partition_by="toYYYYMM(at)",
            order_by="(source_topic, source_partition, source_offset, item_index)",
            ttl="toDateTime(at) + INTERVAL 90 DAY",
            settings=DEDUP,
            comment="Input the pipeline could not use, with the reason",
        ),
    ]),
]

MIGRATIONS_TABLE = Table(
    "schema_migrations",
    [("version", "UInt32"), ("name", "String"), ("applied_at", "DateTime64(3, 'UTC')")],
    engine="ReplacingMergeTree", order_by="version",
)


def applied_versions(client: Client) -> set[int]:
    client.command(MIGRATIONS_TABLE.ddl())
    rows = client.query("SELECT DISTINCT version FROM schema_migrations").result_rows
    return {int(r[0]) for r in rows}


def migrate(client: Client, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the migrations not yet recorded; return the versions applied now."""
    done = applied_versions(client)
    applied: list[int] = []
    for m in sorted(migrations, key=lambda m: m.version):
        if m.version in done:
            continue
        for obj in m.objects:
            try:
                client.command(obj.ddl())
            except Exception as exc:
                raise SinkError(f"migration {m.version} ({m.name}) failed on {obj.name}: "
                                f"{exc}") from exc
        client.insert("schema_migrations", [(m.version, m.name, dt.datetime.now(dt.UTC))],
                      column_names=["version", "name", "applied_at"],
                      settings={"async_insert": 0})
        applied.append(m.version)
    return applied
