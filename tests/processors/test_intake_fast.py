"""Ingest's fast validation path agrees with the pydantic reference on every item.

``processors.intake.fast_row`` accepts ordinary pings and check-ins without pydantic; every
other item goes to the reference validation, so the decisions and reject reasons are the
reference's as long as the fast check never accepts what pydantic rejects and never accepts
with other values. Hypothesis draws items around the valid ones: NaN, infinities, huge and
boolean numbers, numeric strings, odd or out-of-range times and offsets, wrong types,
unknown kinds and actions, padded identifiers, extra fields (the schema ignores them).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processors.intake import (
    Reject,
    TimeLimits,
    _validate_one,
    fast_row,
)
from sinks.rows import event_base_row
from tests.conftest import sized

RCV = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
LIMITS = [TimeLimits(), TimeLimits(), TimeLimits(max_clock_ahead_s=600, max_event_age_s=3600),
          TimeLimits(max_clock_ahead_s=0, max_event_age_s=0), TimeLimits(1e300, 1e300),
          TimeLimits(1e300, 1e300)]

MISSING = object()

uuids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
    st.uuids().map(lambda u: f" {u} "),
    st.sampled_from(["", "not-a-uuid", "00000000-0000-0000-0000-000000000000",
                     "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"]),
    st.integers(), st.none(),
)
idents = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@/-]{0,70}\Z"),
    st.sampled_from(["rep-1", "dev-1", " rep-1", "rep-1 ", "rep-1\n", "", "-rep", "rép",
                     "a" * 64, "a" * 65, "r p", "١٢٣"]),
    st.text(max_size=8), st.integers(), st.none(), st.booleans(),
)
_instants = st.datetimes(min_value=dt.datetime(1960, 1, 1), max_value=dt.datetime(2210, 1, 1))
_offsets = st.sampled_from(["Z", "+00:00", "-00:00", "+01:00", "-05:30", "+23:59", "-23:59",
                            "+24:00", "+00:60", "z", "", "+0100", "+01"])
_fracs = st.sampled_from(["", ".1", ".123", ".123456", ".1234567", ".", ",123"])


@st.composite
def _iso(draw: Any) -> str:
    t = draw(_instants)
    sep = draw(st.sampled_from(["T", "T", " ", "t"]))
    return t.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + draw(_fracs) + draw(_offsets)


times = st.one_of(
    _iso(),
    st.sampled_from(["2026-11-02T11:00:00Z", "2026-11-02T11:30:00+01:00", "2026-02-30T11:00:00Z",
                     "2026-11-02T24:00:00Z", "2026-11-02T23:59:60Z", "2026-11-02", "0001-01-01T00:"
                     "00:00+01:00", "9999-12-31T23:59:59-01:00", "2200-01-01T00:00:00Z",
                     "2200-01-01T00:00:00.001Z", "1970-01-01T00:00:00Z",
                     "1969-12-31T23:59:59.999Z", "20261102T110000Z", "2026-W44-1T11:00:00Z",
                     "2026-11-02T11:00:00Z\n", "2026-11-02T11:00Z"]),
    st.integers(-10**12, 10**12), st.floats(), st.none(),
)


def numbers(lo: float, hi: float) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.floats(min_value=lo, max_value=hi), st.floats(min_value=lo, max_value=hi),
        st.integers(int(lo) - 2, int(hi) + 2),
        st.sampled_from([lo, hi, -0.0, math.nan, math.inf, -math.inf, 10**400, -(10**400),
                         1e308, True, False, "1.5", "nan", [], {}]),
        st.floats(), st.none(),
    )


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(MISSING), strategy)


positions = st.one_of(
    st.none(), st.sampled_from([[], "here", 1]),
    st.fixed_dictionaries({"lat": numbers(-90, 90), "lon": numbers(-180, 180)},
                          optional={"accuracy_m": numbers(0, 100_000), "extra": st.integers()}),
)
extras = st.dictionaries(st.sampled_from(["x", "geo", "action", "position", "provider", "notes",
                                          "speed_mps", "event"]), st.integers(), max_size=2)


@st.composite
def items(draw: Any) -> Any:
    kind = draw(st.sampled_from(["ping"] * 6 + ["check_in"] * 4 +
                                ["visit_submission", "PING", "other", None, 1]))
    fields: dict[str, st.SearchStrategy[Any]] = {
        "event_id": uuids, "device_id": idents, "rep_id": idents, "ts": times,
        "received_at": st.one_of(times, st.none()),
    }
    if kind == "check_in":
        fields |= {"action": st.sampled_from(["workday_start", "workday_end", "visit_start",
                                              "visit_end", "break_start", "break_end",
                                              "Visit_start", "lunch", None, 3]),
                   "position": positions, "account_id": idents, "visit_id": idents}
    else:
        fields |= {"lat": numbers(-90, 90), "lon": numbers(-180, 180),
                   "accuracy_m": numbers(0, 100_000), "speed_mps": numbers(0, 150),
                   "heading_deg": numbers(0, 360), "altitude_m": numbers(-1_000, 20_000),
                   "battery_pct": numbers(0, 100),
                   "provider": st.sampled_from(["gps", "network", "fused", "GPS", " gps", "",
                                                None, 1]),
                   "is_mock": st.sampled_from([True, False, 0, 1, "true", None])}
    item: dict[str, Any] = {} if kind is None else {"kind": kind}
    # A valid item with a few fields (often none) replaced by odd or invalid values, so
    # both decisions are exercised.
    odd = set(draw(st.lists(st.sampled_from(sorted(fields)), max_size=2)))
    for key, strategy in fields.items():
        value = draw(maybe(strategy) if key in odd else _valid(kind, key))
        if value is not MISSING:
            item[key] = value
    item.update(draw(extras))
    wrap = draw(st.sampled_from(["dict"] * 30 + ["list", "str", "int", "none"]))
    return {"dict": item, "list": [item], "str": "x", "int": 1, "none": None}[wrap]


def _valid(kind: Any, key: str) -> st.SearchStrategy[Any]:
    near = st.datetimes(min_value=dt.datetime(2026, 11, 2, 10),
                        max_value=dt.datetime(2026, 11, 2, 13),
                        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=1)),
                                                   dt.timezone(dt.timedelta(hours=-7))]))
    return {
        "event_id": st.uuids().map(str), "device_id": st.just("dev-1"),
        "rep_id": st.sampled_from(["rep-1", "rep-2"]),
        "ts": near.map(lambda t: t.isoformat()),
        "received_at": st.one_of(st.just(MISSING), st.none(),
                                 st.just("2026-11-02T11:59:00.5+00:00")),
        "lat": st.floats(-90, 90), "lon": st.floats(-180, 180),
        "accuracy_m": st.one_of(st.just(MISSING), st.floats(0, 100_000)),
        "speed_mps": st.one_of(st.just(MISSING), st.floats(0, 150)),
        "heading_deg": st.one_of(st.just(MISSING), st.floats(0, 360)),
        "altitude_m": st.one_of(st.just(MISSING), st.integers(-1000, 20_000)),
        "battery_pct": st.one_of(st.just(MISSING), st.floats(0, 100)),
        "provider": st.sampled_from([MISSING, "gps", "network", "fused"]),
        "is_mock": st.sampled_from([MISSING, True, False]),
        "action": st.sampled_from(["workday_start", "visit_start", "break_end"]),
        "position": st.one_of(st.just(MISSING), st.fixed_dictionaries(
            {"lat": st.floats(-90, 90), "lon": st.floats(-180, 180)})),
        "account_id": st.sampled_from([MISSING, "acc-1", None]),
        "visit_id": st.sampled_from([MISSING, "v-1", None]),
    }[key]


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return a == b and all(type(x) is type(y) for x, y in zip(a, b, strict=True))


def _check(item: Any, limits: TimeLimits) -> None:
    ref = _validate_one(0, item, RCV, limits, True)
    fast = fast_row(item, RCV, limits)
    if fast is None:
        return  # the worker uses the reference's result
    assert not isinstance(ref, Reject), (item, ref)
    base = event_base_row(ref, ref.received_at or RCV)
    expected = (str(base[0]), *base[1:])
    assert _same(fast, expected), (item, fast, expected)


@pytest.mark.long
@settings(max_examples=sized(3000, 600), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(item=items(), limits=st.sampled_from(LIMITS))
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2026-11-02T11:00:00Z", "lat": math.nan, "lon": 2.0},
         limits=TimeLimits())
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2026-11-02T11:00:00Z", "lat": 10**400, "lon": 2.0},
         limits=TimeLimits())
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2200-01-01T00:00:00.001Z", "lat": 1.0, "lon": 2.0},
         limits=TimeLimits(1e300, 1e300))
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2200-01-01T00:00:00+00:00", "lat": 1.0, "lon": 2.0},
         limits=TimeLimits(1e300, 1e300))
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "1969-12-31T23:59:59.999Z", "lat": 1.0, "lon": 2.0},
         limits=TimeLimits(1e300, 1e300))
@example(item={"kind": "ping", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2026-11-02T13:00:00Z", "lat": 1.0, "lon": 2.0},
         limits=TimeLimits())  # exactly max_clock_ahead_s after received_at: accepted
@example(item={"kind": "check_in", "event_id": str(uuid.UUID(int=1)), "device_id": "d",
               "rep_id": "r", "ts": "2026-11-02T11:00:00Z", "action": "visit_start"},
         limits=TimeLimits())
def test_fast_path_accepts_only_what_pydantic_accepts_with_the_same_values(
        item: Any, limits: TimeLimits) -> None:
    _check(item, limits)


def test_fast_path_takes_the_common_case() -> None:
    ping = {"event_id": str(uuid.uuid4()), "device_id": "dev-1", "rep_id": "rep-1",
            "kind": "ping", "ts": "2026-11-02T12:30:00.123+01:00", "lat": 52.5, "lon": 13,
            "accuracy_m": 8.5, "provider": "gps", "is_mock": False, "battery_pct": 98.0,
            "received_at": "2026-11-02T11:31:00+00:00", "unknown_field": [1, 2]}
    check_in = {"event_id": str(uuid.uuid4()), "device_id": "dev-1", "rep_id": "rep-1",
                "kind": "check_in", "ts": "2026-11-02T11:00:00Z", "action": "visit_start",
                "account_id": "acc-1", "position": {"lat": 1, "lon": 2}}
    for item in (ping, check_in, {**check_in, "action": "break_start", "position": None,
                                  "account_id": None}):
        assert fast_row(item, RCV, TimeLimits()) is not None, item
        _check(item, TimeLimits())
