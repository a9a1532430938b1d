"""The worker's columnar intake agrees with the pydantic reference on every message.

``processors.intake_columns.IntakeBatch`` decodes ordinary uploads with msgspec and checks
ids and times on whole columns; everything else takes the reference path. So its decisions
and reject reasons are the reference's as long as the typed path never accepts what
pydantic rejects and never accepts with other values. Hypothesis draws messages of items
around the valid ones (the generators of test_intake_fast.py: NaN, huge and boolean
numbers, numeric strings, odd or out-of-range times and offsets, wrong types, unknown kinds
and actions, padded identifiers, extra fields), alone and beside a visit submission (which
sends the message through the item-by-item path), and compares each message's accepted
events, value for value, and its rejects with ``parse_message``'s.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processors.intake import TimeLimits, parse_message
from processors.intake_columns import IntakeBatch
from schemas.columns import EVENT_SCHEMA, STORE_COLUMNS, EventColumns
from sinks.migrations import EVENT_COLUMNS
from sinks.rows import event_base_row
from tests.conftest import sized
from tests.processors.test_intake_fast import LIMITS, RCV, items

VISIT = {"event_id": "5b0e2a4e-9d1b-4c0e-8a53-2f8f6f0f4a11", "device_id": "dev-1",
         "rep_id": "rep-1", "kind": "visit_submission", "ts": "2026-11-02T11:00:00Z",
         "visit_id": "v-1", "account_id": "acc-1", "started_at": "2026-11-02T10:30:00Z",
         "ended_at": "2026-11-02T10:55:00Z", "outcome": "follow_up",
         "form": {"shelf": 3, "needs": ["a"]}, "tags": ["x"]}


def _expected(value: bytes, stamp: dt.datetime, limits: TimeLimits) -> tuple[list[Any], Any]:
    ref = parse_message(value, stamp, limits)
    rows = []
    for e in ref.events:
        r = list(event_base_row(e, e.received_at or stamp))
        r[0] = str(r[0])
        r[22] = list(r[22].items())
        r[23] = list(r[23])
        rows.append(r)
    return rows, ref.rejects


def _rows(batch: EventColumns) -> list[list[Any]]:
    cols = [batch.column(name).to_pylist() for name in STORE_COLUMNS[:29]]
    out = [list(r) for r in zip(*cols, strict=True)]
    for r in out:  # Arrow gives its own UTC tzinfo back: compare instants
        for i in (4, 5, 18, 19):
            if r[i] is not None:
                r[i] = r[i].astimezone(dt.UTC)
    return out


def _same(got: list[Any], want: list[Any]) -> bool:
    return got == want and all(
        type(a) is type(b) or (a is None) == (b is None) for a, b in zip(got, want, strict=True))


def _compare(values: list[bytes], limits: TimeLimits) -> None:
    batch = IntakeBatch(limits)
    for v in values:
        batch.add(v, RCV)
    got, rejects = batch.build()
    rows = _rows(got)
    want_rows: list[Any] = []
    want_rejects = []
    for m, v in enumerate(values):
        r, rj = _expected(v, RCV, limits)
        want_rows.extend(r)
        want_rejects.extend((m, x.index, x.reason, x.detail, x.event_id, x.rep_id) for x in rj)
    assert [(m, r.index, r.reason, r.detail, r.event_id, r.rep_id) for m, r in rejects] \
        == want_rejects
    assert len(rows) == len(want_rows), (rows, want_rows)
    for a, b in zip(rows, want_rows, strict=True):
        assert _same(a, b), (a, b)


def _dumps(doc: Any) -> bytes | None:
    try:
        return orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):
        return None  # NaN and huge ints cannot be JSON


@pytest.mark.long
@settings(max_examples=sized(800, 200), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(item=items(), limits=st.sampled_from(LIMITS), with_visit=st.booleans(),
       more=st.integers(0, 2))
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2026-02-30T11:00:00Z", "lat": 1.0, "lon": 2.0},
         limits=TimeLimits(), with_visit=False, more=1)
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r\n", "ts": "2026-11-02T11:00:00Z", "lat": 1.0, "lon": 2.0},
         limits=TimeLimits(), with_visit=False, more=0)
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2026-11-02T13:00:00Z", "lat": 1.0, "lon": 2.0},
         limits=TimeLimits(), with_visit=False, more=0)  # exactly at the limit: accepted
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2026-11-02T13:00:00.000001Z", "lat": 1.0, "lon": 2.0},
         limits=TimeLimits(), with_visit=False, more=0)
@example(item={"kind": "check_in", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2026-11-02T11:00:00Z", "action": "visit_end"},
         limits=TimeLimits(), with_visit=True, more=0)
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2026-11-02T11:00:00Z", "lat": 1.0, "lon": 2.0,
               "received_at": "9999-12-31T23:00:00Z"},
         limits=TimeLimits(1e300, 1e300), with_visit=False, more=0)
def test_typed_path_accepts_only_what_pydantic_accepts_with_the_same_values(
        item: Any, limits: TimeLimits, with_visit: bool, more: int) -> None:
    ordinary = {"kind": "ping", "event_id": str(uuid.uuid4()), "device_id": "dev-2",
                "rep_id": "rep-2", "ts": "2026-11-02T11:30:00+01:00", "lat": 52.5, "lon": 13.4,
                "received_at": "2026-11-02T11:59:00.5+00:00"}
    events = [item] + [ordinary] * more + ([VISIT] if with_visit else [])
    value = _dumps({"events": events})
    if value is None:
        return
    # The message alone, and between two ordinary ones (one batch, one column check).
    _compare([value], limits)
    plain = orjson.dumps({"events": [ordinary]})
    _compare([plain, value, plain], limits)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(st.lists(items(), min_size=0, max_size=4), min_size=1, max_size=5),
       limits=st.sampled_from(LIMITS), shape=st.sampled_from(["events", "list", "one"]))
def test_batches_of_messages_get_the_reference_events_and_rejects(
        batch: list[list[Any]], limits: TimeLimits, shape: str) -> None:
    values = []
    for evs in batch:
        doc = ({"events": evs} if shape == "events" else evs if shape == "list"
               else (evs[0] if evs else {}))
        v = _dumps(doc)
        if v is not None:
            values.append(v)
    _compare([*values, b"not json", b"[]", b'{"events": []}'], limits)


def test_ordinary_uploads_take_the_typed_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import processors.intake_columns as ic

    def fail(*a: Any, **k: Any) -> Any:
        raise AssertionError("the reference path was taken")

    monkeypatch.setattr(ic, "parse_message", fail)
    monkeypatch.setattr(ic, "_validate_one", fail)
    ping = {"event_id": str(uuid.uuid4()), "device_id": "dev-1", "rep_id": "rep-1",
            "kind": "ping", "ts": "2026-11-02T12:30:00.123+01:00", "lat": 52.5, "lon": 13,
            "accuracy_m": 8.5, "provider": "gps", "is_mock": False, "battery_pct": 98.0,
            "received_at": "2026-11-02T11:31:00+00:00"}
    check_in = {"event_id": str(uuid.uuid4()), "device_id": "dev-1", "rep_id": "rep-1",
                "kind": "check_in", "ts": "2026-11-02T11:00:00Z", "action": "visit_start",
                "account_id": "acc-1", "position": {"lat": 1, "lon": 2}}
    b = IntakeBatch(TimeLimits())
    b.add(orjson.dumps({"events": [ping, check_in]}), RCV)
    got, rejects = b.build()
    assert not rejects and len(got) == 2
    assert got.column("kind").to_pylist() == ["ping", "check_in"]
    assert got.column("ts").to_pylist()[0].astimezone(dt.UTC) == dt.datetime(
        2026, 11, 2, 11, 30, 0, 123000, tzinfo=dt.UTC)


def test_batch_columns_are_the_events_table_columns() -> None:
    assert list(STORE_COLUMNS) == [name for name, _ in EVENT_COLUMNS]
    assert EVENT_SCHEMA.names[-1] == "submission_json"
    with pytest.raises(TypeError):
        EventColumns(pa.table({"x": [1]}))
