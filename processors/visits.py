"""Visits: what the rep claims (check-ins, submissions) against what GPS shows (stops).

* explicit visit -- ``visit_start``/``visit_end`` check-ins, paired by ``visit_id`` (else by
  account, in time order); a visit submission with the same ``visit_id`` (else the same
  account and an overlapping interval) is linked to it and fills a missing start or end; a
  submission that matches no check-in is a visit claim of its own;
* verified -- a stop overlaps it within the place radius plus ``verify_tolerance_m``, or
  enough of the (non-mock, filtered) pings during it are that close;
* automatic visit -- a stop of at least ``visit_min_duration_s`` inside a customer geofence
  that no explicit visit explains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from processors.config import SessionParams
from processors.geodesy import haversine_m
from processors.gps_filter import Track
from processors.places import Place, PlaceLookup
from processors.records import VisitSource
from processors.stops import Stop, stop_around


@dataclass(frozen=True, slots=True)
class Mark:
    """A check-in on the corrected time axis."""

    t: float
    action: str
    event_id: str
    account_id: str | None = None
    visit_id: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A visit submission on the corrected time axis."""

    start_t: float
    end_t: float
    account_id: str
    visit_id: str
    event_id: str


@dataclass(frozen=True, slots=True)
class StopPlace:
    place_id: str | None
    kind: str | None
    distance_m: float | None


@dataclass(frozen=True, slots=True)
class Visit:
    start_t: float
    end_t: float
    account_id: str
    source: VisitSource
    verified: bool
    visit_id: str | None = None
    submission_event_id: str | None = None
    stop_index: int | None = None
    lon: float | None = None
    lat: float | None = None
    place_distance_m: float | None = None
    inferred: bool = False
    n_pings: int = 0


@dataclass
class _Open:
    account_id: str
    visit_id: str | None
    start_t: float | None = None
    end_t: float | None = None
    submission: Claim | None = None
    source: VisitSource = VisitSource.check_in


def label_stops(stops: Sequence[Stop], places: PlaceLookup) -> list[StopPlace]:
    """The place (if any) whose geofence holds each stop's centroid."""
    if not stops:
        return []
    ids, dist, kinds = places.nearest(np.array([s.lon for s in stops]),
                                      np.array([s.lat for s in stops]))
    return [StopPlace(i, k, None if np.isnan(d) else float(d))
            for i, d, k in zip(ids.tolist(), dist.tolist(), kinds.tolist(), strict=True)]


def _pair_checkins(marks: Sequence[Mark]) -> list[_Open]:
    visits = sorted((m for m in marks if m.action in ("visit_start", "visit_end")),
                    key=lambda m: (m.t, m.event_id))
    by_id: dict[str, _Open] = {}
    out: list[_Open] = []
    open_by_account: dict[str, _Open] = {}
    for m in visits:
        acc = m.account_id or ""
        is_start = m.action == "visit_start"
        if m.visit_id is not None:
            v = by_id.get(m.visit_id)
            if v is None:
                v = by_id[m.visit_id] = _Open(acc, m.visit_id)
                out.append(v)
            if is_start:
                v.start_t = m.t if v.start_t is None else min(v.start_t, m.t)
            else:
                v.end_t = m.t if v.end_t is None else max(v.end_t, m.t)
            continue
        cur = open_by_account.get(acc)
        if is_start:
            v = _Open(acc, None, start_t=m.t)
            out.append(v)
            open_by_account[acc] = v
        elif cur is not None:
            cur.end_t = m.t
            del open_by_account[acc]
        else:
            out.append(_Open(acc, None, end_t=m.t))
    return out


def _overlaps(a0: float, a1: float, b0: float, b1: float, slack: float) -> bool:
    return a0 <= b1 + slack and b0 <= a1 + slack


def _link_claims(opens: list[_Open], claims: Sequence[Claim], slack: float) -> None:
    by_id = {v.visit_id: v for v in opens if v.visit_id is not None}
    for c in sorted(claims, key=lambda c: (c.start_t, c.event_id)):
        v = by_id.get(c.visit_id)
        if v is None:
            for cand in opens:
                if cand.account_id != c.account_id or cand.submission is not None:
                    continue
                s = cand.start_t if cand.start_t is not None else cand.end_t
                e = cand.end_t if cand.end_t is not None else cand.start_t
                if s is not None and e is not None and _overlaps(s, e, c.start_t, c.end_t,
                                                                 slack):
                    v = cand
                    break
        if v is None:
            v = _Open(c.account_id, c.visit_id, c.start_t, c.end_t, c, VisitSource.submission)
            opens.append(v)
            by_id[c.visit_id] = v
        elif v.submission is None:
            v.submission = c
            if v.visit_id is None:
                v.visit_id = c.visit_id


def _place_of(places: PlaceLookup, account_id: str, params: SessionParams) -> Place | None:
    p = places.place(account_id) if account_id else None
    if p is not None and p.radius_m is None:
        p = replace(p, radius_m=params.default_place_radius_m)
    return p


