"""Every derived message on the topics validates against its exported JSON Schema.

The field data of this package (simulated reps through the real stack, a too-late event and
bytes that are not JSON on ``telemetry.raw``) produce every kind of derived message: work
days, segments of each kind, transitions of each kind, alerts raised and resolved, dead
letters. Each message of each
derived topic is read back from the embedded broker and checked against the committed file
under schemas/json/ that docs/topics.md points consumers to."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import jsonschema
import pytest
from kafka import KafkaConsumer, TopicPartition

from schemas.topics import SCHEMA_FILES, TOPIC_VALUES
from streams.broker import log_end_offsets
from tests.analysts.fielddata import FieldData
from tests.conftest import ROOT, Stack

pytestmark = pytest.mark.integration

SCHEMA_DIR = ROOT / "schemas" / "json"


def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of ``topic`` from the beginning to its end now (no consumer group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=2000, max_partition_fetch_bytes=32 << 20)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert tps, f"{topic} has no partitions"
        ends = log_end_offsets(consumer, tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        values: list[bytes] = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                values += [r.value for r in records if r.offset < ends[tp]]
        return values
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def messages(field: tuple[Stack, FieldData]) -> dict[str, list[dict[str, Any]]]:
    stack, _ = field
    stack.wait_alerts()  # field.alerts: what the rules stage made of the field data
    out: dict[str, list[dict[str, Any]]] = {}
    for topic in TOPIC_VALUES:
        out[topic] = [json.loads(v) for v in read_topic(stack.bootstrap, topic)]
    return out


def validator(topic: str) -> jsonschema.Draft202012Validator:
    (stem,) = [s for s, t in SCHEMA_FILES.items() if t == topic]
    schema = json.loads((SCHEMA_DIR / f"{stem}.json").read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("topic", sorted(TOPIC_VALUES))
def test_every_message_validates_against_its_exported_schema(
        messages: dict[str, list[dict[str, Any]]], topic: str) -> None:
    check = validator(topic)
    assert messages[topic], f"nothing on {topic}"
    for i, msg in enumerate(messages[topic]):
        errors = sorted(check.iter_errors(msg), key=lambda e: list(e.path))
        assert not errors, f"{topic} message {i}: {errors[0].message} at {list(errors[0].path)}"
        # and the consumer-side decode with the same model gives back the same JSON
        model = TOPIC_VALUES[topic].model_validate(msg)
        assert json.loads(model.model_dump_json()) == msg


def test_every_kind_of_derived_message_was_checked(
        messages: dict[str, list[dict[str, Any]]], field: tuple[Stack, FieldData]) -> None:
    _, data = field
    days = {(m["rep_id"], m["local_date"]) for m in messages["field.workdays"]}
    assert len(days) >= len(data.reps) * len(data.days)
    segs = Counter(s["kind"] for m in messages["field.segments"] for s in m["segments"])
    assert set(segs) == {"stop", "visit", "travel", "break"}, segs
    sources = Counter(s["visit_source"] for m in messages["field.segments"]
                      for s in m["segments"] if s["kind"] == "visit")
    assert "check_in" in sources, sources
    # visits carry their form's facts (decimal order totals as strings among them)
    visits = [s for m in messages["field.segments"] for s in m["segments"]
              if s["kind"] == "visit"]
    assert any(s["outcome"] for s in visits)
    assert any(isinstance(s["order_total"], str) for s in visits)
    trs = Counter(t["kind"] for m in messages["field.transitions"] for t in m["transitions"])
    assert set(trs) == {"territory_enter", "territory_exit", "account_arrive",
                        "account_leave"}, trs
    alerts = Counter((m["rule"], m["state"]) for m in messages["field.alerts"])
    assert {s for _, s in alerts} == {"raised", "resolved"}, alerts
    assert len({(m["alert_id"], m["state"]) for m in messages["field.alerts"]}) == sum(
        alerts.values()), "an alert record was published twice"
    reasons = Counter(m["reason"] for m in messages["telemetry.deadletter"])
    assert {"too_late", "undecodable"} <= set(reasons), reasons
