"""Intake: decode and validate what arrives, item by item; invalid input is data.

Used twice: by the HTTP ingest (to answer each event with accepted/rejected and a reason) and
by the worker on ``telemetry.raw`` (which may hold anything anybody produced). Valid events
come out normalised (UTC times, ``received_at`` set); every rejection carries a reason code
and a human-readable detail. Pure: the receive time comes in as an argument.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from schemas.events import (
    EVENT_ADAPTER,
    MAX_BATCH_EVENTS,
    MAX_TIME,
    MIN_TIME,
    VISIT_ACTIONS,
    CheckIn,
    CheckInAction,
    Ping,
    Position,
    Provider,
    VisitSubmission,
)
from sinks.rows import EMPTY_FORM, EMPTY_TAGS

AnyEvent = Ping | CheckIn | VisitSubmission


@dataclass(frozen=True)
class Reject:
    index: int  # position in the message/batch; -1 for the message as a whole
    reason: str  # a code: undecodable, bad_shape, invalid, in_future, too_old, ...
    detail: str
    item: Any = None  # the offending item as decoded (None when nothing decoded)
    event_id: str | None = None
    rep_id: str | None = None


@dataclass
class IntakeResult:
    events: list[AnyEvent] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)  # position of each valid event
    rejects: list[Reject] = field(default_factory=list)


@dataclass(frozen=True)
class TimeLimits:
    max_clock_ahead_s: float = 3600.0
    max_event_age_s: float = 35 * 86400.0


def decode_items(value: bytes | None) -> tuple[list[Any] | None, Reject | None]:
    """Bytes -> list of raw items. Accepts ``{"events": [...]}``, a JSON list, or one event."""
    if value is None:
        return None, Reject(-1, "bad_shape", "empty message (no value)")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return None, Reject(-1, "undecodable", f"not UTF-8 JSON: {exc}")
    if isinstance(doc, dict) and "events" in doc:
        doc = doc["events"]
    elif isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        return None, Reject(-1, "bad_shape", f"expected an object or a list of events, got "
                            f"{type(doc).__name__}")
    if not doc:
        return None, Reject(-1, "bad_shape", "no events")
    return doc, None


def _first_error(exc: ValidationError) -> str:
    errs = exc.errors(include_url=False, include_input=False)
    parts = []
    for e in errs[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()))
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
    return "; ".join(parts) + more


def _ident(item: Any, key: str) -> str | None:
    if isinstance(item, dict):
        v = item.get(key)
        if isinstance(v, str) and len(v) <= 64:
            return v
    return None


def validate_items(
    items: list[Any],
    received_at: dt.datetime,
    limits: TimeLimits,
    *,
    max_items: int | None = MAX_BATCH_EVENTS,
    keep_received_at: bool = False,
) -> IntakeResult:
    """Validate each item. ``received_at`` is stamped on each valid event unless
    ``keep_received_at`` and the item already has one (the worker keeps ingest's stamp)."""
    out = IntakeResult()
    if max_items is not None and len(items) > max_items:
        out.rejects.append(Reject(-1, "batch_too_large",
                                  f"{len(items)} events in one batch; at most {max_items}"))
        return out
    for i, item in enumerate(items):
        res = _validate_one(i, item, received_at, limits, keep_received_at)
        if isinstance(res, Reject):
            out.rejects.append(res)
        else:
            out.events.append(res)
            out.indexes.append(i)
    return out


def _validate_one(i: int, item: Any, received_at: dt.datetime, limits: TimeLimits,
                  keep_received_at: bool) -> AnyEvent | Reject:
    """The pydantic validation of one item: the reference for every accept/reject decision
    and the source of every reject reason."""
    if not isinstance(item, dict):
        return Reject(i, "invalid", f"event must be an object, got {type(item).__name__}", item)
    stamp: dt.datetime | None = received_at
    if keep_received_at and item.get("received_at") is not None:
        stamp = None  # validated from the item itself
    else:
        item = {**item, "received_at": received_at}
    try:
        ev = EVENT_ADAPTER.validate_python(item)
    except ValidationError as exc:
        return Reject(i, "invalid", _first_error(exc), item,
                      _ident(item, "event_id"), _ident(item, "rep_id"))
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:  # pathological
        return Reject(i, "invalid", f"{type(exc).__name__}: {exc}"[:300], item)
    rcv = stamp or ev.received_at or received_at
    try:
        too_new = ev.ts > rcv + dt.timedelta(seconds=limits.max_clock_ahead_s)
        too_old = ev.ts < rcv - dt.timedelta(seconds=limits.max_event_age_s)
    except OverflowError:  # rcv +- the limits leaves the datetime range
        too_new = too_old = False
    if too_new:
        return Reject(i, "in_future", f"ts {ev.ts.isoformat()} is more than "
                      f"{limits.max_clock_ahead_s:.0f}s after received_at "
                      f"{rcv.isoformat()}", item, str(ev.event_id), ev.rep_id)
    if too_old:
        return Reject(i, "too_old", f"ts {ev.ts.isoformat()} is more than "
                      f"{limits.max_event_age_s:.0f}s before received_at "
                      f"{rcv.isoformat()}", item, str(ev.event_id), ev.rep_id)
    return ev


def parse_message(
    value: bytes | None, received_at: dt.datetime, limits: TimeLimits
) -> IntakeResult:
    """One ``telemetry.raw`` message -> valid events and rejects (never raises on bad input)."""
    items, reject = decode_items(value)
    if items is None:
        assert reject is not None
        return IntakeResult(rejects=[reject])
    return validate_items(items, received_at, limits, max_items=None, keep_received_at=True)


# -- the worker's row path: a fast check of the common case, pydantic for the rest ---------
#
# A ``telemetry.raw`` item that is an ordinary ping or check-in (canonical UUID, plain ids,
# ISO times, in-range numbers, known enum values) is checked here with plain Python and
# turned straight into its ``events`` row; anything else -- another kind, an unusual but
# maybe valid spelling, or an invalid item -- goes through ``_validate_one`` (pydantic), so
# every reject and its reason is exactly the reference's. The fast check only ever accepts,
# and accepts only what pydantic accepts with the same values (tests/processors/
# test_intake_fast.py compares the two on generated items).

_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
_IDENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,63}", re.ASCII)
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
                      r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])", re.ASCII)
