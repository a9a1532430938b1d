"""geotel's figures for one rep: the processors run both ways on the same uploads.

* streaming: :class:`processors.RepSessionState` gets every upload in send order
  (``add(..., derive=False)``, as the sessions stage batches them), derived every
  ``derive_every`` uploads and once at the end; the last update of each day counts;
* one-shot: :func:`processors.derive_rep_day` over each rep-day's whole set of events.

Both must give identical segments and daily figures (``version`` aside: a derivation whose
records did not change emits nothing, so the last emitted version may be an earlier one).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from bench.accuracy.workload import RepUploads, parse_upload
from processors import PlaceLookup, RepDay, RepSessionState, Segment, SessionParams
from processors.records import SegmentKind
from processors.rep_day import derive_rep_day, event_time


@dataclass(frozen=True, slots=True)
class DayFigures:
    """What the scorer needs of one derived rep-day (times in epoch seconds, UTC)."""

    start: float | None
    end: float | None
    field_s: float
    distance_m: float
    visits: list[tuple[str, float, float]]  # (account_id, start, end): verified and auto
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class OursRep:
    days: dict[str, DayFigures]
    mismatches: list[str]  # "rep date: field ..." where streaming and one-shot differ
    rejected: dict[str, int]
    duplicates: int
    derivations: int


def _figures(segments: list[Segment], summary: RepDay) -> DayFigures:
    visits = [(s.place_id or "", s.start.timestamp(), s.end.timestamp()) for s in segments
              if s.kind == SegmentKind.visit and s.verified]
    return DayFigures(
        start=summary.workday_start.timestamp() if summary.workday_start else None,
        end=summary.workday_end.timestamp() if summary.workday_end else None,
        field_s=summary.field_s, distance_m=summary.distance_m, visits=visits,
        detail={"start_inferred": summary.workday_start_inferred,
                "end_inferred": summary.workday_end_inferred,
                "break_s": summary.break_s, "office_home_s": summary.office_home_s,
                "unknown_s": summary.unknown_s, "clock_offset_s": summary.clock_offset_s,
                "unverified_visits": summary.unverified_visits,
                "pings_dropped": dict(summary.pings_dropped)})


def _comparable(segments: list[Segment], summary: RepDay) -> tuple[list[str], dict[str, Any]]:
    segs = [s.model_dump_json(exclude={"version"}) for s in segments]
    return segs, summary.model_dump(mode="json", exclude={"version"})


def _diff(a: tuple[list[str], dict[str, Any]], b: tuple[list[str], dict[str, Any]]) -> str:
    keys = sorted(k for k in a[1] if a[1][k] != b[1].get(k))
    if a[0] != b[0]:
        keys.append(f"segments ({len(a[0])} vs {len(b[0])})")
    return ", ".join(keys)


def run_ours(rep: RepUploads, places: PlaceLookup, params: SessionParams,
             derive_every: int = 10) -> OursRep:
    zone = ZoneInfo(rep.tz)
    uploads = [(at, parse_upload(at, evs)) for at, evs in rep.uploads]

    # Streaming: upload by upload, in send order.
    state = RepSessionState(rep.rep_id, zone, params)
    latest: dict[dt.date, tuple[list[Segment], RepDay]] = {}
    rejected: dict[str, int] = {}
    rejected_ids: set[Any] = set()
    duplicates = derivations = 0

    def take(out: Any) -> None:
        for u in out.updates:
            latest[u.local_date] = (list(u.segments), u.summary)

    for k, (at, evs) in enumerate(uploads, 1):
        out = state.add(evs, received=at, places=places, derive=False)
        duplicates += out.duplicates
        for rj in out.rejected:
            rejected[rj.reason.value] = rejected.get(rj.reason.value, 0) + 1
            rejected_ids.add(rj.event_id)
        if derive_every and k % derive_every == 0:
            take(state.derive(places))
            derivations += 1
    take(state.derive(places))
    derivations += 1

    # One-shot: each rep-day's set (resends included; dead-lettered events excluded, as a
    # rebuild from the store excludes them).
    by_day: dict[dt.date, list[Any]] = {}
    for _, evs in uploads:
        for e in evs:
            if e.event_id not in rejected_ids:
                by_day.setdefault(event_time(e).astimezone(zone).date(), []).append(e)

    days: dict[str, DayFigures] = {}
    mismatches: list[str] = []
    for day in sorted(set(by_day) | set(latest)):
        n = len({e.event_id for e in by_day.get(day, [])})
        segs, summary = derive_rep_day(rep.rep_id, day, zone, by_day.get(day, []), places,
                                       params, version=n)
        if day not in latest:
            mismatches.append(f"{rep.rep_id} {day}: no streaming update")
        else:
            a, b = _comparable(segs, summary), _comparable(*latest[day])
            if a != b:
                mismatches.append(f"{rep.rep_id} {day}: {_diff(a, b)}")
        days[day.isoformat()] = _figures(segs, summary)
    return OursRep(days, mismatches, rejected, duplicates, derivations)
