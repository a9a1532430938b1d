"""Derive one rep-day: events in, segments and the daily summary out.

:func:`derive_rep_day` is a pure function of the SET of the rep-day's events: it removes
duplicate ``event_id`` s (keeping the copy received first), sorts by ``(ts, event_id)`` and
never looks at arrival order, so the same events late, shuffled or twice derive the same
records. Only ``version`` is up to the caller.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from zoneinfo import ZoneInfo

from processors.config import DEFAULT_PARAMS, SessionParams
from processors.gps_filter import FilterResult, filter_pings
from processors.places import PlaceLookup
from processors.records import (
    RepDay,
    Segment,
    SegmentKind,
    VisitSource,
    day_id,
    segment_id,
)
from processors.stops import detect_stops, travel_between
from processors.visits import Claim, Mark, build_visits, label_stops
from processors.workday import (
    BREAK,
    CUSTOMER,
    OFFICE_HOME,
    STOPPED_OTHER,
    TRAVEL,
    UNKNOWN,
    Interval,
    base_timeline,
    derive_breaks,
    derive_workday,
    extend_edges,
    overlap_s,
    paint,
    territory_seconds,
)
from schemas.events import CheckIn, Ping, VisitSubmission

AnyEvent = Ping | CheckIn | VisitSubmission


def local_day_bounds(local_date: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a local calendar day, in UTC (23 or 25 hours on DST days)."""
    lo = dt.datetime.combine(local_date, dt.time(0), tzinfo=tz)
    hi = dt.datetime.combine(local_date + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    return lo.astimezone(dt.UTC), hi.astimezone(dt.UTC)


def event_time(e: AnyEvent) -> dt.datetime:
    """The time that places an event in a rep-day: a submission belongs to its visit."""
    return e.started_at if isinstance(e, VisitSubmission) else e.ts


def unique_events(events: Iterable[AnyEvent]) -> list[AnyEvent]:
    """One copy per event_id (the earliest received_at, then the smallest JSON), sorted by
    (ts, event_id): a deterministic function of the set of events."""
    groups: dict[uuid.UUID, list[AnyEvent]] = {}
    for e in events:
        groups.setdefault(e.event_id, []).append(e)

    def rank(e: AnyEvent) -> tuple[float, str]:
        return (e.received_at.timestamp() if e.received_at else float("inf"),
                e.model_dump_json())

    chosen = [g[0] if len(g) == 1 else min(g, key=rank) for g in groups.values()]
    # A UUID's text is its 128-bit integer in fixed-width hex: ordering by ``.int`` is
    # ordering by ``str(event_id)``, without formatting every id.
    return sorted(chosen, key=lambda e: (e.ts, e.event_id.int))


def submission_facts(sub: VisitSubmission) -> dict[str, object]:
    """What a visit segment carries of its linked submission (the ``visits`` view's form
    columns): outcome, order currency and total, tags, form, notes, number of photos."""
    return {"outcome": sub.outcome, "order_currency": sub.order.currency if sub.order else None,
            "order_total": sub.order.total if sub.order else None, "tags": tuple(sub.tags),
            "form": dict(sub.form), "notes": sub.notes, "photo_count": len(sub.photos)}


def clock_offsets(events: Sequence[AnyEvent], params: SessionParams) -> dict[str, float]:
    """Per device: seconds to add to its times (min of received_at - ts, when plausible)."""
    if not params.clock_correction:
        return {}
    lags: dict[str, float] = {}
    for e in events:
        if e.received_at is None:
            continue
        lag = (e.received_at - e.ts).total_seconds()
        if lag < -params.max_future_s:
            continue  # rejected as in_future; says nothing about the clock
        lags[e.device_id] = min(lag, lags.get(e.device_id, lag))
    return {d: lag for d, lag in lags.items() if abs(lag) <= params.max_clock_correction_s}


def derive_rep_day(
    rep_id: str,
    local_date: dt.date,
    tz: ZoneInfo | str,
    events: Iterable[AnyEvent],
    places: PlaceLookup,
    params: SessionParams = DEFAULT_PARAMS,
    version: int = 0,
    *,
    compiled: bool = True,
) -> tuple[list[Segment], RepDay]:
    """Segments (stop, visit, travel, break) and the :class:`RepDay` summary of one rep-day.

    ``events`` are the rep's events of that local day (see :func:`event_time`), in any
    order, duplicates allowed; ``places`` holds the accounts, offices and this rep's home.
    ``compiled=False`` runs the pure-Python reference of the filter, stops and travel
    instead of their kernels (:mod:`processors.kernels`; the same records).
    """
    evs = [e for e in unique_events(events) if e.rep_id == rep_id]
    offsets = clock_offsets(evs, params)
    pings = [e for e in evs if isinstance(e, Ping)]
    filtered = filter_pings(pings, params, offsets, compiled=compiled)
    return derive_filtered(rep_id, local_date, tz, filtered, [e for e in evs
                                                              if not isinstance(e, Ping)],
                           offsets, len(evs), places, params, version, compiled=compiled)


def derive_filtered(
    rep_id: str,
    local_date: dt.date,
    tz: ZoneInfo | str,
    filtered: FilterResult,
    others: Sequence[AnyEvent],
    offsets: dict[str, float],
    n_events: int,
    places: PlaceLookup,
    params: SessionParams = DEFAULT_PARAMS,
    version: int = 0,
    *,
    compiled: bool = True,
) -> tuple[list[Segment], RepDay]:
    """The rest of :func:`derive_rep_day` once the pings are filtered: ``others`` are the
    day's unique check-ins and submissions sorted by ``(ts, event_id)``, ``offsets`` the
    clock offsets of :func:`clock_offsets` and ``n_events`` the size of the day's event set.
    :mod:`processors.day_columns` filters column chunks and comes in here too."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    day_lo_dt, day_hi_dt = local_day_bounds(local_date, zone)
    day_lo, day_hi = day_lo_dt.timestamp(), day_hi_dt.timestamp()

    def at(e: AnyEvent, when: dt.datetime) -> float:
        return when.timestamp() + offsets.get(e.device_id, 0.0)

    checkins = [e for e in others if isinstance(e, CheckIn)
                and (e.received_at is None
                     or (e.ts - e.received_at).total_seconds() <= params.max_future_s)]
    subs = [e for e in others if isinstance(e, VisitSubmission)]
    track = filtered.kept
    stops = detect_stops(track, params, compiled=compiled)
    moves = travel_between(track, stops, params, compiled=compiled)
    stop_places = label_stops(stops, places)
    marks = [Mark(at(c, c.ts), c.action.value, str(c.event_id), c.account_id, c.visit_id)
             for c in checkins]
    claims = [Claim(at(s, s.started_at), at(s, s.ended_at), s.account_id, s.visit_id,
                    str(s.event_id)) for s in subs]
    visits = build_visits(stops, stop_places, marks, claims, track, places, params)
    activity = [*track.t.tolist(), *(m.t for m in marks)]
    activity = [a for a in activity if day_lo <= a < day_hi]
    workday = derive_workday(marks, track, stops, stop_places, activity, day_lo, day_hi,
                             params, moves)
    lo, hi = (workday.start_t, workday.end_t) if workday else (day_lo, day_lo)
    breaks = (derive_breaks(marks, stops, stop_places, visits, workday, params, day_lo)
              if workday else [])
    # A rep on a break parked inside some customer's geofence is not visiting it.
    visits = [v for v in visits if v.source != VisitSource.auto
              or sum(overlap_s(b.start_t, b.end_t, v.start_t, v.end_t) for b in breaks)
              <= 0.5 * (v.end_t - v.start_t)]

    layers: list[Interval] = extend_edges(base_timeline(stop_places=stop_places, stops=stops,
                                                        moves=moves), lo, hi, params)
    layers += [(v.start_t, v.end_t, CUSTOMER) for v in visits if v.verified]
    layers += [(b.start_t, b.end_t, BREAK) for b in breaks]
    pieces = paint(layers, lo, hi)
    totals = {k: 0.0 for k in (BREAK, CUSTOMER, OFFICE_HOME, STOPPED_OTHER, TRAVEL, UNKNOWN)}
    for s, e, label in pieces:
        totals[label] += e - s
    field = [p for p in pieces if p[2] not in (BREAK, OFFICE_HOME)]
    in_s, out_s = territory_seconds(track, field)
    distance = sum(m.distance_m * (overlap_s(m.start_t, m.end_t, lo, hi) / m.duration_s
                                   if m.duration_s > 0 else float(lo <= m.start_t < hi))
                   for m in moves)

    def utc(t: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(t, dt.UTC)

    def seg(kind: SegmentKind, s: float, e: float, key: str = "", **kw: object) -> Segment:
        return Segment(segment_id=segment_id(rep_id, local_date, kind.value, utc(s), key),
                       rep_id=rep_id, local_date=local_date, kind=kind, start=utc(s),
                       end=utc(e), duration_s=round(e - s, 3),
                       workday_s=round(overlap_s(s, e, lo, hi), 3), version=version,
                       **kw)  # type: ignore[arg-type]

    segments: list[Segment] = []
    for st, sp in zip(stops, stop_places, strict=True):
        segments.append(seg(SegmentKind.stop, st.start_t, st.end_t, lon=st.lon, lat=st.lat,
                            place_id=sp.place_id, place_kind=sp.kind,
                            place_distance_m=sp.distance_m, n_pings=st.n))
    for m in moves:
        if not m.gap:
            segments.append(seg(SegmentKind.travel, m.start_t, m.end_t,
                                distance_m=round(m.distance_m, 2), n_pings=m.n))
    forms = {str(s.event_id): s for s in subs}
    for v in visits:
        sub = forms.get(v.submission_event_id) if v.submission_event_id else None
        segments.append(seg(SegmentKind.visit, v.start_t, v.end_t, key=v.account_id,
                            lon=v.lon, lat=v.lat, place_id=v.account_id,
                            place_kind="customer", visit_id=v.visit_id,
                            visit_source=v.source, verified=v.verified,
                            place_distance_m=v.place_distance_m,
                            submission_event_id=v.submission_event_id,
                            inferred=v.inferred, n_pings=v.n_pings,
                            **(submission_facts(sub) if sub is not None else {})))
    for b in breaks:
        segments.append(seg(SegmentKind.break_, b.start_t, b.end_t, inferred=b.inferred))
    segments.sort(key=lambda s: (s.start, s.kind.value, str(s.segment_id)))

    workday_s = hi - lo
    summary = RepDay(
        day_id=day_id(rep_id, local_date), rep_id=rep_id, local_date=local_date,
        tz=zone.key, workday_start=utc(lo) if workday else None,
        workday_end=utc(hi) if workday else None,
        workday_start_inferred=bool(workday and workday.start_inferred),
        workday_end_inferred=bool(workday and workday.end_inferred),
        workday_s=round(workday_s, 3),
        field_s=round(workday_s - totals[BREAK] - totals[OFFICE_HOME], 3),
        travel_s=round(totals[TRAVEL], 3), customer_s=round(totals[CUSTOMER], 3),
        stopped_other_s=round(totals[STOPPED_OTHER], 3), unknown_s=round(totals[UNKNOWN], 3),
        break_s=round(totals[BREAK], 3), office_home_s=round(totals[OFFICE_HOME], 3),
        in_territory_s=round(in_s, 3), out_territory_s=round(out_s, 3),
        distance_m=round(distance, 2),
        visits=len(visits), verified_visits=sum(v.verified for v in visits),
        unverified_visits=sum(not v.verified for v in visits),
        auto_visits=sum(v.source == VisitSource.auto for v in visits),
        pings_kept=len(track), pings_dropped=filtered.dropped_counts(),
        clock_offset_s=round(sum(offsets.values()) / len(offsets), 3) if offsets else 0.0,
        events=n_events, version=version,
    )
    return segments, summary