_PROVIDERS = frozenset(p.value for p in Provider)
_ACTIONS = frozenset(a.value for a in CheckInAction)
_VISIT_ACTIONS = frozenset(a.value for a in VISIT_ACTIONS)


def _schema_bounds(model: type[BaseModel], name: str) -> tuple[float, float]:
    """A numeric field's [minimum, maximum], read from the model's JSON schema so the fast
    check cannot drift from the schema."""
    prop = model.model_json_schema()["properties"][name]
    for alt in prop.get("anyOf", [prop]):
        if "minimum" in alt and "maximum" in alt:
            return float(alt["minimum"]), float(alt["maximum"])
    raise ValueError(f"{model.__name__}.{name} has no numeric bounds")


_LAT = _schema_bounds(Ping, "lat")
_LON = _schema_bounds(Ping, "lon")
_ACC = _schema_bounds(Ping, "accuracy_m")
_SPEED = _schema_bounds(Ping, "speed_mps")
_HEADING = _schema_bounds(Ping, "heading_deg")
_ALT = _schema_bounds(Ping, "altitude_m")
_BATT = _schema_bounds(Ping, "battery_pct")
_POS_LAT = _schema_bounds(Position, "lat")
_POS_LON = _schema_bounds(Position, "lon")
_POS_ACC = _schema_bounds(Position, "accuracy_m")
_UTC = dt.UTC
_CACHE_MAX = 50_000
_idents: set[str] = set()  # identifiers seen valid (device and rep ids repeat)
_times: dict[str, dt.datetime] = {}  # received_at strings (one per upload, repeated)


def _ident_ok(v: object) -> bool:
    if type(v) is not str:
        return False
    if v in _idents:
        return True
    if _IDENT_RE.fullmatch(v) is None:
        return False
    if len(_idents) >= _CACHE_MAX:
        _idents.clear()
    _idents.add(v)
    return True


def _utc_time(v: object) -> dt.datetime | None:
    """An ISO-8601 time with an offset, in UTC and within the store's range; None: let
    pydantic judge it."""
    if type(v) is not str or _TIME_RE.fullmatch(v) is None:
        return None
    try:
        t = dt.datetime.fromisoformat(v)
        if t.tzinfo is not _UTC:
            t = t.astimezone(_UTC)
    except (ValueError, OverflowError):
        return None
    if MIN_TIME <= t <= MAX_TIME:
        return t
    return None


