"""The worker's intake in columns: a compiled typed decoder for the common case, pydantic for
the rest, and the accepted events of many messages as one ``EventColumns`` batch.

A ``telemetry.raw`` message that is an upload of ordinary pings and check-ins (no field the
schema does not know, numbers in range, known enum values) is decoded by msgspec in one call
straight from the bytes, with no dict per event. What msgspec does not check is checked on
whole columns of the taken batch at once (Arrow compute): the forms of ids and times (the
same regular expressions as ``processors.intake``'s checks), the times themselves (parsed by
Arrow), their range and the time limits, the account of a visit check-in. A message with
any event that fails a check, that msgspec does not decode (another shape, a visit
submission, an unknown field, an unusual but maybe valid spelling, an invalid item), takes
the reference path whole: ``processors.intake.parse_message`` (orjson, then pydantic item by
item), so every decision, value and reject reason of such a message is exactly the
reference's. The typed path only ever accepts, and accepts only what pydantic accepts with
the same values (tests/processors/test_intake_columns.py compares the two on generated
items and messages).

Unknown fields are refused by the typed decoder (the reference ignores them): msgspec skips
an unknown field's value without validating it as strictly as orjson does (invalid UTF-8,
``1e400``), so a message the reference rejects as undecodable could otherwise be accepted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from processors.intake import (
    _ACC,
    _ALT,
    _BATT,
    _HEADING,
    _IDENT_RE,
    _LAT,
    _LON,
    _POS_ACC,
    _POS_LAT,
    _POS_LON,
    _SPEED,
    _TIME_RE,
    _UUID_RE,
    Reject,
    TimeLimits,
    _deltas,
    _validate_one,
    decode_items,
    parse_message,
)
from schemas.columns import EVENT_SCHEMA, EventColumns
from schemas.events import MAX_TIME, MIN_TIME, VisitSubmission
from sinks.rows import event_base_row


def _bounded(bounds: tuple[float, float]) -> Any:
    return Annotated[float, msgspec.Meta(ge=bounds[0], le=bounds[1])]


class _Position(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    lat: _bounded(_POS_LAT)  # type: ignore[valid-type]
    lon: _bounded(_POS_LON)  # type: ignore[valid-type]
    accuracy_m: _bounded(_POS_ACC) | None = None  # type: ignore[valid-type]


class _Ping(msgspec.Struct, tag_field="kind", tag="ping", forbid_unknown_fields=True, gc=False):
    event_id: str
    device_id: str
    rep_id: str
    ts: str
    lat: _bounded(_LAT)  # type: ignore[valid-type]
    lon: _bounded(_LON)  # type: ignore[valid-type]
    received_at: str | None = None
    accuracy_m: _bounded(_ACC) | None = None  # type: ignore[valid-type]
    speed_mps: _bounded(_SPEED) | None = None  # type: ignore[valid-type]
    heading_deg: _bounded(_HEADING) | None = None  # type: ignore[valid-type]
    altitude_m: _bounded(_ALT) | None = None  # type: ignore[valid-type]
    battery_pct: _bounded(_BATT) | None = None  # type: ignore[valid-type]
    provider: Literal["gps", "network", "fused"] | None = None
    is_mock: bool = False


class _CheckIn(msgspec.Struct, tag_field="kind", tag="check_in", forbid_unknown_fields=True,
               gc=False):
    event_id: str
    device_id: str
    rep_id: str
    ts: str
    action: Literal["workday_start", "workday_end", "visit_start", "visit_end",
                    "break_start", "break_end"]
    received_at: str | None = None
    position: _Position | None = None
    account_id: str | None = None
    visit_id: str | None = None


class _Upload(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    events: list[_Ping | _CheckIn]


_UPLOAD = msgspec.json.Decoder(_Upload)
_ITEM: Any = _Ping | _CheckIn
_TYPED_ERRORS = (msgspec.ValidationError, msgspec.DecodeError)
# RE2 (Arrow) forms of processors.intake's checks, anchored at both ends.
_RE_UUID = "^" + _UUID_RE.pattern + "$"
_RE_IDENT = "^" + _IDENT_RE.pattern + "$"
_RE_TIME = "^" + _TIME_RE.pattern + "$"
_TS = pa.timestamp("us", tz="UTC")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
_MIN_US = (MIN_TIME - _EPOCH) // _US
_MAX_US = (MAX_TIME - _EPOCH) // _US
_DT_MIN_US = (dt.datetime.min.replace(tzinfo=dt.UTC) - _EPOCH) // _US
_DT_MAX_US = (dt.datetime.max.replace(tzinfo=dt.UTC) - _EPOCH) // _US
_SPAN = _DT_MAX_US - _DT_MIN_US
_VISIT_ACTIONS = ("visit_start", "visit_end")
_PING_FIELDS = ("lat", "lon", "accuracy_m", "speed_mps", "heading_deg", "altitude_m",
                "battery_pct", "provider", "is_mock")
_PING_ATTRS = ("event_id", "rep_id", "device_id", "ts", "received_at", *_PING_FIELDS)
_CHECK_ATTRS = ("event_id", "rep_id", "device_id", "ts", "received_at", "action",
                "account_id", "visit_id", "position")
_KEY = 1 << 20  # sort key: message number * _KEY + position in the message


def _micros(t: dt.datetime) -> int:
    return (t - _EPOCH) // _US


class IntakeBatch:
    """The messages of one taken batch: ``add`` each, then ``build`` once for the accepted
    events as one ``EventColumns`` (message order, then item order) and the rejects."""

    def __init__(self, limits: TimeLimits) -> None:
        self.limits = limits
        self._values: list[bytes | None] = []
        self._stamps: list[dt.datetime] = []
        # Messages (their number) whose events, or some of them, msgspec decoded: the
        # events, and their positions in the message when not all of them.
        self._typed: list[tuple[int, list[_Ping | _CheckIn], list[int] | None]] = []
        # Messages msgspec could not decode whole: what pydantic made of the other items
        # (position, model) and their rejects.
        self._mixed: dict[int, tuple[list[tuple[int, Any]], list[Reject]]] = {}

    def __len__(self) -> int:
        """Messages added."""
        return len(self._values)

    def add(self, value: bytes | None, received_at: dt.datetime) -> int:
        """One message; ``received_at`` stands in where an item has none. Its number."""
        n = len(self._values)
        self._values.append(value)
        self._stamps.append(received_at)
        if value is None:
            return n
        try:
            up = _UPLOAD.decode(value)
        except _TYPED_ERRORS:
            up = None
        if up is not None and up.events and len(up.events) < _KEY:
            self._typed.append((n, up.events, None))
            return n
        # Item by item (a visit submission among pings, say): msgspec on the decoded
        # ping and check-in items, pydantic on the others.
        items, _ = decode_items(value)
        if items is None or len(items) >= _KEY:
            return n  # the reference path says why
        typed: list[_Ping | _CheckIn] = []
        at: list[int] = []
        models: list[tuple[int, Any]] = []
        rejects: list[Reject] = []
        for i, item in enumerate(items):
            ev = _typed_item(item)
            if ev is not None:
                typed.append(ev)
                at.append(i)
                continue
            res = _validate_one(i, item, received_at, self.limits, True)
            if isinstance(res, Reject):
                rejects.append(res)
            else:
                models.append((i, res))
        if typed:
            self._typed.append((n, typed, at))
        self._mixed[n] = (models, rejects)
        return n

    def build(self) -> tuple[EventColumns, list[tuple[int, Reject]]]:
        """(accepted events, (message number, reject) of every reject in order). Same
        decisions, values and reasons as ``parse_message`` of each message."""
        fast, keys, fallen = _typed_columns(self._typed, self._stamps, self.limits)
        done = {m for m, _, _ in self._typed} | set(self._mixed)
        rejects: list[tuple[int, Reject]] = []
        models: list[tuple[Any, dt.datetime]] = []
        order = [keys]
        for m, (mixed, mixed_rejects) in self._mixed.items():
            if m in fallen:
                continue
            rejects.extend((m, r) for r in mixed_rejects)
            models.extend((ev, self._stamps[m]) for _, ev in mixed)
            order.append(np.asarray([i for i, _ in mixed], dtype=np.int64) + m * _KEY)
        for m in sorted(fallen | (set(range(len(self._values))) - done)):
            res = parse_message(self._values[m], self._stamps[m], self.limits)
            rejects.extend((m, r) for r in res.rejects)
            models.extend((ev, self._stamps[m]) for ev in res.events)
            order.append(np.asarray(res.indexes, dtype=np.int64) + m * _KEY)
        table = fast
        if models:
            table = pa.concat_tables([fast, _model_table(models)])
            table = table.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))
        rejects.sort(key=lambda mr: (mr[0], mr[1].index))
        return EventColumns(table), rejects


def _typed_item(item: Any) -> _Ping | _CheckIn | None:
    """msgspec's check of one decoded item (None: pydantic's to judge)."""
    if type(item) is not dict or item.get("kind") not in ("ping", "check_in"):
        return None
    try:
        out: _Ping | _CheckIn = msgspec.convert(item, _ITEM)
    except _TYPED_ERRORS:
        return None
    return out


def _model_table(events: Sequence[tuple[Any, dt.datetime]]) -> pa.Table:
    """Columns of events the pydantic reference validated (any kind), each with the
    received_at that stands in where it has none."""
    names = EVENT_SCHEMA.names[:29]
    cols: dict[str, list[Any]] = {name: [] for name in names}
    sub: list[str | None] = []
    for ev, stamp in events:
        row = event_base_row(ev, ev.received_at or stamp)
        for name, value in zip(names, row, strict=True):
            cols[name].append(value)
        sub.append(ev.model_dump_json() if isinstance(ev, VisitSubmission) else None)
    cols["event_id"] = [str(v) for v in cols["event_id"]]
    cols["form"] = [list(v.items()) for v in cols["form"]]
    cols["tags"] = [list(v) for v in cols["tags"]]
    data: dict[str, Any] = {**cols, "submission_json": sub}
    return EventColumns.from_pydict(data).table


def _typed_columns(typed: Sequence[tuple[int, list[_Ping | _CheckIn], list[int] | None]],
                   stamps: Sequence[dt.datetime], limits: TimeLimits
                   ) -> tuple[pa.Table, np.ndarray, set[int]]:
    """The typed messages' events as columns after the column checks: (table of the
    events of the messages that passed, their sort keys, numbers of the messages that
    failed a check)."""
    if not typed:
        return EVENT_SCHEMA.empty_table(), np.zeros(0, dtype=np.int64), set()
    counts = np.array([len(evs) for _, evs, _ in typed], dtype=np.int64)
    msg = np.repeat(np.array([m for m, _, _ in typed], dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    within = np.arange(int(counts.sum())) - np.repeat(first, counts)
    for j, (_, evs_, at) in enumerate(typed):
        if at is not None:  # some items of the message only
            within[first[j]:first[j] + len(evs_)] = at
    keys = msg * _KEY + within
    evs = [e for _, batch, _ in typed for e in batch]
    n = len(evs)
    is_ping = np.fromiter(map(_Ping.__instancecheck__, evs), dtype=bool, count=n)
    pi, ci = np.flatnonzero(is_ping), np.flatnonzero(~is_ping)
    pings: list[Any] = [evs[i] for i in pi.tolist()]
    checks: list[Any] = [evs[i] for i in ci.tolist()]
    # Kind by kind, then back in arrival order.
    back = pa.array(np.argsort(np.concatenate([pi, ci]), kind="stable"))

    def col(values_p: list[Any] | None, values_c: list[Any] | None,
            typ: pa.DataType) -> pa.Array:
        """One column from the pings' values and the check-ins' (None: all null)."""
        parts = [pa.nulls(len(evs_), typ) if values is None else pa.array(values, typ)
                 for values, evs_ in ((values_p, pings), (values_c, checks))]
        return pa.concat_arrays(parts).take(back)

    p_vals = [list(map(attrgetter(f), pings)) for f in _PING_ATTRS]
    c_vals = [list(map(attrgetter(f), checks)) for f in _CHECK_ATTRS]
    eid, rep, dev, ts_s, rcv_s = (col(p_vals[i], c_vals[i], pa.string())
                                  for i in range(5))
    pos = c_vals[8]
    c_lat = [None if p is None else p.lat for p in pos]
    c_lon = [None if p is None else p.lon for p in pos]
    c_acc = [None if p is None else p.accuracy_m for p in pos]
    none_p = none_c = None
    ping_cols = {f: p_vals[5 + i] for i, f in enumerate(_PING_FIELDS)}
    action = col(none_p, c_vals[5], pa.string())
    account = col(none_p, c_vals[6], pa.string())
    visit = col(none_p, c_vals[7], pa.string())

    ok = _matches(eid, _RE_UUID) & _matches(rep, _RE_IDENT, repeated=True)
    ok &= _matches(dev, _RE_IDENT, repeated=True)
    ok &= _matches(account, _RE_IDENT, null_ok=True, repeated=True)
    ok &= _matches(visit, _RE_IDENT, null_ok=True)
    ok &= ~(pc.is_in(action, pa.array(_VISIT_ACTIONS)).to_numpy(zero_copy_only=False)
            & pc.is_null(account).to_numpy(zero_copy_only=False))
    ts, ts_ok = _times(ts_s)
    rcv, rcv_ok = _times(rcv_s)
    rcv_null = pc.is_null(rcv_s).to_numpy(zero_copy_only=False)
    if rcv_null.any():  # the message's stamp stands in (ingest always sets received_at)
        nulls = np.flatnonzero(rcv_null)
        rcv = rcv.copy()  # (may be a read-only view of Arrow's buffer)
        rcv[nulls] = np.array([_micros(stamps[m]) for m in msg[nulls].tolist()],
                              dtype=np.int64)
    ok &= ts_ok & (rcv_ok | rcv_null)
    ok &= (ts >= _MIN_US) & (ts <= _MAX_US) & (rcv >= _MIN_US) & (rcv <= _MAX_US)
    ok &= _within_limits(ts, rcv, limits)
    fallen = {int(m) for m in np.unique(msg[~ok])}
    keep = ~np.isin(msg, np.fromiter(fallen, dtype=np.int64, count=len(fallen)))
    n_p, n_c = len(pings), len(checks)
    data = {
        "event_id": eid, "rep_id": rep, "device_id": dev,
        "kind": col(["ping"] * n_p, ["check_in"] * n_c, pa.string()),
        "ts": pa.array(ts, pa.int64()).cast(_TS), "received_at": pa.array(rcv).cast(_TS),
        "lat": col(ping_cols["lat"], c_lat, pa.float64()),
        "lon": col(ping_cols["lon"], c_lon, pa.float64()),
        "accuracy_m": col(ping_cols["accuracy_m"], c_acc, pa.float64()),
        "provider": col(ping_cols["provider"], none_c, pa.string()),
        "is_mock": col(ping_cols["is_mock"], [False] * n_c, pa.bool_()),
        "action": action, "account_id": account, "visit_id": visit,
    }
    for f in ("speed_mps", "heading_deg", "altitude_m", "battery_pct"):
        data[f] = col(ping_cols[f], none_c, pa.float64())
    table = EventColumns.from_pydict(data).table.filter(pa.array(keep))
    return table, keys[keep], fallen


def _matches(values: pa.Array, pattern: str, *, null_ok: bool = False,
             repeated: bool = False) -> np.ndarray:
    """Which values match ``pattern`` (RE2); ``repeated``: few distinct values (ids of
    reps and devices), each checked once."""
    if repeated:
        enc = pc.dictionary_encode(values)
        m = pc.match_substring_regex(enc.dictionary, pattern).take(enc.indices)
    else:
        m = pc.match_substring_regex(values, pattern)
    return m.fill_null(null_ok).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def _times(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since the epoch of ISO times of the checked form, and which parsed
    (null, another form or an impossible date: no)."""
    good = _matches(values, _RE_TIME)
    if good.all():
        arr = values
    else:
        arr = pc.if_else(pa.array(good), values, pa.scalar("1970-01-01T00:00:00Z"))
    try:
        us = pc.cast(arr, _TS).cast(pa.int64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # One of them is no date (30 February, 24:00): parse one by one.
        us = np.zeros(len(values), dtype=np.int64)
        for i, v in enumerate(values.to_pylist()):
            if not good[i]:
                continue
            try:
                us[i] = _micros(dt.datetime.fromisoformat(v).astimezone(dt.UTC))
            except (ValueError, OverflowError):
                good[i] = False
    return us, good


def _within_limits(ts: np.ndarray, rcv: np.ndarray, limits: TimeLimits) -> np.ndarray:
    """``ts`` within the limits around ``rcv`` as the reference decides it: no limit at
    all where ``rcv`` plus or minus a limit leaves the datetime range."""
    ahead, age = (d // _US for d in _deltas(limits))
    if ahead > _SPAN or age > _SPAN:
        return np.ones(len(ts), dtype=bool)  # every rcv +- a limit leaves the range
    unlimited = (rcv > _DT_MAX_US - ahead) | (rcv < _DT_MIN_US + age)
    return unlimited | ((ts >= rcv - age) & (ts <= rcv + ahead))  # type: ignore[no-any-return]


__all__ = ["IntakeBatch"]
