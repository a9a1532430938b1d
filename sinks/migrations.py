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
    #: INSERT ... SELECT run once right after the table is created by its migration, so a
    #: populated store starts the new table with its history (only where re-running it is
    #: harmless: rows the table key folds).
    backfill: str | None = None

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
    """A view. ``replace=True`` redefines a view an earlier migration created (``CREATE OR
    REPLACE``: idempotent, and views hold no data); the cluster DDL renders only the last
    definition of a name."""

    name: str
    select: str
    replace: bool = False

    def ddl(self) -> str:
        if self.replace:
            return f"CREATE OR REPLACE VIEW {self.name} AS\n{self.select}"
        return f"CREATE VIEW IF NOT EXISTS {self.name} AS\n{self.select}"


@dataclass(frozen=True)
class MaterializedView:
    """A materialized view feeding table ``to`` from inserts into ``source``.

    ``backfill`` (an INSERT ... SELECT over the source) runs once when the migration is
    applied, so a populated store gets its history; the rollups use only aggregates that a
    re-inserted block cannot change (max, argMax, uniqExact), so re-running it is harmless.
    """

    name: str
    to: str
    source: str
    select: str
    #: The INSERT ... SELECT the backfill runs instead of ``INSERT INTO to`` + ``select``
    #: (when the source's older rows lack what the view's select reads).
    backfill_sql: str | None = None

    def ddl(self) -> str:
        return f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.name} TO {self.to} AS\n{self.select}"

    def backfill(self) -> str:
        return self.backfill_sql or f"INSERT INTO {self.to}\n{self.select}"


@dataclass(frozen=True)
class AddColumns:
    """Columns a later migration adds to a table an earlier one created (``ALTER TABLE ...
    ADD COLUMN IF NOT EXISTS``, at the end, in order: idempotent). The cluster DDL folds them
    into the table's CREATE."""

    table: str
    columns: Sequence[tuple[str, str]]

    @property
    def name(self) -> str:
        return self.table

    def ddl(self) -> str:
        return f"ALTER TABLE {self.table}\n" + ",\n".join(
            f"    ADD COLUMN IF NOT EXISTS {n} {t}" for n, t in self.columns)


DbObject = Table | View | MaterializedView | AddColumns


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    objects: Sequence[DbObject]


# Re-inserting a block with the same insert_deduplication_token is a no-op only when the
# table keeps a deduplication window (plain MergeTree has none by default).
DEDUP: dict[str, str | int] = {"non_replicated_deduplication_window": 10_000}

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

#: Computed on insert, not sent by writers (hence not in EVENT_COLUMNS); hidden from SELECT *.
DEDUP_VERSION = ("dedup_ver",
                 "UInt64 MATERIALIZED 4102444800000 - toUnixTimestamp64Milli(received_at)")

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

SEGMENT_COLUMNS: list[tuple[str, str]] = [
    ("segment_id", "UUID"),
    ("rep_id", "LowCardinality(String)"),
    ("local_date", "Date"),
    ("kind", "Enum8('stop' = 1, 'visit' = 2, 'travel' = 3, 'break' = 4)"),
    ("start", "DateTime64(3, 'UTC')"),
    ("end", "DateTime64(3, 'UTC')"),
    ("duration_s", "Float64"),
    ("workday_s", "Float64"),
    ("lon", "Nullable(Float64)"),
    ("lat", "Nullable(Float64)"),
    ("distance_m", "Float64"),
    ("place_id", "Nullable(String)"),
    ("place_kind", "LowCardinality(Nullable(String))"),
    ("visit_id", "Nullable(String)"),
    ("visit_source", "LowCardinality(Nullable(String))"),
    ("verified", "Nullable(Bool)"),
    ("place_distance_m", "Nullable(Float32)"),
    ("submission_event_id", "Nullable(UUID)"),
    ("inferred", "Bool"),
    ("n_pings", "UInt32"),
    ("version", "UInt32"),
]

