-- geotel schema for ClickHouse cluster 'geotel', database 'geotel'.
-- Generated from sinks/migrations.py by `python -m sinks.cluster --cluster geotel`; do not edit.
-- Needs Keeper and the {shard}/{replica} macros on every node.

CREATE DATABASE IF NOT EXISTS geotel ON CLUSTER 'geotel';

CREATE TABLE IF NOT EXISTS geotel.schema_migrations_local ON CLUSTER 'geotel'
(
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY version;

CREATE TABLE IF NOT EXISTS geotel.schema_migrations ON CLUSTER 'geotel'
(
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = Distributed('geotel', 'geotel', 'schema_migrations_local', cityHash64(version));

CREATE TABLE IF NOT EXISTS geotel.events_all_local ON CLUSTER 'geotel'
(
    event_id UUID,
    rep_id LowCardinality(String),
    device_id LowCardinality(String),
    kind Enum8('ping' = 1, 'check_in' = 2, 'visit_submission' = 3),
    ts DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    received_at DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    lat Nullable(Float64),
    lon Nullable(Float64),
    accuracy_m Nullable(Float32),
    speed_mps Nullable(Float32),
    heading_deg Nullable(Float32),
    altitude_m Nullable(Float32),
    battery_pct Nullable(Float32),
    provider LowCardinality(Nullable(String)),
    is_mock Bool,
    action LowCardinality(Nullable(String)),
    account_id Nullable(String),
    visit_id Nullable(String),
    started_at Nullable(DateTime64(3, 'UTC')),
    ended_at Nullable(DateTime64(3, 'UTC')),
    outcome LowCardinality(Nullable(String)),
    notes String CODEC(ZSTD(3)),
    form Map(LowCardinality(String), String),
    tags Array(LowCardinality(String)),
    photo_count UInt16,
    photos String CODEC(ZSTD(3)),
    order_currency LowCardinality(Nullable(String)),
    order_total Nullable(Decimal(18, 4)),
    order_lines String CODEC(ZSTD(3)),
    territory_id LowCardinality(Nullable(String)),
    region LowCardinality(Nullable(String)),
    in_assigned_territory Nullable(Bool),
    geo_account_id Nullable(String),
    geo_account_distance_m Nullable(Float32),
    geo_version UInt32,
    dedup_ver UInt64 MATERIALIZED 4102444800000 - toUnixTimestamp64Milli(received_at)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', dedup_ver)
PARTITION BY toYYYYMM(ts)
ORDER BY (rep_id, toDate(ts), ts, event_id)
COMMENT 'Every accepted event; may hold not-yet-merged duplicates: query events (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.events_all ON CLUSTER 'geotel'
(
    event_id UUID,
    rep_id LowCardinality(String),
    device_id LowCardinality(String),
    kind Enum8('ping' = 1, 'check_in' = 2, 'visit_submission' = 3),
    ts DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    received_at DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)),
    lat Nullable(Float64),
    lon Nullable(Float64),
    accuracy_m Nullable(Float32),
    speed_mps Nullable(Float32),
    heading_deg Nullable(Float32),
    altitude_m Nullable(Float32),
    battery_pct Nullable(Float32),
    provider LowCardinality(Nullable(String)),
    is_mock Bool,
    action LowCardinality(Nullable(String)),
    account_id Nullable(String),
    visit_id Nullable(String),
    started_at Nullable(DateTime64(3, 'UTC')),
    ended_at Nullable(DateTime64(3, 'UTC')),
    outcome LowCardinality(Nullable(String)),
    notes String CODEC(ZSTD(3)),
    form Map(LowCardinality(String), String),
    tags Array(LowCardinality(String)),
    photo_count UInt16,
    photos String CODEC(ZSTD(3)),
    order_currency LowCardinality(Nullable(String)),
    order_total Nullable(Decimal(18, 4)),
    order_lines String CODEC(ZSTD(3)),
    territory_id LowCardinality(Nullable(String)),
    region LowCardinality(Nullable(String)),
    in_assigned_territory Nullable(Bool),
    geo_account_id Nullable(String),
    geo_account_distance_m Nullable(Float32),
    geo_version UInt32,
    dedup_ver UInt64 MATERIALIZED 4102444800000 - toUnixTimestamp64Milli(received_at)
)
ENGINE = Distributed('geotel', 'geotel', 'events_all_local', cityHash64(rep_id))
COMMENT 'Every accepted event; may hold not-yet-merged duplicates: query events';

CREATE VIEW IF NOT EXISTS geotel.events ON CLUSTER 'geotel' AS
SELECT * FROM geotel.events_all FINAL;

CREATE TABLE IF NOT EXISTS geotel.deadletters_local ON CLUSTER 'geotel'
(
    at DateTime64(3, 'UTC'),
    reason LowCardinality(String),
    detail String,
    source_topic LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    item_index Int32,
    event_id Nullable(UUID),
    rep_id Nullable(String),
    payload String CODEC(ZSTD(3)),
    payload_b64 Nullable(String) CODEC(ZSTD(3))
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(at)
ORDER BY (source_topic, source_partition, source_offset, item_index)
TTL toDateTime(at) + INTERVAL 90 DAY
COMMENT 'Input the pipeline could not use, with the reason (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.deadletters ON CLUSTER 'geotel'
(
    at DateTime64(3, 'UTC'),
    reason LowCardinality(String),
    detail String,
    source_topic LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    item_index Int32,
    event_id Nullable(UUID),
    rep_id Nullable(String),
    payload String CODEC(ZSTD(3)),
    payload_b64 Nullable(String) CODEC(ZSTD(3))
)
ENGINE = Distributed('geotel', 'geotel', 'deadletters_local', cityHash64(source_topic, source_partition, source_offset, item_index))
COMMENT 'Input the pipeline could not use, with the reason';

CREATE TABLE IF NOT EXISTS geotel.rep_daily_all_local ON CLUSTER 'geotel'
(
    day_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    tz LowCardinality(String),
    workday_start Nullable(DateTime64(3, 'UTC')),
    workday_end Nullable(DateTime64(3, 'UTC')),
    workday_start_inferred Bool,
    workday_end_inferred Bool,
    workday_s Float64,
    field_s Float64,
    travel_s Float64,
    customer_s Float64,
    stopped_other_s Float64,
    unknown_s Float64,
    break_s Float64,
    office_home_s Float64,
    in_territory_s Float64,
    out_territory_s Float64,
    distance_m Float64,
    visits UInt16,
    verified_visits UInt16,
    unverified_visits UInt16,
    auto_visits UInt16,
    pings_kept UInt32,
    pings_dropped Map(LowCardinality(String), UInt32),
    clock_offset_s Float32,
    events UInt32,
    version UInt32
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', version)
PARTITION BY toYYYYMM(local_date)
ORDER BY (rep_id, local_date)
COMMENT 'Every derivation of each rep-day; query rep_daily (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.rep_daily_all ON CLUSTER 'geotel'
(
    day_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    tz LowCardinality(String),
    workday_start Nullable(DateTime64(3, 'UTC')),
    workday_end Nullable(DateTime64(3, 'UTC')),
    workday_start_inferred Bool,
    workday_end_inferred Bool,
    workday_s Float64,
    field_s Float64,
    travel_s Float64,
    customer_s Float64,
    stopped_other_s Float64,
    unknown_s Float64,
    break_s Float64,
    office_home_s Float64,
    in_territory_s Float64,
    out_territory_s Float64,
    distance_m Float64,
    visits UInt16,
    verified_visits UInt16,
    unverified_visits UInt16,
    auto_visits UInt16,
    pings_kept UInt32,
    pings_dropped Map(LowCardinality(String), UInt32),
    clock_offset_s Float32,
    events UInt32,
    version UInt32
)
ENGINE = Distributed('geotel', 'geotel', 'rep_daily_all_local', cityHash64(rep_id))
COMMENT 'Every derivation of each rep-day; query rep_daily';

CREATE VIEW IF NOT EXISTS geotel.rep_daily ON CLUSTER 'geotel' AS
SELECT * FROM geotel.rep_daily_all FINAL;

CREATE TABLE IF NOT EXISTS geotel.segments_all_local ON CLUSTER 'geotel'
(
    segment_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    kind Enum8('stop' = 1, 'visit' = 2, 'travel' = 3, 'break' = 4),
    start DateTime64(3, 'UTC'),
    end DateTime64(3, 'UTC'),
    duration_s Float64,
    workday_s Float64,
    lon Nullable(Float64),
    lat Nullable(Float64),
    distance_m Float64,
    place_id Nullable(String),
    place_kind LowCardinality(Nullable(String)),
    visit_id Nullable(String),
    visit_source LowCardinality(Nullable(String)),
    verified Nullable(Bool),
    place_distance_m Nullable(Float32),
    submission_event_id Nullable(UUID),
    inferred Bool,
    n_pings UInt32,
    version UInt32
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(local_date)
ORDER BY (rep_id, local_date, version, segment_id)
COMMENT 'Segments of every derivation; query segments (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.segments_all ON CLUSTER 'geotel'
(
    segment_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    kind Enum8('stop' = 1, 'visit' = 2, 'travel' = 3, 'break' = 4),
    start DateTime64(3, 'UTC'),
    end DateTime64(3, 'UTC'),
    duration_s Float64,
    workday_s Float64,
    lon Nullable(Float64),
    lat Nullable(Float64),
    distance_m Float64,
    place_id Nullable(String),
    place_kind LowCardinality(Nullable(String)),
    visit_id Nullable(String),
    visit_source LowCardinality(Nullable(String)),
    verified Nullable(Bool),
    place_distance_m Nullable(Float32),
    submission_event_id Nullable(UUID),
    inferred Bool,
    n_pings UInt32,
    version UInt32
)
ENGINE = Distributed('geotel', 'geotel', 'segments_all_local', cityHash64(rep_id))
COMMENT 'Segments of every derivation; query segments';

CREATE TABLE IF NOT EXISTS geotel.visit_forms_local ON CLUSTER 'geotel'
(
    event_id UUID,
    rep_id LowCardinality(String),
    account_id String,
    visit_id String,
    started_at DateTime64(3, 'UTC'),
    ended_at DateTime64(3, 'UTC'),
    outcome LowCardinality(String),
    order_currency LowCardinality(Nullable(String)),
    order_total Nullable(Decimal(18, 4)),
    tags Array(LowCardinality(String)),
    form Map(LowCardinality(String), String),
    notes String CODEC(ZSTD(3)),
    photo_count UInt16
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(started_at)
ORDER BY (rep_id, event_id)
COMMENT 'Visit submissions only (a resend folds by event id) (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.visit_forms ON CLUSTER 'geotel'
(
    event_id UUID,
    rep_id LowCardinality(String),
    account_id String,
    visit_id String,
    started_at DateTime64(3, 'UTC'),
    ended_at DateTime64(3, 'UTC'),
    outcome LowCardinality(String),
    order_currency LowCardinality(Nullable(String)),
    order_total Nullable(Decimal(18, 4)),
    tags Array(LowCardinality(String)),
    form Map(LowCardinality(String), String),
    notes String CODEC(ZSTD(3)),
    photo_count UInt16
)
ENGINE = Distributed('geotel', 'geotel', 'visit_forms_local', cityHash64(rep_id))
COMMENT 'Visit submissions only (a resend folds by event id)';

CREATE MATERIALIZED VIEW IF NOT EXISTS geotel.visit_forms_mv ON CLUSTER 'geotel' TO geotel.visit_forms_local AS
SELECT event_id, rep_id,
       assumeNotNull(account_id) AS account_id, assumeNotNull(visit_id) AS visit_id,
       assumeNotNull(started_at) AS started_at, assumeNotNull(ended_at) AS ended_at,
       assumeNotNull(outcome) AS outcome, order_currency, order_total, tags, form, notes,
       photo_count
FROM geotel.events_all_local WHERE kind = 'visit_submission';

CREATE TABLE IF NOT EXISTS geotel.transitions_all_local ON CLUSTER 'geotel'
(
    transition_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    kind Enum8('territory_enter' = 1, 'territory_exit' = 2, 'account_arrive' = 3, 'account_leave' = 4),
    subject_id String,
    at DateTime64(3, 'UTC'),
    lon Nullable(Float64),
    lat Nullable(Float64),
    geo_version UInt32,
    version UInt32
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(local_date)
ORDER BY (rep_id, local_date, version, at, transition_id)
COMMENT 'Territory/account transitions of every derivation; query transitions (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.transitions_all ON CLUSTER 'geotel'
(
    transition_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    kind Enum8('territory_enter' = 1, 'territory_exit' = 2, 'account_arrive' = 3, 'account_leave' = 4),
    subject_id String,
    at DateTime64(3, 'UTC'),
    lon Nullable(Float64),
    lat Nullable(Float64),
    geo_version UInt32,
    version UInt32
)
ENGINE = Distributed('geotel', 'geotel', 'transitions_all_local', cityHash64(rep_id))
COMMENT 'Territory/account transitions of every derivation; query transitions';

CREATE TABLE IF NOT EXISTS geotel.rep_last_position_agg_local ON CLUSTER 'geotel'
(
    rep_id LowCardinality(String),
    last_ts SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    last_lat AggregateFunction(argMax, Float64, DateTime64(3, 'UTC')),
    last_lon AggregateFunction(argMax, Float64, DateTime64(3, 'UTC')),
    last_accuracy_m AggregateFunction(argMax, Nullable(Float32), DateTime64(3, 'UTC')),
    last_territory_id AggregateFunction(argMax, Nullable(String), DateTime64(3, 'UTC'))
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY rep_id
COMMENT 'Latest ping per rep (idempotent aggregates); query rep_last_position (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.rep_last_position_agg ON CLUSTER 'geotel'
(
    rep_id LowCardinality(String),
    last_ts SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    last_lat AggregateFunction(argMax, Float64, DateTime64(3, 'UTC')),
    last_lon AggregateFunction(argMax, Float64, DateTime64(3, 'UTC')),
    last_accuracy_m AggregateFunction(argMax, Nullable(Float32), DateTime64(3, 'UTC')),
    last_territory_id AggregateFunction(argMax, Nullable(String), DateTime64(3, 'UTC'))
)
ENGINE = Distributed('geotel', 'geotel', 'rep_last_position_agg_local', cityHash64(rep_id))
COMMENT 'Latest ping per rep (idempotent aggregates); query rep_last_position';

CREATE MATERIALIZED VIEW IF NOT EXISTS geotel.rep_last_position_mv ON CLUSTER 'geotel' TO geotel.rep_last_position_agg_local AS
SELECT rep_id,
       max(ts) AS last_ts,
       argMaxState(assumeNotNull(lat), ts) AS last_lat,
       argMaxState(assumeNotNull(lon), ts) AS last_lon,
       argMaxState(CAST(accuracy_m, 'Nullable(Float32)'), ts) AS last_accuracy_m,
       argMaxState(CAST(territory_id, 'Nullable(String)'), ts) AS last_territory_id
FROM geotel.events_all_local
WHERE kind = 'ping' AND lat IS NOT NULL AND NOT is_mock
GROUP BY rep_id;

CREATE VIEW IF NOT EXISTS geotel.rep_last_position ON CLUSTER 'geotel' AS
SELECT rep_id, max(last_ts) AS ts,
       argMaxMerge(last_lat) AS lat, argMaxMerge(last_lon) AS lon,
       argMaxMerge(last_accuracy_m) AS accuracy_m,
       argMaxMerge(last_territory_id) AS territory_id
FROM geotel.rep_last_position_agg GROUP BY rep_id;

CREATE TABLE IF NOT EXISTS geotel.territory_hourly_agg_local ON CLUSTER 'geotel'
(
    territory LowCardinality(String),
    hour DateTime('UTC'),
    active_reps AggregateFunction(uniqExact, String),
    pings AggregateFunction(uniqExact, UUID),
    visit_starts AggregateFunction(uniqExact, UUID)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (territory, hour)
COMMENT 'Per territory and hour (idempotent aggregates); query territory_hourly (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.territory_hourly_agg ON CLUSTER 'geotel'
(
    territory LowCardinality(String),
    hour DateTime('UTC'),
    active_reps AggregateFunction(uniqExact, String),
    pings AggregateFunction(uniqExact, UUID),
    visit_starts AggregateFunction(uniqExact, UUID)
)
ENGINE = Distributed('geotel', 'geotel', 'territory_hourly_agg_local', cityHash64(territory, hour))
COMMENT 'Per territory and hour (idempotent aggregates); query territory_hourly';

CREATE MATERIALIZED VIEW IF NOT EXISTS geotel.territory_hourly_mv ON CLUSTER 'geotel' TO geotel.territory_hourly_agg_local AS
SELECT
       assumeNotNull(CAST(territory_id, 'Nullable(String)')) AS territory,
       toStartOfHour(ts) AS hour,
       uniqExactState(CAST(rep_id, 'String')) AS active_reps,
       uniqExactStateIf(event_id, kind = 'ping') AS pings,
       uniqExactStateIf(event_id, kind = 'check_in' AND action = 'visit_start') AS visit_starts
FROM geotel.events_all_local
WHERE territory_id IS NOT NULL
GROUP BY territory, hour;

CREATE VIEW IF NOT EXISTS geotel.territory_hourly ON CLUSTER 'geotel' AS
SELECT territory AS territory_id, hour,
       uniqExactMerge(active_reps) AS active_reps, uniqExactMerge(pings) AS pings,
       uniqExactMerge(visit_starts) AS visit_starts
FROM geotel.territory_hourly_agg GROUP BY territory, hour;

CREATE TABLE IF NOT EXISTS geotel.segments_current_local ON CLUSTER 'geotel'
(
    segment_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    kind Enum8('stop' = 1, 'visit' = 2, 'travel' = 3, 'break' = 4),
    start DateTime64(3, 'UTC'),
    end DateTime64(3, 'UTC'),
    duration_s Float64,
    workday_s Float64,
    lon Nullable(Float64),
    lat Nullable(Float64),
    distance_m Float64,
    place_id Nullable(String),
    place_kind LowCardinality(Nullable(String)),
    visit_id Nullable(String),
    visit_source LowCardinality(Nullable(String)),
    verified Nullable(Bool),
    place_distance_m Nullable(Float32),
    submission_event_id Nullable(UUID),
    inferred Bool,
    n_pings UInt32,
    version UInt32,
    is_deleted UInt8,
    outcome LowCardinality(Nullable(String)),
    order_currency LowCardinality(Nullable(String)),
    order_total Nullable(Decimal(18, 4)),
    tags Array(LowCardinality(String)),
    form Map(LowCardinality(String), String),
    notes String CODEC(ZSTD(3)),
    photo_count UInt16
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', version, is_deleted)
PARTITION BY toMonday(local_date)
ORDER BY (rep_id, local_date, segment_id)
COMMENT 'Latest version of each segment id, retracted ids as is_deleted rows; query segments (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.segments_current ON CLUSTER 'geotel'
(
    segment_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    kind Enum8('stop' = 1, 'visit' = 2, 'travel' = 3, 'break' = 4),
    start DateTime64(3, 'UTC'),
    end DateTime64(3, 'UTC'),
    duration_s Float64,
    workday_s Float64,
    lon Nullable(Float64),
    lat Nullable(Float64),
    distance_m Float64,
    place_id Nullable(String),
    place_kind LowCardinality(Nullable(String)),
    visit_id Nullable(String),
    visit_source LowCardinality(Nullable(String)),
    verified Nullable(Bool),
    place_distance_m Nullable(Float32),
    submission_event_id Nullable(UUID),
    inferred Bool,
    n_pings UInt32,
    version UInt32,
    is_deleted UInt8,
    outcome LowCardinality(Nullable(String)),
    order_currency LowCardinality(Nullable(String)),
    order_total Nullable(Decimal(18, 4)),
    tags Array(LowCardinality(String)),
    form Map(LowCardinality(String), String),
    notes String CODEC(ZSTD(3)),
    photo_count UInt16
)
ENGINE = Distributed('geotel', 'geotel', 'segments_current_local', cityHash64(rep_id))
COMMENT 'Latest version of each segment id, retracted ids as is_deleted rows; query segments';

CREATE TABLE IF NOT EXISTS geotel.closed_rep_days_local ON CLUSTER 'geotel'
(
    rep_id LowCardinality(String),
    local_date Date,
    watermark DateTime64(3, 'UTC'),
    mode LowCardinality(String),
    decimals UInt8,
    closed_at DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', closed_at)
PARTITION BY toYYYYMM(local_date)
ORDER BY (rep_id, local_date)
COMMENT 'Rep-days closed by the sessions stage and how their off-duty positions were redacted (streams/privacy.py); the sweep redacts closed days missing here (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.closed_rep_days ON CLUSTER 'geotel'
(
    rep_id LowCardinality(String),
    local_date Date,
    watermark DateTime64(3, 'UTC'),
    mode LowCardinality(String),
    decimals UInt8,
    closed_at DateTime64(3, 'UTC')
)
ENGINE = Distributed('geotel', 'geotel', 'closed_rep_days_local', cityHash64(rep_id))
COMMENT 'Rep-days closed by the sessions stage and how their off-duty positions were redacted (streams/privacy.py); the sweep redacts closed days missing here';

CREATE TABLE IF NOT EXISTS geotel.visits_current_local ON CLUSTER 'geotel'
(
    segment_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    kind Enum8('stop' = 1, 'visit' = 2, 'travel' = 3, 'break' = 4),
    start DateTime64(3, 'UTC'),
    end DateTime64(3, 'UTC'),
    duration_s Float64,
    lon Nullable(Float64),
    lat Nullable(Float64),
    place_id Nullable(String),
    place_kind LowCardinality(Nullable(String)),
    visit_id Nullable(String),
    visit_source LowCardinality(Nullable(String)),
    verified Nullable(Bool),
    place_distance_m Nullable(Float32),
    submission_event_id Nullable(UUID),
    outcome LowCardinality(Nullable(String)),
    order_currency LowCardinality(Nullable(String)),
    order_total Nullable(Decimal(18, 4)),
    tags Array(LowCardinality(String)),
    form Map(LowCardinality(String), String),
    notes String CODEC(ZSTD(3)),
    photo_count UInt16,
    version UInt32,
    is_deleted UInt8
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', version, is_deleted)
PARTITION BY toMonday(local_date)
ORDER BY (rep_id, local_date, segment_id)
COMMENT 'Latest version of each visit with its form, retracted ids as is_deleted rows (from segments_current); query visits (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.visits_current ON CLUSTER 'geotel'
(
    segment_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    kind Enum8('stop' = 1, 'visit' = 2, 'travel' = 3, 'break' = 4),
    start DateTime64(3, 'UTC'),
    end DateTime64(3, 'UTC'),
    duration_s Float64,
    lon Nullable(Float64),
    lat Nullable(Float64),
    place_id Nullable(String),
    place_kind LowCardinality(Nullable(String)),
    visit_id Nullable(String),
    visit_source LowCardinality(Nullable(String)),
    verified Nullable(Bool),
    place_distance_m Nullable(Float32),
    submission_event_id Nullable(UUID),
    outcome LowCardinality(Nullable(String)),
    order_currency LowCardinality(Nullable(String)),
    order_total Nullable(Decimal(18, 4)),
    tags Array(LowCardinality(String)),
    form Map(LowCardinality(String), String),
    notes String CODEC(ZSTD(3)),
    photo_count UInt16,
    version UInt32,
    is_deleted UInt8
)
ENGINE = Distributed('geotel', 'geotel', 'visits_current_local', cityHash64(rep_id))
COMMENT 'Latest version of each visit with its form, retracted ids as is_deleted rows (from segments_current); query visits';

CREATE MATERIALIZED VIEW IF NOT EXISTS geotel.visits_current_mv ON CLUSTER 'geotel' TO geotel.visits_current_local AS
SELECT segment_id, rep_id, local_date, kind, start, `end`, duration_s, lon, lat, place_id, place_kind, visit_id, visit_source, verified, place_distance_m, submission_event_id, outcome, order_currency, order_total, tags, form, notes, photo_count, version, is_deleted
FROM geotel.segments_current_local WHERE kind = 'visit' OR is_deleted = 1;

CREATE OR REPLACE VIEW geotel.segments ON CLUSTER 'geotel' AS
SELECT segment_id, rep_id, local_date, kind, start, `end`, duration_s, workday_s, lon, lat, distance_m, place_id, place_kind, visit_id, visit_source, verified, place_distance_m, submission_event_id, inferred, n_pings, version FROM geotel.segments_current FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;

CREATE OR REPLACE VIEW geotel.visits ON CLUSTER 'geotel' AS
SELECT segment_id, rep_id, local_date, start, `end`, duration_s,
       place_id AS account_id, visit_id, visit_source AS source, verified,
       place_distance_m AS distance_m, lon, lat, submission_event_id,
       outcome, order_currency, order_total, tags, form, notes, photo_count
FROM geotel.visits_current FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;

CREATE TABLE IF NOT EXISTS geotel.accounts_all_local ON CLUSTER 'geotel'
(
    account_id String,
    name Nullable(String),
    kind LowCardinality(String),
    territory_id LowCardinality(Nullable(String)),
    region LowCardinality(Nullable(String)),
    lon Float64,
    lat Float64,
    radius_m Float32,
    geo_version UInt32
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', geo_version)
ORDER BY account_id
COMMENT 'Customers and offices of every geo index version the workers used (homes are private and never stored); query accounts (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.accounts_all ON CLUSTER 'geotel'
(
    account_id String,
    name Nullable(String),
    kind LowCardinality(String),
    territory_id LowCardinality(Nullable(String)),
    region LowCardinality(Nullable(String)),
    lon Float64,
    lat Float64,
    radius_m Float32,
    geo_version UInt32
)
ENGINE = Distributed('geotel', 'geotel', 'accounts_all_local', cityHash64(account_id))
COMMENT 'Customers and offices of every geo index version the workers used (homes are private and never stored); query accounts';

CREATE VIEW IF NOT EXISTS geotel.accounts ON CLUSTER 'geotel' AS
SELECT * FROM geotel.accounts_all FINAL WHERE geo_version = (SELECT max(geo_version) FROM geotel.accounts_all);

CREATE TABLE IF NOT EXISTS geotel.transitions_current_local ON CLUSTER 'geotel'
(
    transition_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    kind Enum8('territory_enter' = 1, 'territory_exit' = 2, 'account_arrive' = 3, 'account_leave' = 4),
    subject_id String,
    at DateTime64(3, 'UTC'),
    lon Nullable(Float64),
    lat Nullable(Float64),
    geo_version UInt32,
    version UInt32,
    is_deleted UInt8
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', version, is_deleted)
PARTITION BY toMonday(local_date)
ORDER BY (rep_id, local_date, transition_id)
COMMENT 'Latest version of each transition id, retracted ids as is_deleted rows; query transitions (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.transitions_current ON CLUSTER 'geotel'
(
    transition_id UUID,
    rep_id LowCardinality(String),
    local_date Date,
    kind Enum8('territory_enter' = 1, 'territory_exit' = 2, 'account_arrive' = 3, 'account_leave' = 4),
    subject_id String,
    at DateTime64(3, 'UTC'),
    lon Nullable(Float64),
    lat Nullable(Float64),
    geo_version UInt32,
    version UInt32,
    is_deleted UInt8
)
ENGINE = Distributed('geotel', 'geotel', 'transitions_current_local', cityHash64(rep_id))
COMMENT 'Latest version of each transition id, retracted ids as is_deleted rows; query transitions';

CREATE OR REPLACE VIEW geotel.transitions ON CLUSTER 'geotel' AS
SELECT transition_id, rep_id, local_date, kind, subject_id, at, lon, lat, geo_version, version FROM geotel.transitions_current FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;

CREATE TABLE IF NOT EXISTS geotel.rep_territories_all_local ON CLUSTER 'geotel'
(
    rep_id LowCardinality(String),
    territory_id LowCardinality(String),
    geo_version UInt32
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', geo_version)
ORDER BY (rep_id, territory_id)
COMMENT 'Territories assigned to each rep, of every geo index version the workers used; query rep_territories (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.rep_territories_all ON CLUSTER 'geotel'
(
    rep_id LowCardinality(String),
    territory_id LowCardinality(String),
    geo_version UInt32
)
ENGINE = Distributed('geotel', 'geotel', 'rep_territories_all_local', cityHash64(rep_id))
COMMENT 'Territories assigned to each rep, of every geo index version the workers used; query rep_territories';

CREATE VIEW IF NOT EXISTS geotel.rep_territories ON CLUSTER 'geotel' AS
SELECT * FROM geotel.rep_territories_all FINAL WHERE geo_version = (SELECT max(geo_version) FROM geotel.rep_territories_all);

CREATE TABLE IF NOT EXISTS geotel.reps_all_local ON CLUSTER 'geotel'
(
    rep_id String,
    name Nullable(String),
    team Nullable(String),
    manager Nullable(String),
    tz Nullable(String),
    geo_version UInt32
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', geo_version)
ORDER BY rep_id
COMMENT 'The rep roster of every geo index version the workers used; query reps (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.reps_all ON CLUSTER 'geotel'
(
    rep_id String,
    name Nullable(String),
    team Nullable(String),
    manager Nullable(String),
    tz Nullable(String),
    geo_version UInt32
)
ENGINE = Distributed('geotel', 'geotel', 'reps_all_local', cityHash64(rep_id))
COMMENT 'The rep roster of every geo index version the workers used; query reps';

CREATE VIEW IF NOT EXISTS geotel.reps ON CLUSTER 'geotel' AS
SELECT * FROM geotel.reps_all FINAL WHERE geo_version = (SELECT max(geo_version) FROM geotel.reps_all);

CREATE TABLE IF NOT EXISTS geotel.alerts_all_local ON CLUSTER 'geotel'
(
    alert_id UUID,
    state LowCardinality(String),
    rule LowCardinality(String),
    rep_id LowCardinality(String),
    local_date Date,
    at DateTime64(3, 'UTC'),
    detail String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toMonday(local_date)
ORDER BY (rep_id, local_date, alert_id, state)
COMMENT 'Each field.alerts record once per (alert_id, state) after merges; query alerts (replicated shard-local data)';

CREATE TABLE IF NOT EXISTS geotel.alerts_all ON CLUSTER 'geotel'
(
    alert_id UUID,
    state LowCardinality(String),
    rule LowCardinality(String),
    rep_id LowCardinality(String),
    local_date Date,
    at DateTime64(3, 'UTC'),
    detail String
)
ENGINE = Distributed('geotel', 'geotel', 'alerts_all_local', cityHash64(rep_id))
COMMENT 'Each field.alerts record once per (alert_id, state) after merges; query alerts';

CREATE VIEW IF NOT EXISTS geotel.alerts ON CLUSTER 'geotel' AS
SELECT * FROM geotel.alerts_all FINAL;
