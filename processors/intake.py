"""Intake: decode and validate what arrives, item by item; invalid input is data.

Used twice: by the HTTP ingest (to answer each event with accepted/rejected and a reason) and
by the worker on ``telemetry.raw`` (which may hold anything anybody produced). Valid events
come out normalised (UTC times, ``received_at`` set); every rejection carries a reason code
and a human-readable detail. Pure: the receive time comes in as an argument.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.events import EVENT_ADAPTER, MAX_BATCH_EVENTS, CheckIn, Ping, VisitSubmission

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
    ahead = dt.timedelta(seconds=limits.max_clock_ahead_s)
    age = dt.timedelta(seconds=limits.max_event_age_s)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            out.rejects.append(Reject(i, "invalid", f"event must be an object, got "
                                      f"{type(item).__name__}", item))
            continue
        stamp: dt.datetime | None = received_at
        if keep_received_at and item.get("received_at") is not None:
            stamp = None  # validated from the item itself
        else:
            item = {**item, "received_at": received_at}
        try:
            ev = EVENT_ADAPTER.validate_python(item)
        except ValidationError as exc:
            out.rejects.append(Reject(i, "invalid", _first_error(exc), item,
                                      _ident(item, "event_id"), _ident(item, "rep_id")))
            continue
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:  # pathological
            out.rejects.append(Reject(i, "invalid", f"{type(exc).__name__}: {exc}"[:300], item))
            continue
        rcv = stamp or ev.received_at or received_at
        try:
            too_new, too_old = ev.ts > rcv + ahead, ev.ts < rcv - age
        except OverflowError:  # rcv +- the limits leaves the datetime range
            too_new = too_old = False
        if too_new:
            out.rejects.append(Reject(i, "in_future", f"ts {ev.ts.isoformat()} is more than "
                                      f"{limits.max_clock_ahead_s:.0f}s after received_at "
                                      f"{rcv.isoformat()}", item, str(ev.event_id), ev.rep_id))
            continue
        if too_old:
            out.rejects.append(Reject(i, "too_old", f"ts {ev.ts.isoformat()} is more than "
                                      f"{limits.max_event_age_s:.0f}s before received_at "
                                      f"{rcv.isoformat()}", item, str(ev.event_id), ev.rep_id))
            continue
        out.events.append(ev)
        out.indexes.append(i)
    return out


def parse_message(
    value: bytes | None, received_at: dt.datetime, limits: TimeLimits
) -> IntakeResult:
    """One ``telemetry.raw`` message -> valid events and rejects (never raises on bad input)."""
    items, reject = decode_items(value)
    if items is None:
        assert reject is not None
        return IntakeResult(rejects=[reject])
    return validate_items(items, received_at, limits, max_items=None, keep_received_at=True)
