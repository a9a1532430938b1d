from __future__ import annotations

import datetime as dt
import uuid

import orjson

from processors.intake import TimeLimits, parse_message, validate_items

NOW = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)


def _ping(**kw: object) -> dict:
    return {"event_id": str(uuid.uuid4()), "device_id": "d", "rep_id": "r", "kind": "ping",
            "ts": "2026-11-02T11:00:00Z", "lat": 1.0, "lon": 2.0, **kw}


def test_each_item_is_judged_alone() -> None:
    res = validate_items([_ping(), _ping(lat=200), "x", _ping()], NOW, TimeLimits())
    assert res.indexes == [0, 3]
    assert [(r.index, r.reason) for r in res.rejects] == [(1, "invalid"), (2, "invalid")]
    assert all(e.received_at == NOW for e in res.events)


def test_time_limits_use_received_at_not_a_clock() -> None:
    lim = TimeLimits(max_clock_ahead_s=600, max_event_age_s=3600)
    res = validate_items([_ping(ts="2026-11-02T12:11:00Z"), _ping(ts="2026-11-02T10:59:00Z"),
                          _ping(ts="2026-11-02T12:09:00Z")], NOW, lim)
    assert [r.reason for r in res.rejects] == ["in_future", "too_old"]
    assert res.indexes == [2]


def test_client_received_at_is_overwritten_at_ingest_but_kept_by_worker() -> None:
    fake = "2020-01-01T00:00:00Z"
    assert validate_items([_ping(received_at=fake)], NOW, TimeLimits()).events[0].received_at \
        == NOW
    msg = orjson.dumps({"events": [_ping(received_at="2026-11-02T11:30:00Z")]})
    ev = parse_message(msg, NOW, TimeLimits()).events[0]
    assert ev.received_at == dt.datetime(2026, 11, 2, 11, 30, tzinfo=dt.UTC)


def test_raw_messages_of_every_shape() -> None:
    one = _ping()
    assert len(parse_message(orjson.dumps(one), NOW, TimeLimits()).events) == 1
    assert len(parse_message(orjson.dumps([one, _ping()]), NOW, TimeLimits()).events) == 2
    for bad, reason in [(b"\xff\x00", "undecodable"), (b"", "undecodable"), (None, "bad_shape"),
                        (b"42", "bad_shape"), (b"[]", "bad_shape"),
                        (b'{"events": []}', "bad_shape"), (b"[" * 5000 + b"]" * 5000,
                                                           "undecodable")]:
        res = parse_message(bad, NOW, TimeLimits())
        assert not res.events and res.rejects[0].reason == reason, bad[:20] if bad else bad
        assert res.rejects[0].detail


def test_oversized_batch_rejected_whole_at_ingest() -> None:
    res = validate_items([_ping()] * 501, NOW, TimeLimits())
    assert not res.events and res.rejects[0].reason == "batch_too_large"
