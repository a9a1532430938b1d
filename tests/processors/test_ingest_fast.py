"""Ingest's upload check (``check_upload``) agrees with the pydantic reference on every item.

Ordinary pings and check-ins take the worker's fast check and their published body is built
from the checked values; the reference (``validate_items``, which stamps ``received_at``
and overwrites a client's) judges the rest. On generated items (the strategies of
test_intake_fast.py) both must make the same decision with the same reason, and a body must
decode, through the worker's own validation, to the event the reference accepted.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processors.intake import TimeLimits, _validate_one, check_upload, validate_items
from schemas.events import CheckIn, Ping
from tests.conftest import sized
from tests.processors.test_intake_fast import LIMITS, RCV, items

KNOWN = {"ping": set(Ping.model_fields), "check_in": set(CheckIn.model_fields)}


def _check(item: Any, limits: TimeLimits) -> None:
    ref = validate_items([item], RCV, limits)
    checked, rejects = check_upload([item], RCV, limits)
    assert [(r.index, r.reason, r.detail, r.event_id, r.rep_id) for r in rejects] == [
        (r.index, r.reason, r.detail, r.event_id, r.rep_id) for r in ref.rejects], item
    assert [c.index for c in checked] == ref.indexes, item
    for c, ev in zip(checked, ref.events, strict=True):
        assert (c.event_id, c.device_id, c.rep_id) == (str(ev.event_id), ev.device_id,
                                                       ev.rep_id)
        doc = orjson.loads(c.body)
        assert set(doc) <= KNOWN[ev.kind], doc  # unknown fields dropped
        # The worker keeps ingest's stamp: the body must validate to the same event.
        again = _validate_one(0, doc, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), limits, True)
        assert again == ev, (item, doc, again, ev)
        assert again.received_at == RCV


@pytest.mark.long
@settings(max_examples=sized(2000, 500), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(item=items(), limits=st.sampled_from(LIMITS))
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2026-11-02T11:00:00.5+01:00", "lat": 1, "lon": 2.0,
               "altitude_m": 12, "provider": "gps", "extra": {"deep": [1, 2]}},
         limits=TimeLimits())
@example(item={"kind": "check_in", "event_id": str(uuid.UUID(int=2)), "device_id": "d",
               "rep_id": "r", "ts": "2026-11-02T11:00:00Z", "action": "visit_start",
               "account_id": "acc-1", "visit_id": "v-1",
               "position": {"lat": 1.0, "lon": 2.0, "accuracy_m": 5, "x": 1}},
         limits=TimeLimits())
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=3)), "device_id": "d",
               "rep_id": "r", "ts": "2026-11-02T11:00:00Z", "lat": 1.0, "lon": 2.0,
               "received_at": "2026-11-01T00:00:00Z"},  # a client stamp is overwritten
         limits=TimeLimits())
def test_check_upload_agrees_with_the_reference(item: Any, limits: TimeLimits) -> None:
    _check(item, limits)


def test_a_mixed_upload_keeps_positions_and_reasons() -> None:
    ok = {"kind": "ping", "event_id": str(uuid.UUID(int=5)), "device_id": "d", "rep_id": "r",
          "ts": "2026-11-02T11:00:00Z", "lat": 1.0, "lon": 2.0}
    sub = {"kind": "visit_submission", "event_id": str(uuid.UUID(int=6)), "device_id": "d",
           "rep_id": "r", "ts": "2026-11-02T11:00:00Z", "visit_id": "v-1",
           "account_id": "acc-1", "outcome": "order_placed",
           "started_at": "2026-11-02T10:30:00Z", "ended_at": "2026-11-02T11:00:00Z"}
    bad = {**ok, "event_id": str(uuid.UUID(int=7)), "lat": 91.0}
    future = {**ok, "event_id": str(uuid.UUID(int=8)), "ts": "2026-11-03T11:00:00Z"}
    checked, rejects = check_upload([ok, bad, sub, future, "x"], RCV, TimeLimits())
    assert [c.index for c in checked] == [0, 2]
    assert [(r.index, r.reason) for r in rejects] == [(1, "invalid"), (3, "in_future"),
                                                      (4, "invalid")]
    assert orjson.loads(checked[0].body)["received_at"] == "2026-11-02T12:00:00Z"
    assert orjson.loads(checked[1].body)["outcome"] == "order_placed"  # the reference's dump


def test_items_without_event_id_get_the_same_derived_id_on_both_paths() -> None:
    ping = {"kind": "ping", "device_id": "d", "rep_id": "r", "ts": "2026-11-02T11:00:00Z",
            "lat": 1.0, "lon": 2.0}
    check_in = {"kind": "check_in", "device_id": "d", "rep_id": "r",
                "ts": "2026-11-02T11:00:00Z", "action": "visit_start", "account_id": "acc-1",
                "position": {"lat": 1.0, "lon": 2.0}}
    for item in (ping, {**ping, "event_id": None}, check_in, {**ping, "ts": "bad"}):
        _check(item, TimeLimits())
    same = {**ping, "ts": "2026-11-02T12:00:00+01:00", "lat": 1}  # the same event, spelled
    other = {**ping, "lat": 1.5}
    checked, rejects = check_upload([ping, same, other, check_in], RCV, TimeLimits())
    assert not rejects
    ids = [c.event_id for c in checked]
    assert ids[0] == ids[1] and len(set(ids)) == 3
    assert [orjson.loads(c.body)["event_id"] for c in checked] == ids