def build_visits(
    stops: Sequence[Stop],
    stop_places: Sequence[StopPlace],
    marks: Sequence[Mark],
    claims: Sequence[Claim],
    track: Track,
    places: PlaceLookup,
    params: SessionParams,
) -> list[Visit]:
    """All visits of a rep-day (explicit first, then automatic), sorted by start."""
    slack = params.verify_slack_s
    opens = _pair_checkins(marks)
    _link_claims(opens, claims, slack)
    consumed: dict[int, int] = {}  # stop index -> number of explicit visits matched to it
    explicit: list[tuple[_Open, float, float, bool, Place | None, int | None, list[int]]] = []
    for v in opens:
        s, e, inferred = _interval(v, stops, slack)
        place = _place_of(places, v.account_id, params)
        k = _matching_stop(s, e, v.account_id, place, stops, stop_places, params)
        # One stay split into several stops (an excursion, a gap): the other stops at this
        # account that overlap the visit are part of it, not automatic visits of their own
        # (which counted the visit twice).
        parts = [] if k is None else [
            j for j, (st, sp) in enumerate(zip(stops, stop_places, strict=True))
            if j == k or (sp.place_id == v.account_id
                          and _overlaps(st.start_t, st.end_t, s, e, slack))]
        for j in parts:
            consumed[j] = consumed.get(j, 0) + 1
        explicit.append((v, s, e, inferred, place, k, parts))
    out: list[Visit] = []
    for v, s, e, inferred, place, k, parts in explicit:
        lon = place.lon if place else None
        lat = place.lat if place else None
        if k is not None:
            st = stops[k]
            for j in parts:
                if consumed[j] == 1:  # the stop is this visit's alone: GPS presence widens it
                    s, e = min(s, stops[j].start_t), max(e, stops[j].end_t)
            d = None if place is None else float(haversine_m(st.lon, st.lat, place.lon,
                                                             place.lat))
            verified, n_p = True, st.n
        else:
            verified, d, n_p = _verify_by_pings(s, e, place, track, params)
        out.append(Visit(s, e, v.account_id, v.source, verified, v.visit_id,
                         v.submission.event_id if v.submission else None, k, lon, lat, d,
                         inferred, n_p))
    for k, (st, sp) in enumerate(zip(stops, stop_places, strict=True)):
        if (k in consumed or sp.kind != "customer" or sp.place_id is None
                or st.duration_s < params.visit_min_duration_s):
            continue
        place = _place_of(places, sp.place_id, params)
        out.append(Visit(st.start_t, st.end_t, sp.place_id, VisitSource.auto, True, None,
                         None, k, place.lon if place else st.lon,
                         place.lat if place else st.lat, sp.distance_m, False, st.n))
    out.sort(key=lambda v: (v.start_t, v.account_id, v.visit_id or ""))
    return out


def _interval(v: _Open, stops: Sequence[Stop], slack: float) -> tuple[float, float, bool]:
    """Start and end of an explicit visit, filling a missing one from the submission or the
    stop around the known one."""
    s, e = v.start_t, v.end_t
    sub = v.submission
    inferred = False
    if s is None and sub is not None:
        s = sub.start_t
    if e is None and sub is not None:
        e = sub.end_t
    if s is None and e is not None:
        around = stop_around(e, stops, slack)
        s, inferred = (around.start_t if around else e), True
    if e is None and s is not None:
        around = stop_around(s, stops, slack)
        e, inferred = (around.end_t if around else s), True
    assert s is not None and e is not None  # a visit always has one of them
    return s, max(s, e), inferred


def _matching_stop(s: float, e: float, account_id: str, place: Place | None,
                   stops: Sequence[Stop], stop_places: Sequence[StopPlace],
                   params: SessionParams) -> int | None:
    best, best_overlap = None, -1.0
    for k, (st, sp) in enumerate(zip(stops, stop_places, strict=True)):
        if not _overlaps(st.start_t, st.end_t, s, e, params.verify_slack_s):
            continue
        near = sp.place_id == account_id
        if not near and place is not None:
            d = float(haversine_m(st.lon, st.lat, place.lon, place.lat))
            near = d <= (place.radius_m or params.default_place_radius_m) + \
                params.verify_tolerance_m
        if not near:
            continue
        overlap = min(st.end_t, e) - max(st.start_t, s)
        if overlap > best_overlap:
            best, best_overlap = k, overlap
    return best


def _verify_by_pings(s: float, e: float, place: Place | None, track: Track,
                     params: SessionParams) -> tuple[bool, float | None, int]:
    if place is None:
        return False, None, 0
    m = (track.t >= s - params.verify_slack_s) & (track.t <= e + params.verify_slack_s)
    n = int(m.sum())
    if n == 0:
        return False, None, 0
    d = haversine_m(track.lon[m], track.lat[m], place.lon, place.lat)
    near = int((d <= (place.radius_m or params.default_place_radius_m)
                + params.verify_tolerance_m).sum())
    ok = near >= params.verify_min_pings and near >= params.verify_min_fraction * n
    return ok, float(np.median(d)), n