REP_DAILY_COLUMNS: list[tuple[str, str]] = [
    ("day_id", "UUID"),
    ("rep_id", "LowCardinality(String)"),
    ("local_date", "Date"),
    ("tz", "LowCardinality(String)"),
    ("workday_start", "Nullable(DateTime64(3, 'UTC'))"),
    ("workday_end", "Nullable(DateTime64(3, 'UTC'))"),
    ("workday_start_inferred", "Bool"),
    ("workday_end_inferred", "Bool"),
    ("workday_s", "Float64"),
    ("field_s", "Float64"),
    ("travel_s", "Float64"),
    ("customer_s", "Float64"),
    ("stopped_other_s", "Float64"),
    ("unknown_s", "Float64"),
    ("break_s", "Float64"),
    ("office_home_s", "Float64"),
    ("in_territory_s", "Float64"),
    ("out_territory_s", "Float64"),
    ("distance_m", "Float64"),
    ("visits", "UInt16"),
    ("verified_visits", "UInt16"),
    ("unverified_visits", "UInt16"),
    ("auto_visits", "UInt16"),
    ("pings_kept", "UInt32"),
    ("pings_dropped", "Map(LowCardinality(String), UInt32)"),
    ("clock_offset_s", "Float32"),
    ("events", "UInt32"),
    ("version", "UInt32"),
]

TRANSITION_COLUMNS: list[tuple[str, str]] = [
    ("transition_id", "UUID"),
    ("rep_id", "LowCardinality(String)"),
    ("local_date", "Date"),
    ("kind", "Enum8('territory_enter' = 1, 'territory_exit' = 2, 'account_arrive' = 3, "
             "'account_leave' = 4)"),
    ("subject_id", "String"),
    ("at", "DateTime64(3, 'UTC')"),
    ("lon", "Nullable(Float64)"),
    ("lat", "Nullable(Float64)"),
    ("geo_version", "UInt32"),
    ("version", "UInt32"),
]

# A rep-day's segments and transitions are written as a whole set per derivation, all rows
# carrying the derivation's version; the views show the set whose version is the rep-day's
# current one (rep_daily), so segments that a later derivation no longer has disappear
# without tombstones, and a rebuilt state (same event set, same version) rewrites the same
# rows, which the table key folds.
_CURRENT = ("(rep_id, local_date, version) IN "
            "(SELECT rep_id, local_date, version FROM rep_daily)")

# Since migration 4 the segments and visits views read segments_current instead: one row
# per segment id, the latest version wins, and an id a later derivation no longer has gets a
# tombstone (is_deleted = 1, that derivation's version), so no join with rep_daily is needed.
SEGMENT_CURRENT_V4_COLUMNS: list[tuple[str, str]] = [*SEGMENT_COLUMNS, ("is_deleted", "UInt8")]

# Since migration 6 a visit segment carries its linked submission's facts (the same columns
# as visit_forms; outcome NULL for a visit without a form), in segments_current and in
# visits_current, which holds only the visits (and the tombstones) and is what `visits`
# reads: no join with the forms at query time.
SEGMENT_FORM_COLUMNS: list[tuple[str, str]] = [
    ("outcome", "LowCardinality(Nullable(String))"),
    ("order_currency", "LowCardinality(Nullable(String))"),
    ("order_total", "Nullable(Decimal(18, 4))"),
    ("tags", "Array(LowCardinality(String))"),
    ("form", "Map(LowCardinality(String), String)"),
    ("notes", "String CODEC(ZSTD(3))"),
    ("photo_count", "UInt16"),
]
SEGMENT_CURRENT_COLUMNS: list[tuple[str, str]] = [*SEGMENT_CURRENT_V4_COLUMNS,
                                                  *SEGMENT_FORM_COLUMNS]

_SEGMENT_NAMES = ", ".join(n if n != "end" else "`end`" for n, _ in SEGMENT_COLUMNS)

# FINAL drops the rows whose latest version is a tombstone. A partition is a week of
# local_date (part of the key), so no two rows of one id are in different partitions and
# FINAL need not merge across them; only the open days (the last two or three) are written,
# so every older week is one merged part that FINAL reads without merging (monthly
# partitions made a week's query merge the whole month: 3 to 5 times slower).
_SEGMENTS_SELECT = ("SELECT * EXCEPT (is_deleted) FROM segments_current FINAL\n"
                    "SETTINGS do_not_merge_across_partitions_select_final = 1")