def _cached_time(v: str) -> dt.datetime | None:
    t = _times.get(v)
    if t is None:
        t = _utc_time(v)
        if t is not None:
            if len(_times) >= _CACHE_MAX:
                _times.clear()
            _times[v] = t
    return t


_SLOW = object()  # "let pydantic judge this item"


def _num(v: object, lo: float, hi: float) -> Any:
    """A finite number within [lo, hi] as a float, or _SLOW (bool, str, NaN, out of range)."""
    t = type(v)
    if t is float:
        if lo <= v <= hi:  # type: ignore[operator]
            return v
    elif t is int and lo <= v <= hi:  # type: ignore[operator]
        return float(v)  # type: ignore[arg-type]
    return _SLOW


def _opt_num(item: dict[str, Any], key: str, lo: float, hi: float) -> Any:
    v = item.get(key)
    return None if v is None else _num(v, lo, hi)


def _deltas(limits: TimeLimits) -> tuple[dt.timedelta, dt.timedelta]:
    key = (limits.max_clock_ahead_s, limits.max_event_age_s)
    d = _limit_deltas.get(key)
    if d is None:
        try:
            d = (dt.timedelta(seconds=key[0]), dt.timedelta(seconds=key[1]))
        except OverflowError:
            d = (_NO_LIMIT, _NO_LIMIT)
        _limit_deltas[key] = d
    return d


_NO_LIMIT = dt.timedelta.max
_limit_deltas: dict[tuple[float, float], tuple[dt.timedelta, dt.timedelta]] = {}


def fast_row(item: Any, received_at: dt.datetime, limits: TimeLimits) -> tuple[object, ...] | None:
    """The ``events`` base row (see ``sinks.rows.event_base_row``; ``event_id`` as its
    canonical string) of an ordinary valid ping or check-in; None for anything else.
    ``received_at`` stands in when the item has none (the worker keeps ingest's stamp)."""
    return _fast_row(item, received_at, *_deltas(limits))


def _fast_row(item: Any, received_at: dt.datetime, ahead: dt.timedelta,
              age: dt.timedelta) -> tuple[object, ...] | None:
    if type(item) is not dict:
        return None
    get = item.get
    kind = get("kind")
    if kind != "ping" and kind != "check_in":
        return None
    eid = get("event_id")
    if type(eid) is not str or len(eid) != 36 or _UUID_RE.fullmatch(eid) is None:
        return None
    dev, rep = get("device_id"), get("rep_id")
    if not (_ident_ok(dev) and _ident_ok(rep)):
        return None
    ts = _utc_time(get("ts"))
    if ts is None:
        return None
    rcv_in = get("received_at")
    if rcv_in is None:
        rcv = received_at
    else:
        rcv = _cached_time(rcv_in) if type(rcv_in) is str else None  # type: ignore[assignment]
        if rcv is None:
            return None
    try:
        if ts > rcv + ahead or ts < rcv - age:
            return None  # pydantic's path writes the in_future/too_old reject
    except OverflowError:
        pass  # as the reference: no limit when it leaves the datetime range
    if kind == "ping":
        lat = _num(get("lat"), *_LAT)
        lon = _num(get("lon"), *_LON)
        acc = _opt_num(item, "accuracy_m", *_ACC)
        speed = _opt_num(item, "speed_mps", *_SPEED)
        heading = _opt_num(item, "heading_deg", *_HEADING)
        alt = _opt_num(item, "altitude_m", *_ALT)
        batt = _opt_num(item, "battery_pct", *_BATT)
        if (lat is _SLOW or lon is _SLOW or acc is _SLOW or speed is _SLOW or heading is _SLOW
                or alt is _SLOW or batt is _SLOW):
            return None
        provider = get("provider")
        if provider is not None and (type(provider) is not str or provider not in _PROVIDERS):
            return None
        is_mock = get("is_mock", False)
        if type(is_mock) is not bool:
            return None
        return (eid, rep, dev, "ping", ts, rcv, lat, lon, acc, speed, heading, alt, batt,
                provider, is_mock, None, None, None, None, None, None, "", EMPTY_FORM,
                EMPTY_TAGS, 0, "", None, None, "")
    action = get("action")
    if type(action) is not str or action not in _ACTIONS:
        return None
    account_id, visit_id = get("account_id"), get("visit_id")
    if account_id is None:
        if action in _VISIT_ACTIONS:
            return None
    elif not _ident_ok(account_id):
        return None
    if visit_id is not None and not _ident_ok(visit_id):
        return None
    pos = get("position")
    if pos is None:
        lat = lon = acc = None
    elif type(pos) is dict:
        lat = _num(pos.get("lat"), *_POS_LAT)
        lon = _num(pos.get("lon"), *_POS_LON)
        acc = _opt_num(pos, "accuracy_m", *_POS_ACC)
        if lat is _SLOW or lon is _SLOW or acc is _SLOW:
            return None
    else:
        return None
    return (eid, rep, dev, "check_in", ts, rcv, lat, lon, acc, None, None, None, None, None,
            False, action, account_id, visit_id, None, None, None, "", EMPTY_FORM, EMPTY_TAGS,
            0, "", None, None, "")


