"""Map validated records to ClickHouse row tuples, in the column order of the migrations."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

import orjson
from pydantic import BaseModel

from schemas.derived import DeadLetter, Enrichment
from schemas.events import CheckIn, Ping, VisitSubmission
from schemas.topics import FieldAlertMessage
from sinks.migrations import (
    ALERT_COLUMNS,
    DEADLETTER_COLUMNS,
    EVENT_COLUMNS,
    REP_DAILY_COLUMNS,
    SEGMENT_COLUMNS,
    SEGMENT_CURRENT_COLUMNS,
    TRANSITION_COLUMNS,
    TRANSITION_CURRENT_COLUMNS,
)

EVENT_COLUMN_NAMES: list[str] = [n for n, _ in EVENT_COLUMNS]
DEADLETTER_COLUMN_NAMES: list[str] = [n for n, _ in DEADLETTER_COLUMNS]
ALERT_COLUMN_NAMES: list[str] = [n for n, _ in ALERT_COLUMNS]
_NO_GEO = Enrichment()


def _form_value(v: object) -> str:
    # Map(String, String): scalars as their text, lists as JSON, so analysts can
    # toFloat64OrNull(form['x']) or JSONExtract(form['needs'], 'Array(String)').
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    return orjson.dumps(v).decode()


#: Columns of an event row before the enrichment columns (see ``event_base_row``).
EVENT_BASE_COLUMNS = len(EVENT_COLUMN_NAMES) - 6
#: Shared empty values of the map and array columns (never mutated; a tuple, not a list,
#: so the garbage collector can untrack rows that hold nothing else mutable).
EMPTY_FORM: dict[str, str] = {}
EMPTY_TAGS: tuple[str, ...] = ()


def event_row(
    ev: Ping | CheckIn | VisitSubmission, received_at: dt.datetime, geo: Enrichment = _NO_GEO
) -> tuple[object, ...]:
    return (
        *event_base_row(ev, received_at),
        geo.territory_id, geo.region, geo.in_assigned_territory, geo.account_id,
        geo.account_distance_m, geo.geo_version,
    )


def event_base_row(
    ev: Ping | CheckIn | VisitSubmission, received_at: dt.datetime
) -> tuple[object, ...]:
    """The columns of ``event_row`` before the six enrichment columns; ``event_id`` as in
    the model (a UUID)."""
    lat = lon = acc = speed = heading = alt = batt = None
    provider = action = account_id = visit_id = None
    started = ended = outcome = currency = total = None
    notes = photos = lines = ""
    form: dict[str, str] = EMPTY_FORM
    tags: tuple[str, ...] = EMPTY_TAGS
    photo_count = 0
    is_mock = False
    if isinstance(ev, Ping):
        lat, lon, acc = ev.lat, ev.lon, ev.accuracy_m
        speed, heading, alt, batt = ev.speed_mps, ev.heading_deg, ev.altitude_m, ev.battery_pct
        provider = ev.provider.value if ev.provider else None
        is_mock = ev.is_mock
    elif isinstance(ev, CheckIn):
        action, account_id, visit_id = ev.action.value, ev.account_id, ev.visit_id
        if ev.position is not None:
            lat, lon, acc = ev.position.lat, ev.position.lon, ev.position.accuracy_m
    else:
        account_id, visit_id = ev.account_id, ev.visit_id
        started, ended, outcome = ev.started_at, ev.ended_at, ev.outcome.value
        notes = ev.notes
        form = {k: _form_value(v) for k, v in ev.form.items()}
        tags = tuple(ev.tags)
        photo_count = len(ev.photos)
        if ev.photos:
            photos = orjson.dumps([p.model_dump(mode="json") for p in ev.photos]).decode()
        if ev.order is not None:
            currency, total = ev.order.currency, ev.order.total
            lines = orjson.dumps([ln.model_dump(mode="json") for ln in ev.order.lines]).decode()
    return (
        ev.event_id, ev.rep_id, ev.device_id, ev.kind, ev.ts, received_at,
        lat, lon, acc, speed, heading, alt, batt, provider, is_mock,
        action, account_id, visit_id,
        started, ended, outcome, notes, form, tags, photo_count, photos, currency, total, lines,
    )


def deadletter_rows(items: Iterable[tuple[DeadLetter, int]]) -> list[tuple[object, ...]]:
    """Rows of (dead letter, index of the item within its source message)."""
    return [
        (d.at, d.reason.value, d.detail, d.source_topic, d.source_partition, d.source_offset,
         idx, d.event_id, d.rep_id, d.payload, d.payload_b64)
        for d, idx in items
    ]


SEGMENT_COLUMN_NAMES: list[str] = [n for n, _ in SEGMENT_COLUMNS]
REP_DAILY_COLUMN_NAMES: list[str] = [n for n, _ in REP_DAILY_COLUMNS]
TRANSITION_COLUMN_NAMES: list[str] = [n for n, _ in TRANSITION_COLUMNS]


def model_rows(models: Iterable[BaseModel], columns: Sequence[str]) -> list[tuple[object, ...]]:
    """Rows of records whose field names are the column names (segments, rep days,
    transitions); enums become their values."""
    out = []
    for m in models:
        d = m.__dict__
        out.append(tuple(_plain(d.get(c)) for c in columns))
    return out


def _plain(v: object) -> object:
    return v.value if isinstance(v, Enum) else v


SEGMENT_CURRENT_COLUMN_NAMES: list[str] = [n for n, _ in SEGMENT_CURRENT_COLUMNS]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Values of a tombstone's columns besides its id, rep, day and version (never read: the
#: views drop the id).
_TOMBSTONE: dict[str, object] = {
    "kind": "stop", "start": _EPOCH, "end": _EPOCH, "duration_s": 0.0, "workday_s": 0.0,
    "distance_m": 0.0, "inferred": False, "n_pings": 0, "is_deleted": 1,
    "tags": EMPTY_TAGS, "form": EMPTY_FORM, "notes": "", "photo_count": 0}


def segment_current_row(s: Any) -> tuple[object, ...]:
    """The ``segments_current`` row of a live segment (``processors.Segment``): its fields,
    ``is_deleted`` = 0, the form's values as text (as in ``visit_forms``)."""
    d = s.__dict__
    form = d["form"]
    extra = {"is_deleted": 0, "tags": list(d["tags"]),
             "form": {k: _form_value(v) for k, v in form.items()} if form else EMPTY_FORM}
    return tuple(extra[c] if c in extra else _plain(d[c]) for c in SEGMENT_CURRENT_COLUMN_NAMES)