# Copies of a visit form not merged yet are the same resent event: ANY takes one, so the
# join needs no FINAL over every form.
_VISITS_SELECT = """SELECT s.segment_id AS segment_id, s.rep_id AS rep_id,
       s.local_date AS local_date, s.start AS start, s.end AS end,
       s.duration_s AS duration_s, s.place_id AS account_id, s.visit_id AS visit_id,
       s.visit_source AS source, s.verified AS verified,
       s.place_distance_m AS distance_m, s.lon AS lon, s.lat AS lat,
       s.submission_event_id AS submission_event_id,
       e.outcome AS outcome, e.order_currency AS order_currency,
       e.order_total AS order_total, e.tags AS tags, e.form AS form, e.notes AS notes,
       e.photo_count AS photo_count
FROM segments AS s
LEFT ANY JOIN (SELECT event_id, outcome, order_currency, order_total, tags, form, notes,
                      photo_count
               FROM visit_forms) AS e
       ON s.submission_event_id = e.event_id
WHERE s.kind = 'visit'"""

_LAST_POSITION_SELECT = """SELECT rep_id,
       max(ts) AS last_ts,
       argMaxState(assumeNotNull(lat), ts) AS last_lat,
       argMaxState(assumeNotNull(lon), ts) AS last_lon,
       argMaxState(CAST(accuracy_m, 'Nullable(Float32)'), ts) AS last_accuracy_m,
       argMaxState(CAST(territory_id, 'Nullable(String)'), ts) AS last_territory_id
FROM events_all
WHERE kind = 'ping' AND lat IS NOT NULL AND NOT is_mock
GROUP BY rep_id"""

# Aliases differ from the source columns: an alias named like a column would shadow it in
# WHERE (ClickHouse resolves aliases first).
_TERRITORY_HOURLY_SELECT = """SELECT
       assumeNotNull(CAST(territory_id, 'Nullable(String)')) AS territory,
       toStartOfHour(ts) AS hour,
       uniqExactState(CAST(rep_id, 'String')) AS active_reps,
       uniqExactStateIf(event_id, kind = 'ping') AS pings,
       uniqExactStateIf(event_id, kind = 'check_in' AND action = 'visit_start') AS visit_starts
FROM events_all
WHERE territory_id IS NOT NULL
GROUP BY territory, hour"""

# visits_current: a visit's columns (those the privacy redaction updates included), its form,
# version and is_deleted. Rows come from segments_current through a materialized view: the
# visits, and every tombstone (a tombstone does not know its segment's kind; one of a
# non-visit id has no live row here and FINAL drops it).
_VISIT_CURRENT_NAMES = ["segment_id", "rep_id", "local_date", "kind", "start", "end",
                        "duration_s", "lon", "lat", "place_id", "place_kind", "visit_id",
                        "visit_source", "verified", "place_distance_m", "submission_event_id"]
VISIT_CURRENT_COLUMNS: list[tuple[str, str]] = [
    *((n, t) for n, t in SEGMENT_COLUMNS if n in _VISIT_CURRENT_NAMES),
    *SEGMENT_FORM_COLUMNS, ("version", "UInt32"), ("is_deleted", "UInt8")]


def _names(columns: Sequence[tuple[str, str]], prefix: str = "") -> str:
    return ", ".join(prefix + (f"`{n}`" if n == "end" else n) for n, _ in columns)


_VISITS_CURRENT_MV_SELECT = (f"SELECT {_names(VISIT_CURRENT_COLUMNS)}\n"
                             "FROM segments_current WHERE kind = 'visit' OR is_deleted = 1")

# A store migrated before version 6 has visits in segments_current without their forms:
# the backfill copies the current visits with the form joined (a visit without a form gets
# outcome NULL, as the pipeline writes it).
_FORM_JOINED = {"outcome": "nullIf(e.outcome, '')", "order_currency": "e.order_currency",
                "order_total": "e.order_total", "tags": "e.tags", "form": "e.form",
                "notes": "e.notes", "photo_count": "e.photo_count", "is_deleted": "0"}