# -- ingest's path: the same fast check, and the body to publish built from its values ----

_JSON_OPTS = orjson.OPT_UTC_Z
_PING_OPTIONAL = (("accuracy_m", 8), ("speed_mps", 9), ("heading_deg", 10), ("altitude_m", 11),
                  ("battery_pct", 12), ("provider", 13))


def _row_body(row: tuple[object, ...]) -> bytes:
    """The published JSON of a fast-checked item, from its checked values: known fields
    only (as the model's dump drops unknown ones), times in UTC."""
    doc: dict[str, object] = {"event_id": row[0], "device_id": row[2], "rep_id": row[1],
                              "kind": row[3], "ts": row[4], "received_at": row[5]}
    if row[3] == "ping":
        doc["lat"], doc["lon"] = row[6], row[7]
        for name, i in _PING_OPTIONAL:
            if row[i] is not None:
                doc[name] = row[i]
        doc["is_mock"] = row[14]
    else:
        doc["action"] = row[15]
        if row[6] is not None:
            pos: dict[str, object] = {"lat": row[6], "lon": row[7]}
            if row[8] is not None:
                pos["accuracy_m"] = row[8]
            doc["position"] = pos
        if row[16] is not None:
            doc["account_id"] = row[16]
        if row[17] is not None:
            doc["visit_id"] = row[17]
    return orjson.dumps(doc, option=_JSON_OPTS)


@dataclass(frozen=True, slots=True)
class Checked:
    """An item ingest accepts: its position, identity and the JSON body to publish."""

    index: int
    event_id: str
    device_id: str
    rep_id: str
    body: bytes
    #: The time that places it in a rep-day (``processors.rep_day.event_time``).
    when: dt.datetime | None = None


def check_upload(items: list[Any], received_at: dt.datetime, limits: TimeLimits
                 ) -> tuple[list[Checked], list[Reject]]:
    """Ingest's validation of an upload: ``validate_items`` (``received_at`` stamped on
    every event, a client's value overwritten) with the worker's fast check for ordinary
    pings and check-ins, whose body is built from the checked values instead of a pydantic
    model's dump. Everything else takes the pydantic reference, so every decision and
    reject reason is the reference's (tests/processors/test_ingest_fast.py)."""
    accepted: list[Checked] = []
    rejects: list[Reject] = []
    ahead, age = _deltas(limits)
    for i, item in enumerate(items):
        # An item with its own received_at takes the reference (which overwrites it).
        row = (_fast_row(item, received_at, ahead, age)
               if type(item) is dict and "received_at" not in item else None)
        if row is not None:
            accepted.append(Checked(i, row[0], row[2], row[1], _row_body(row),  # type: ignore[arg-type]
                                    row[4]))  # type: ignore[arg-type]
            continue
        res = _validate_one(i, item, received_at, limits, False)
        if isinstance(res, Reject):
            rejects.append(res)
        else:
            accepted.append(Checked(i, str(res.event_id), res.device_id, res.rep_id,
                                    res.model_dump_json().encode(),
                                    res.started_at if isinstance(res, VisitSubmission) else res.ts))
    return accepted, rejects
