#!/bin/bash
# First start of the compose ClickHouse server: the read-only user of the SQL endpoint.
# SELECT on geotel.* only, no SOURCES grants (file, url, s3 ... need them). readonly=2 lets the
# service set its session's limits and then readonly=1; the constraints hold for any client
# of this user (MIN 1: 0 would mean "no limit").
set -euo pipefail
: "${CLICKHOUSE_READER_PASSWORD:?}"
pw="${CLICKHOUSE_READER_PASSWORD//\\/\\\\}"
pw="${pw//\'/\\\'}"
clickhouse client --user "${CLICKHOUSE_USER:-default}" --password "${CLICKHOUSE_PASSWORD:-}" \
  --multiquery <<SQL
CREATE DATABASE IF NOT EXISTS geotel;
CREATE SETTINGS PROFILE IF NOT EXISTS geotel_reader SETTINGS
    readonly = 2,
    max_execution_time = 60 MIN 1 MAX 60,
    max_memory_usage = 4000000000 MIN 1 MAX 4000000000,
    max_result_rows = 1000000 MIN 1 MAX 1000000,
    max_result_bytes = 1000000000 MIN 1 MAX 1000000000,
    max_bytes_to_read = 200000000000 MIN 1 MAX 200000000000,
    max_threads = 4 MIN 1 MAX 8;
CREATE USER IF NOT EXISTS geotel_reader IDENTIFIED WITH sha256_password BY '${pw}'
    SETTINGS PROFILE 'geotel_reader';
GRANT SELECT ON geotel.* TO geotel_reader;
SQL
