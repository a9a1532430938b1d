"""Map validated records to ClickHouse row tuples, in the column order of the migrations."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import orjson

from schemas.derived import DeadLetter, Enrichment
from schemas.events import CheckIn, Ping, VisitSubmission
from sinks.migrations import DEADLETTER_COLUMNS, EVENT_COLUMNS

EVENT_COLUMN_NAMES: list[str] = [n for n, _ in EVENT_COLUMNS]
DEADLETTER_COLUMN_NAMES: list[str] = [n for n, _ in DEADLETTER_COLUMNS]
_NO_GEO = Enrichment()


def _form_value(v: object) -> str:
    # Map(String, String): scalars as their text, lists as JSON, so analysts can
    # toFloat64OrNull(form['x']) or JSONExtract(form['needs'], 'Array(String)').
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    return orjson.dumps(v).decode()


def event_row(
    ev: Ping | CheckIn | VisitSubmission, received_at: dt.datetime, geo: Enrichment = _NO_GEO
) -> tuple[object, ...]:
    lat = lon = acc = speed = heading = alt = batt = None
    provider = action = account_id = visit_id = None
    started = ended = outcome = currency = total = None
    notes = photos = lines = ""
    form: dict[str, str] = {}
    tags: list[str] = []
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
        tags = list(ev.tags)
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
        geo.territory_id, geo.region, geo.in_assigned_territory, geo.account_id,
        geo.account_distance_m, geo.geo_version,
    )


def deadletter_rows(items: Iterable[tuple[DeadLetter, int]]) -> list[tuple[object, ...]]:
    """Rows of (dead letter, index of the item within its source message)."""
    return [
        (d.at, d.reason.value, d.detail, d.source_topic, d.source_partition, d.source_offset,
         idx, d.event_id, d.rep_id, d.payload, d.payload_b64)
        for d, idx in items
    ]
