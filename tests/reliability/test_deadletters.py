"""Anything produced straight onto ``telemetry.raw`` (not through ingest) is judged by the
worker: what cannot be used goes to ``telemetry.deadletter`` and the ``deadletters`` table
with a reason, and valid messages produced AFTER it on the SAME partition are still stored:
a bad message never stalls its partition."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.conftest import Stack, wait_for
from tests.reliability.conftest import sql_in

pytestmark = pytest.mark.integration

PARTITIONS = 4


def _event(**kw: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {"event_id": str(uuid.uuid4()), "device_id": "dev-raw-1", "rep_id": "rep-raw-1",
            "kind": "ping", "ts": (now - dt.timedelta(minutes=5)).isoformat(),
            "received_at": now.isoformat(), "lat": 52.5, "lon": 13.4, **kw}


def _deep(n: int) -> bytes:
    return b'{"events":' + b"[" * n + b"]" * n + b"}"


#: (value, reasons allowed for the message as a whole, or None when judged item by item)
POISON: list[tuple[bytes | None, set[str]]] = [
    (b"\xff\xfe garbage \x00\x80", {"undecodable"}),
    (bytes(range(256)), {"undecodable"}),
    (b'{"events": [', {"undecodable"}),
    (b'{"lat": NaN}', {"undecodable"}),
    (b"1e400", {"undecodable"}),
    (_deep(2000), {"undecodable"}),
    (None, {"bad_shape"}),  # a tombstone
    (b"", {"undecodable", "bad_shape"}),
    (b"42", {"bad_shape"}),
    (b'"just a string"', {"bad_shape"}),
    (b"null", {"bad_shape"}),
    (b'{"events": "nope"}', {"bad_shape"}),
    (b'{"events": []}', {"bad_shape"}),
    (b"[]", {"bad_shape"}),
    (b'{"hello": "world"}', {"invalid"}),
    (b"[1, 2, 3]", {"invalid"}),
    (orjson.dumps({"events": [_event(lat="north")]}), {"invalid"}),
    (orjson.dumps({"events": [_event(kind="teleport")]}), {"invalid"}),
    (orjson.dumps({"events": [_event(ts="2026-01-01T00:00:00")]}), {"invalid"}),  # naive
    (orjson.dumps({"events": [_event(ts="1999-01-01T00:00:00+00:00")]}), {"too_old"}),
    (orjson.dumps({"events": [_event(ts="2999-01-01T00:00:00+00:00")]}), {"in_future", "invalid"}),
    (orjson.dumps({"events": [_event(event_id="not-a-uuid")]}), {"invalid"}),
]


@pytest.fixture(scope="module")
def raw_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("raw"))
    s.start()
    try:
        yield s
    finally:
        s.stop()


def test_bad_messages_go_to_deadletter_and_the_partition_keeps_flowing(
        raw_stack: Stack) -> None:
    stack = raw_stack
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all",
                             max_request_size=8 * 1024 * 1024)
    bad: dict[tuple[int, int], set[str]] = {}
    mixed_bad: dict[tuple[int, int], set[str]] = {}
    good_ids: list[str] = []
    t_last_good = 0.0
    try:
        for p in range(PARTITIONS):
            for value, reasons in POISON:
                md = producer.send("telemetry.raw", key=b"k", value=value, partition=p).get(10)
                bad[(p, md.offset)] = reasons
            # one message holding valid and invalid events: the valid ones are stored
            ok = _event()
            md = producer.send("telemetry.raw", key=b"k", partition=p, value=orjson.dumps(
                {"events": [_event(lat=200.0), ok, "not an event"]})).get(10)
            mixed_bad[(p, md.offset)] = {"invalid"}
            good_ids.append(ok["event_id"])
            # and valid messages produced after all of it, on the same partition
            for _ in range(3):
                evs = [_event() for _ in range(50)]
                producer.send("telemetry.raw", key=b"k", partition=p,
                              value=orjson.dumps({"events": evs})).get(10)
                good_ids.extend(e["event_id"] for e in evs)
            t_last_good = time.monotonic()
    finally:
        producer.close()

    wait_for(lambda: int(stack.scalar(
        f"SELECT count() FROM events WHERE event_id IN ({sql_in(good_ids)})")) == len(good_ids),
        60, f"the {len(good_ids)} valid events produced after the bad ones are stored")
    stored_after_s = time.monotonic() - t_last_good

    # dead letters are written in a batch of their own: they may land just after the events
    n_letters = len(bad) + 2 * len(mixed_bad)
    wait_for(lambda: int(stack.scalar(
        "SELECT count() FROM deadletters FINAL WHERE source_topic = 'telemetry.raw'"))
        >= n_letters, 30, f"{n_letters} dead letters stored")
    rows = stack.sql("SELECT source_partition AS p, source_offset AS o, item_index AS i, "
                     "reason, detail FROM deadletters FINAL WHERE source_topic = 'telemetry.raw'")
    letters: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in rows:
        letters.setdefault((int(r["p"]), int(r["o"])), []).append(r)
    for where, reasons in {**bad, **mixed_bad}.items():
        got = letters.get(where)
        assert got, f"no dead letter for partition/offset {where}"
        assert all(r["reason"] in reasons and r["detail"] for r in got), (where, got)
    for where in mixed_bad:
        assert sorted(int(r["i"]) for r in letters[where]) == [0, 2]

    # the same letters are on the topic, with their reason
    consumer = KafkaConsumer("telemetry.deadletter", bootstrap_servers=stack.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=4000,
                             fetch_max_bytes=64 * 1024 * 1024)
    on_topic = {(d["source_partition"], d["source_offset"]): d
                for d in (orjson.loads(m.value) for m in consumer)}
    consumer.close()
    missing = [w for w in bad if w not in on_topic]
    assert not missing, missing
    assert all(on_topic[w]["reason"] in bad[w] and on_topic[w]["detail"] for w in bad)
    print(f"RESULT deadletters poison_messages={len(bad) + len(mixed_bad)} "
          f"partitions={PARTITIONS} valid_after={len(good_ids)} "
          f"stored_within_s={stored_after_s:.1f}")


def test_out_of_range_times_on_raw_do_not_stall_the_pipeline(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.start()
    try:
        producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        for ev in (_event(ts="0001-01-01T00:00:00+14:00"),
                   _event(received_at="9999-12-31T23:30:00+00:00")):
            producer.send("telemetry.raw", key=b"k", partition=0,
                          value=orjson.dumps({"events": [ev]})).get(10)
        after = [_event() for _ in range(3)]
        for p, ev in enumerate(after):
            producer.send("telemetry.raw", key=b"k", partition=p,
                          value=orjson.dumps({"events": [ev]})).get(10)
        producer.close()
        wait_for(lambda: int(stack.scalar(
            f"SELECT count() FROM events WHERE event_id IN ({sql_in(e['event_id'] for e in after)})"
        )) == len(after), 30, "valid events produced after the poison pill are stored")
        # dead letters are written in a batch of their own: they may land just after
        wait_for(lambda: int(stack.scalar("SELECT count() FROM deadletters")) >= 2, 30,
                 "both poison pills dead-lettered")
    finally:
        stack.stop(timeout_s=10)