_VISITS_CURRENT_BACKFILL = f"""INSERT INTO visits_current ({_names(VISIT_CURRENT_COLUMNS)})
SELECT {", ".join(_FORM_JOINED.get(n, "s." + (f"`{n}`" if n == "end" else n))
                  for n, _ in VISIT_CURRENT_COLUMNS)}
FROM (SELECT * FROM segments_current FINAL WHERE kind = 'visit'
      SETTINGS do_not_merge_across_partitions_select_final = 1) AS s
LEFT ANY JOIN (SELECT event_id, outcome, order_currency, order_total, tags, form, notes,
                      photo_count
               FROM visit_forms) AS e
       ON s.submission_event_id = e.event_id"""

# The segments view names its columns: segments_current also has the form columns now.
_SEGMENTS_V6_SELECT = (f"SELECT {_SEGMENT_NAMES} FROM segments_current FINAL\n"
                       "SETTINGS do_not_merge_across_partitions_select_final = 1")

# The same columns (names and types) as the visits view of migration 4, read from one
# table: FINAL per weekly partition drops older versions and retracted ids.
_VISITS_V6_SELECT = """SELECT segment_id, rep_id, local_date, start, `end`, duration_s,
       place_id AS account_id, visit_id, visit_source AS source, verified,
       place_distance_m AS distance_m, lon, lat, submission_event_id,
       outcome, order_currency, order_total, tags, form, notes, photo_count
FROM visits_current FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1"""

ACCOUNT_COLUMNS: list[tuple[str, str]] = [
    ("account_id", "String"),
    ("name", "Nullable(String)"),
    ("kind", "LowCardinality(String)"),
    ("territory_id", "LowCardinality(Nullable(String))"),
    ("region", "LowCardinality(Nullable(String))"),
    ("lon", "Float64"),
    ("lat", "Float64"),
    ("radius_m", "Float32"),
    ("geo_version", "UInt32"),
]

# Since migration 8 the transitions view reads transitions_current, as segments reads
# segments_current: one row per transition id (uuid5 of rep, day, kind, subject and `at`),
# the latest derivation's version wins, and an id a later derivation of the rep-day no longer
# has gets a tombstone (is_deleted = 1, that derivation's version; processors/
# transition_ledger.py), so no join with rep_daily is needed. transitions_all keeps every
# derivation (audit, export), as segments_all does.
TRANSITION_CURRENT_COLUMNS: list[tuple[str, str]] = [*TRANSITION_COLUMNS, ("is_deleted", "UInt8")]
_TRANSITION_NAMES = _names(TRANSITION_COLUMNS)
_TRANSITIONS_V8_SELECT = (f"SELECT {_TRANSITION_NAMES} FROM transitions_current FINAL\n"
                          "SETTINGS do_not_merge_across_partitions_select_final = 1")

# Each rep's assigned territories in the territory set in use (migration 9), written by the
# workers like accounts: which territories are foreign to a rep without scanning pings.
# Only the assignment (the territories' `assigned_reps`): never a home.
REP_TERRITORY_COLUMNS: list[tuple[str, str]] = [
    ("rep_id", "LowCardinality(String)"),
    ("territory_id", "LowCardinality(String)"),
    ("geo_version", "UInt32"),
]

# The rep roster in use (migration 10, `geotel reps load`): who a rep is, for grouping by
# team or manager, and the time zone the rep's days are derived in. Personal data: exported
# and erased with the rep (streams/reps.py).
ROSTER_COLUMNS: list[tuple[str, str]] = [
    ("rep_id", "String"),
    ("name", "Nullable(String)"),
    ("team", "Nullable(String)"),
    ("manager", "Nullable(String)"),
    ("tz", "Nullable(String)"),
    ("geo_version", "UInt32"),
]

# Alerts (migration 11): each record the rules stage published on field.alerts, one row per
# (alert_id, state), written by that stage after the topic took it (streams/alerts.py). A
# re-sent record folds into the same key; the ledger is rebuilt from this table on restart.
ALERT_COLUMNS: list[tuple[str, str]] = [
    ("alert_id", "UUID"),
    ("state", "LowCardinality(String)"),
    ("rule", "LowCardinality(String)"),
    ("rep_id", "LowCardinality(String)"),
    ("local_date", "Date"),
    ("at", "DateTime64(3, 'UTC')"),
    ("detail", "String"),
]