def segment_current_rows(updates: Iterable[Any]) -> list[tuple[object, ...]]:
    """``segments_current`` rows of rep-day updates (``processors.RepDayUpdate``): every
    segment of the derivation (visits with their form), and a tombstone (``is_deleted`` =
    1) for every id it retracted, all at the derivation's version."""
    out: list[tuple[object, ...]] = []
    for u in updates:
        out.extend(segment_current_row(s) for s in u.segments)
        for sid in u.retracted:
            known = {"segment_id": sid, "rep_id": u.rep_id, "local_date": u.local_date,
                     "version": u.version, **_TOMBSTONE}
            out.append(tuple(known.get(c) for c in SEGMENT_CURRENT_COLUMN_NAMES))
    return out


TRANSITION_CURRENT_COLUMN_NAMES: list[str] = [n for n, _ in TRANSITION_CURRENT_COLUMNS]
#: A transition tombstone's columns besides its id, rep, day and version (never read).
_TRANSITION_TOMBSTONE: dict[str, object] = {
    "kind": "territory_enter", "subject_id": "", "at": _EPOCH, "lon": None, "lat": None,
    "geo_version": 0, "is_deleted": 1}


def transition_current_rows(
    transitions: Iterable[BaseModel],
    retracted: Iterable[tuple[str, dt.date, int, Iterable[Any]]] = (),
) -> list[tuple[object, ...]]:
    """``transitions_current`` rows: every transition of the derivations (``is_deleted`` =
    0), and a tombstone (``is_deleted`` = 1) for each id of ``retracted``, given as (rep,
    local date, the derivation's version, ids)."""
    live = [(*r, 0) for r in model_rows(transitions, TRANSITION_COLUMN_NAMES)]
    for rep_id, day, version, ids in retracted:
        for tid in ids:
            known = {"transition_id": tid, "rep_id": rep_id, "local_date": day,
                     "version": version, **_TRANSITION_TOMBSTONE}
            live.append(tuple(known[c] for c in TRANSITION_CURRENT_COLUMN_NAMES))
    return live


