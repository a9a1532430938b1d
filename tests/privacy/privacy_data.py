"""A rep-day with a known work day, break and off-duty pings, for the privacy tests."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from processors.records import RepDay, Segment, SegmentKind, day_id, segment_id
from schemas.derived import Enrichment
from schemas.events import Ping
from sinks.rows import (
    EVENT_COLUMN_NAMES,
    REP_DAILY_COLUMN_NAMES,
    SEGMENT_COLUMN_NAMES,
    TRANSITION_COLUMN_NAMES,
    event_row,
    model_rows,
)

TZ = "Europe/Berlin"
DAY = dt.date(2026, 3, 3)
LAT, LON = 52.523456, 13.411111


def local(h: int, m: int = 0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(h, m), tzinfo=ZoneInfo(TZ)).astimezone(dt.UTC)


def summary(rep: str = "r1", start: dt.datetime | None = None,
            end: dt.datetime | None = None, day: dt.date = DAY, version: int = 48,
            clock_offset_s: float = 0.0) -> RepDay:
    zero: dict[str, Any] = {k: 0.0 for k in (
        "workday_s", "field_s", "travel_s", "customer_s", "stopped_other_s", "unknown_s",
        "break_s", "office_home_s", "in_territory_s", "out_territory_s", "distance_m")}
    return RepDay(day_id=day_id(rep, day), rep_id=rep, local_date=day, tz=TZ,
                  workday_start=start, workday_end=end, workday_start_inferred=False,
                  workday_end_inferred=False, visits=0, verified_visits=0,
                  unverified_visits=0, auto_visits=0, pings_kept=0, pings_dropped={},
                  clock_offset_s=clock_offset_s, events=version, version=version, **zero)


def seg(kind: SegmentKind, start: dt.datetime, end: dt.datetime, rep: str = "r1",
        lon: float | None = LON, lat: float | None = LAT, place_id: str | None = None,
        version: int = 48) -> Segment:
    return Segment(segment_id=segment_id(rep, DAY, kind.value, start), rep_id=rep,
                   local_date=DAY, kind=kind, start=start, end=end,
                   duration_s=(end - start).total_seconds(), workday_s=0.0, lon=lon, lat=lat,
                   place_id=place_id, place_kind="home" if place_id else None,
                   place_distance_m=12.5 if place_id else None, version=version)


def pings(rep: str, every_min: int = 30) -> list[tuple[Ping, Enrichment]]:
    """Pings every ``every_min`` minutes over the whole local day."""
    out = []
    t, end = local(0), local(0, day=DAY + dt.timedelta(days=1))
    i = 0
    while t < end:
        p = Ping(event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{rep}|{i}"), device_id=f"dev-{rep}",
                 rep_id=rep, ts=t, received_at=t, lat=LAT + i * 1e-5, lon=LON + i * 1e-5,
                 accuracy_m=8.0, speed_mps=1.5, heading_deg=90.0, altitude_m=40.0)
        out.append((p, Enrichment(territory_id="T1", account_id="home-1",
                                  account_distance_m=20.0, geo_version=1)))
        t += dt.timedelta(minutes=every_min)
        i += 1
    return out


def insert_events(ch: Any, evs: list[tuple[Ping, Enrichment]]) -> None:
    ch.insert("events_all", [event_row(p, p.ts, g) for p, g in evs],
              column_names=EVENT_COLUMN_NAMES, settings={"async_insert": 0})


def insert_day(ch: Any, day: RepDay, segments: list[Segment],
               transitions: list[Any] = ()) -> None:  # type: ignore[assignment]
    ch.insert("rep_daily_all", model_rows([day], REP_DAILY_COLUMN_NAMES),
              column_names=REP_DAILY_COLUMN_NAMES, settings={"async_insert": 0})
    if segments:
        rows = model_rows(segments, SEGMENT_COLUMN_NAMES)
        ch.insert("segments_all", rows, column_names=SEGMENT_COLUMN_NAMES,
                  settings={"async_insert": 0})
        if ch.command("EXISTS TABLE segments_current"):  # the current-version table (v4)
            ch.insert("segments_current", [[*r, 0] for r in rows],
                      column_names=[*SEGMENT_COLUMN_NAMES, "is_deleted"],
                      settings={"async_insert": 0})
    if transitions:
        rows = model_rows(transitions, TRANSITION_COLUMN_NAMES)
        ch.insert("transitions_all", rows, column_names=TRANSITION_COLUMN_NAMES,
                  settings={"async_insert": 0})
        if ch.command("EXISTS TABLE transitions_current"):  # the current-version table (v8)
            ch.insert("transitions_current", [[*r, 0] for r in rows],
                      column_names=[*TRANSITION_COLUMN_NAMES, "is_deleted"],
                      settings={"async_insert": 0})
