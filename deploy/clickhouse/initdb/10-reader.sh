#!/bin/bash
# First start of the compose ClickHouse server: the read-only user of the SQL endpoint.
# SELECT on geotel.* only; readonly=2 still lets the endpoint set its own limits per query.
set -euo pipefail
: "${CLICKHOUSE_READER_PASSWORD:?}"
pw="${CLICKHOUSE_READER_PASSWORD//\\/\\\\}"
pw="${pw//\'/\\\'}"
clickhouse client --user "${CLICKHOUSE_USER:-default}" --password "${CLICKHOUSE_PASSWORD:-}" \
  --multiquery <<SQL
CREATE DATABASE IF NOT EXISTS geotel;
CREATE SETTINGS PROFILE IF NOT EXISTS geotel_reader
    SETTINGS readonly = 2, max_execution_time = 60, max_memory_usage = 4000000000;
CREATE USER IF NOT EXISTS geotel_reader IDENTIFIED WITH sha256_password BY '${pw}'
    SETTINGS PROFILE 'geotel_reader';
GRANT SELECT ON geotel.* TO geotel_reader;
SQL