# -- the way back: stored rows -> wire events (session state rebuilt from the store) ------
_PING_FIELDS = ("lat", "lon", "accuracy_m", "speed_mps", "heading_deg", "altitude_m",
                "battery_pct", "provider", "is_mock")
_GEO = {"territory_id": "territory_id", "region": "region",
        "in_assigned_territory": "in_assigned_territory", "geo_account_id": "account_id",
        "geo_account_distance_m": "account_distance_m", "geo_version": "geo_version"}


def stored_event(row: dict[str, Any]) -> dict[str, Any]:
    """An `events` row (column -> value) back to the enriched wire form (a dict)."""
    ev: dict[str, Any] = {k: row[k] for k in ("event_id", "device_id", "rep_id", "kind")}
    ev["ts"] = _utc(row["ts"])
    ev["received_at"] = _utc(row["received_at"])
    kind = row["kind"]
    if kind == "ping":
        ev.update({k: row[k] for k in _PING_FIELDS if row[k] is not None})
    elif kind == "check_in":
        ev["action"] = row["action"]
        for k in ("account_id", "visit_id"):
            if row[k] is not None:
                ev[k] = row[k]
        if row["lat"] is not None:
            ev["position"] = {"lat": row["lat"], "lon": row["lon"],
                              "accuracy_m": row["accuracy_m"]}
    else:
        ev.update(visit_id=row["visit_id"], account_id=row["account_id"],
                  started_at=_utc(row["started_at"]), ended_at=_utc(row["ended_at"]),
                  outcome=row["outcome"], notes=row["notes"], tags=list(row["tags"]),
                  form={k: _form_back(v) for k, v in row["form"].items()})
        if row["photos"]:
            ev["photos"] = orjson.loads(row["photos"])
        if row["order_currency"] is not None:
            ev["order"] = {"currency": row["order_currency"], "total": row["order_total"],
                           "lines": orjson.loads(row["order_lines"] or "[]")}
    ev["geo"] = {dst: row[src] for src, dst in _GEO.items()}
    return ev


def _utc(v: Any) -> Any:
    if isinstance(v, dt.datetime) and v.tzinfo is None:
        return v.replace(tzinfo=dt.UTC)
    return v


def _form_back(v: str) -> Any:
    if v[:1] in ("[", "{") or v in ("true", "false", "null") or v[:1].isdigit() or v[:1] == "-":
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return v
    return v


def alert_rows(records: Iterable[FieldAlertMessage]) -> list[tuple[object, ...]]:
    """``alerts_all`` rows of field.alerts records (``detail`` as JSON text, keys sorted)."""
    return [(r.alert_id, r.state, r.rule, r.rep_id, r.local_date, r.at,
             orjson.dumps(r.detail, option=orjson.OPT_SORT_KEYS).decode())
            for r in records]


def alert_from_row(row: dict[str, Any]) -> FieldAlertMessage:
    """The record an ``alerts_all`` row was written from."""
    at = row["at"]
    if isinstance(at, dt.datetime) and at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return FieldAlertMessage(alert_id=row["alert_id"], state=row["state"], rule=row["rule"],
                             rep_id=row["rep_id"], local_date=row["local_date"], at=at,
                             detail=orjson.loads(row["detail"]) if row["detail"] else {})
