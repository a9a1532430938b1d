#!/bin/bash
# Create geotel's topics (idempotent: --if-not-exists). Runs in the Kafka image, which ships
# kafka-topics.sh. The same script is the k8s topics Job (deploy/kubernetes/topics-job.yaml).
#
#   BOOTSTRAP   host:port list of the brokers                       (required)
#   PARTITIONS  partitions of every keyed pipeline topic: the most worker processes that
#               can share the work; keep it = GEOTEL_KAFKA__TOPIC_PARTITIONS
#   RF          replication factor (3), MIN_ISR min.insync.replicas (2)
#   PREFIX      topic prefix, = GEOTEL_KAFKA__TOPIC_PREFIX
#   COMMAND_CONFIG  optional client properties file (SASL/TLS)
set -euo pipefail

: "${BOOTSTRAP:?set BOOTSTRAP}"
PARTITIONS="${PARTITIONS:-12}"
RF="${RF:-3}"
MIN_ISR="${MIN_ISR:-2}"
PREFIX="${PREFIX:-}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
DAY_MS=86400000
# An upload is one message of up to GEOTEL_INGEST__MAX_BODY_BYTES (2 MiB) as JSON; the
# producer allows 8 MiB. The broker default (1 MiB) would refuse large uploads.
BATCH_BYTES=8388608
# Territory and account sets are one gzip'd GeoJSON message each (streams/broker.py).
SET_BYTES=33554432

args=()
if [[ -n "${COMMAND_CONFIG:-}" ]]; then args+=(--command-config "$COMMAND_CONFIG"); fi

for _ in $(seq 1 60); do
  if "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" ${args[@]+"${args[@]}"} --list \
      >/dev/null 2>&1; then break; fi
  echo "waiting for Kafka at $BOOTSTRAP ..."; sleep 2
done

create() {  # create NAME PARTITIONS [--config k=v ...]
  local name="$PREFIX$1" parts="$2"; shift 2
  "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" ${args[@]+"${args[@]}"} --create \
    --if-not-exists --topic "$name" --partitions "$parts" --replication-factor "$RF" \
    --config "min.insync.replicas=$MIN_ISR" "$@"
  echo "topic $name: $parts partitions, replication $RF $*"
}

# Pipeline topics, keyed (raw by device_id, the rest by rep_id).
create telemetry.raw "$PARTITIONS" --config max.message.bytes=$BATCH_BYTES --config retention.ms=$((35 * DAY_MS))
create telemetry.enriched "$PARTITIONS" --config max.message.bytes=$BATCH_BYTES --config retention.ms=$((7 * DAY_MS))
create telemetry.deadletter "$PARTITIONS" --config max.message.bytes=$BATCH_BYTES --config retention.ms=$((30 * DAY_MS))
# Registries: compacted, one partition (every ingest process and worker reads all of it).
create geotel.devices 1 --config cleanup.policy=compact
create geotel.territories 1 --config cleanup.policy=compact --config max.message.bytes=$SET_BYTES
create geotel.accounts 1 --config cleanup.policy=compact --config max.message.bytes=$SET_BYTES
create geotel.places 1 --config cleanup.policy=compact --config max.message.bytes=$SET_BYTES
create geotel.reps 1 --config cleanup.policy=compact --config max.message.bytes=$SET_BYTES
# Derived records for downstream services, keyed by rep_id.
create field.transitions "$PARTITIONS" --config max.message.bytes=$BATCH_BYTES --config retention.ms=$((7 * DAY_MS))
create field.segments "$PARTITIONS" --config max.message.bytes=$BATCH_BYTES --config retention.ms=$((7 * DAY_MS))
create field.workdays "$PARTITIONS" --config max.message.bytes=$BATCH_BYTES --config retention.ms=$((7 * DAY_MS))
create field.alerts "$PARTITIONS" --config max.message.bytes=$BATCH_BYTES --config retention.ms=$((30 * DAY_MS))

"$KAFKA_BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" ${args[@]+"${args[@]}"} --describe \
  --topics-with-overrides