MIGRATIONS: list[Migration] = [
    Migration(1, "events and dead letters", [
        Table(
            "events_all", [*EVENT_COLUMNS, DEDUP_VERSION],
            # Duplicates of one event share (rep_id, ts, event_id): a resend is the same event,
            # so ReplacingMergeTree folds them; the `events` view reads with FINAL. The copy
            # kept is the first received (largest dedup_ver), the same rule the session
            # state applies, so a state rebuilt from this table equals the one it replaces.
            engine="ReplacingMergeTree(dedup_ver)",
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
    Migration(2, "field sessions: rep_daily, segments, visit_forms, visits, transitions", [
        Table(
            "rep_daily_all", REP_DAILY_COLUMNS,
            engine="ReplacingMergeTree(version)",
            partition_by="toYYYYMM(local_date)",
            order_by="(rep_id, local_date)",
            comment="Every derivation of each rep-day; query rep_daily",
        ),
        View("rep_daily", "SELECT * FROM rep_daily_all FINAL"),
        Table(
            "segments_all", SEGMENT_COLUMNS,
            engine="ReplacingMergeTree",
            partition_by="toYYYYMM(local_date)",
            order_by="(rep_id, local_date, version, segment_id)",
            settings=DEDUP,
            comment="Segments of every derivation; query segments",
        ),
        View("segments", f"SELECT * FROM segments_all FINAL WHERE {_CURRENT}"),
        Table(
            "visit_forms", [
                ("event_id", "UUID"), ("rep_id", "LowCardinality(String)"),
                ("account_id", "String"), ("visit_id", "String"),
                ("started_at", "DateTime64(3, 'UTC')"), ("ended_at", "DateTime64(3, 'UTC')"),
                ("outcome", "LowCardinality(String)"),
                ("order_currency", "LowCardinality(Nullable(String))"),
                ("order_total", "Nullable(Decimal(18, 4))"),
                ("tags", "Array(LowCardinality(String))"),
                ("form", "Map(LowCardinality(String), String)"),
                ("notes", "String CODEC(ZSTD(3))"), ("photo_count", "UInt16")],
            engine="ReplacingMergeTree", partition_by="toYYYYMM(started_at)",
            order_by="(rep_id, event_id)",
            comment="Visit submissions only (a resend folds by event id)",
        ),
        MaterializedView("visit_forms_mv", "visit_forms", "events_all", """SELECT event_id, rep_id,
       assumeNotNull(account_id) AS account_id, assumeNotNull(visit_id) AS visit_id,
       assumeNotNull(started_at) AS started_at, assumeNotNull(ended_at) AS ended_at,
       assumeNotNull(outcome) AS outcome, order_currency, order_total, tags, form, notes,
       photo_count
FROM events_all WHERE kind = 'visit_submission'"""),
        View("visits", """SELECT s.segment_id AS segment_id, s.rep_id AS rep_id,
       s.local_date AS local_date, s.start AS start, s.end AS end,
       s.duration_s AS duration_s, s.place_id AS account_id, s.visit_id AS visit_id,
       s.visit_source AS source, s.verified AS verified,
       s.place_distance_m AS distance_m, s.lon AS lon, s.lat AS lat,
       s.submission_event_id AS submission_event_id,
       e.outcome AS outcome, e.order_currency AS order_currency,
       e.order_total AS order_total, e.tags AS tags, e.form AS form, e.notes AS notes,
       e.photo_count AS photo_count
FROM segments AS s
LEFT JOIN (SELECT event_id, outcome, order_currency, order_total, tags, form, notes,
                  photo_count
           FROM visit_forms FINAL) AS e
       ON s.submission_event_id = e.event_id
WHERE s.kind = 'visit'"""),
        Table(
            "transitions_all", TRANSITION_COLUMNS,
            engine="ReplacingMergeTree",
            partition_by="toYYYYMM(local_date)",
            order_by="(rep_id, local_date, version, at, transition_id)",
            settings=DEDUP,
            comment="Territory/account transitions of every derivation; query transitions",
        ),
        View("transitions", f"SELECT * FROM transitions_all FINAL WHERE {_CURRENT}"),
    ]),
    Migration(3, "rollups: rep_last_position, territory_hourly", [
        Table(
            "rep_last_position_agg",
            [("rep_id", "LowCardinality(String)"),
             ("last_ts", "SimpleAggregateFunction(max, DateTime64(3, 'UTC'))"),
             ("last_lat", "AggregateFunction(argMax, Float64, DateTime64(3, 'UTC'))"),
             ("last_lon", "AggregateFunction(argMax, Float64, DateTime64(3, 'UTC'))"),
             ("last_accuracy_m",
              "AggregateFunction(argMax, Nullable(Float32), DateTime64(3, 'UTC'))"),
             ("last_territory_id",
              "AggregateFunction(argMax, Nullable(String), DateTime64(3, 'UTC'))")],
            engine="AggregatingMergeTree", order_by="rep_id",
            comment="Latest ping per rep (idempotent aggregates); query rep_last_position",
        ),
        MaterializedView("rep_last_position_mv", "rep_last_position_agg", "events_all",
                         _LAST_POSITION_SELECT),
        View("rep_last_position", """SELECT rep_id, max(last_ts) AS ts,
       argMaxMerge(last_lat) AS lat, argMaxMerge(last_lon) AS lon,
       argMaxMerge(last_accuracy_m) AS accuracy_m,
       argMaxMerge(last_territory_id) AS territory_id
FROM rep_last_position_agg GROUP BY rep_id"""),
        Table(
            "territory_hourly_agg",
            [("territory", "LowCardinality(String)"),
             ("hour", "DateTime('UTC')"),
             ("active_reps", "AggregateFunction(uniqExact, String)"),
             ("pings", "AggregateFunction(uniqExact, UUID)"),
             ("visit_starts", "AggregateFunction(uniqExact, UUID)")],
            engine="AggregatingMergeTree", partition_by="toYYYYMM(hour)",
            order_by="(territory, hour)",
            comment="Per territory and hour (idempotent aggregates); query territory_hourly",
        ),
        MaterializedView("territory_hourly_mv", "territory_hourly_agg", "events_all",
                         _TERRITORY_HOURLY_SELECT),
        View("territory_hourly", """SELECT territory AS territory_id, hour,
       uniqExactMerge(active_reps) AS active_reps, uniqExactMerge(pings) AS pings,
       uniqExactMerge(visit_starts) AS visit_starts
FROM territory_hourly_agg GROUP BY territory, hour"""),
    ]),
    Migration(4, "segments_current: segments and visits without the version join", [
        Table(
            "segments_current", SEGMENT_CURRENT_V4_COLUMNS,
            engine="ReplacingMergeTree(version, is_deleted)",
            partition_by="toMonday(local_date)",
            order_by="(rep_id, local_date, segment_id)",
            settings=DEDUP,
            comment="Latest version of each segment id, retracted ids as is_deleted rows; "
                    "query segments",
            backfill=(f"INSERT INTO segments_current ({_SEGMENT_NAMES}, is_deleted)\n"
                      f"SELECT {_SEGMENT_NAMES}, 0 FROM segments_all FINAL WHERE {_CURRENT}"),
        ),
        View("segments", _SEGMENTS_SELECT, replace=True),
        View("visits", _VISITS_SELECT, replace=True),
    ]),
    Migration(5, "closed_rep_days: closed (and redacted) rep-days", [
        Table(
            "closed_rep_days",
            [("rep_id", "LowCardinality(String)"), ("local_date", "Date"),
             ("watermark", "DateTime64(3, 'UTC')"), ("mode", "LowCardinality(String)"),
             ("decimals", "UInt8"), ("closed_at", "DateTime64(3, 'UTC')")],
            engine="ReplacingMergeTree(closed_at)",
            partition_by="toYYYYMM(local_date)",
            order_by="(rep_id, local_date)",
            comment="Rep-days closed by the sessions stage and how their off-duty positions "
                    "were redacted (streams/privacy.py); the sweep redacts closed days "
                    "missing here",
        ),
    ]),
    Migration(6, "visits_current: visits with their forms, no join at query time", [
        AddColumns("segments_current", SEGMENT_FORM_COLUMNS),
        Table(
            "visits_current", VISIT_CURRENT_COLUMNS,
            engine="ReplacingMergeTree(version, is_deleted)",
            partition_by="toMonday(local_date)",
            order_by="(rep_id, local_date, segment_id)",
            settings=DEDUP,
            comment="Latest version of each visit with its form, retracted ids as is_deleted "
                    "rows (from segments_current); query visits",
        ),
        MaterializedView("visits_current_mv", "visits_current", "segments_current",
                         _VISITS_CURRENT_MV_SELECT, backfill_sql=_VISITS_CURRENT_BACKFILL),
        View("segments", _SEGMENTS_V6_SELECT, replace=True),
        View("visits", _VISITS_V6_SELECT, replace=True),
    ]),
    Migration(7, "accounts: the customer and office set in use, with its territories", [
        Table(
            "accounts_all", ACCOUNT_COLUMNS,
            engine="ReplacingMergeTree(geo_version)",
            order_by="account_id",
            settings=DEDUP,
            comment="Customers and offices of every geo index version the workers used "
                    "(homes are private and never stored); query accounts",
        ),
        # An account that a later set no longer has drops out with the version filter.
        View("accounts", "SELECT * FROM accounts_all FINAL "
                         "WHERE geo_version = (SELECT max(geo_version) FROM accounts_all)"),
    ]),
    Migration(8, "transitions_current: transitions without the version join", [
        Table(
            "transitions_current", TRANSITION_CURRENT_COLUMNS,
            engine="ReplacingMergeTree(version, is_deleted)",
            partition_by="toMonday(local_date)",
            order_by="(rep_id, local_date, transition_id)",
            settings=DEDUP,
            comment="Latest version of each transition id, retracted ids as is_deleted rows; "
                    "query transitions",
            backfill=(f"INSERT INTO transitions_current ({_TRANSITION_NAMES}, is_deleted)\n"
                      f"SELECT {_TRANSITION_NAMES}, 0 FROM transitions_all FINAL "
                      f"WHERE {_CURRENT}"),
        ),
        View("transitions", _TRANSITIONS_V8_SELECT, replace=True),
    ]),
    Migration(9, "rep_territories: each rep's assigned territories in the set in use", [
        Table(
            "rep_territories_all", REP_TERRITORY_COLUMNS,
            engine="ReplacingMergeTree(geo_version)",
            order_by="(rep_id, territory_id)",
            settings=DEDUP,
            comment="Territories assigned to each rep, of every geo index version the "
                    "workers used; query rep_territories",
        ),
        # An assignment that a later set no longer has drops out with the version filter.
        View("rep_territories",
             "SELECT * FROM rep_territories_all FINAL "
             "WHERE geo_version = (SELECT max(geo_version) FROM rep_territories_all)"),
    ]),
    Migration(10, "reps: the rep roster in use (name, team, manager, time zone)", [
        Table(
            "reps_all", ROSTER_COLUMNS,
            engine="ReplacingMergeTree(geo_version)",
            order_by="rep_id",
            settings=DEDUP,
            comment="The rep roster of every geo index version the workers used; query reps",
        ),
        # A rep that a later roster no longer lists drops out with the version filter.
        View("reps",
             "SELECT * FROM reps_all FINAL "
             "WHERE geo_version = (SELECT max(geo_version) FROM reps_all)"),
    ]),
    Migration(11, "alerts: raised and resolved alerts of the rules stage", [
        Table(
            "alerts_all", ALERT_COLUMNS,
            engine="ReplacingMergeTree",
            partition_by="toMonday(local_date)",
            order_by="(rep_id, local_date, alert_id, state)",
            settings=DEDUP,
            comment="Each field.alerts record once per (alert_id, state) after merges; "
                    "query alerts",
        ),
        View("alerts", "SELECT * FROM alerts_all FINAL"),
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
                if isinstance(obj, MaterializedView):
                    client.command(obj.backfill())
                elif isinstance(obj, Table) and obj.backfill:
                    client.command(obj.backfill, settings={"async_insert": 0})
            except Exception as exc:
                raise SinkError(f"migration {m.version} ({m.name}) failed on {obj.name}: "
                                f"{exc}") from exc
        client.insert("schema_migrations", [(m.version, m.name, dt.datetime.now(dt.UTC))],
                      column_names=["version", "name", "applied_at"],
                      settings={"async_insert": 0})
        applied.append(m.version)
    return applied
