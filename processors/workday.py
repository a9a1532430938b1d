"""The work day and how its time splits: field, travel, customers, breaks, office/home.

Work day: from the first ``workday_start`` to the last ``workday_end`` check-in. A missing
one is inferred from the track (:mod:`processors.day_sessions`): off-duty stays (an hour or
more at home, or at a place where the rep spends the night) and long gaps without data cut
the data into sessions; sessions entirely at night with no customer/office stop or work
check-in (a night trip) are not work; the first (last) work session bounds the day. A short
stay at home at either end is preparation or paperwork, i.e. work. The local day's midnight
always bounds it. A ``workday_end`` followed by a ``workday_start``, and off-duty stays and
long gaps between work sessions, are off-duty time (counted as break).

Breaks: a ``break_start`` without its ``break_end`` lasts until the departure from the stop
where the break is spent (see :func:`_break_stop_after`); a ``break_end`` without its start
symmetrically begins at the arrival at that stop.

Allocation: every instant of the work day gets exactly one label, by priority
break > customer (verified visits) > office/home stop > (stop elsewhere | travel | unknown).
Field time is the work day minus breaks and office/home time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import processors.day_sessions as day_sessions
from processors.config import SessionParams
from processors.gps_filter import Track
from processors.places import OFFICE_HOME_KINDS
from processors.stops import Move, Stop
from processors.visits import Mark, StopPlace, Visit

BREAK, CUSTOMER, OFFICE_HOME, STOPPED_OTHER, TRAVEL, UNKNOWN = (
    "break", "customer", "office_home", "stopped_other", "travel", "unknown")
_PRIORITY = {BREAK: 5, CUSTOMER: 4, OFFICE_HOME: 3, STOPPED_OTHER: 1, TRAVEL: 1, UNKNOWN: 0}

Interval = tuple[float, float, str]


@dataclass(frozen=True, slots=True)
class Workday:
    start_t: float
    end_t: float
    start_inferred: bool
    end_inferred: bool
    off_duty: tuple[tuple[float, float], ...] = ()  # inside it: counted as break


@dataclass(frozen=True, slots=True)
class Break:
    start_t: float
    end_t: float
    inferred: bool


def derive_workday(marks: Sequence[Mark], track: Track, stops: Sequence[Stop],
                   stop_places: Sequence[StopPlace], activity_t: Sequence[float],
                   day_lo: float, day_hi: float, params: SessionParams,
                   moves: Sequence[Move] = ()) -> Workday | None:
    """The work day within [day_lo, day_hi), or None when the day has no activity at all,
    or only activity that is not work (a night trip; see :mod:`processors.day_sessions`)."""
    starts = [m.t for m in marks if m.action == "workday_start"]
    ends = [m.t for m in marks if m.action == "workday_end"]
    start = min(starts) if starts else None
    end = max(ends) if ends else None
    if start is not None and end is not None and end <= start:
        end = None
    acts = sorted(activity_t)
    if start is None and end is None and not acts:
        return None
    s_inf, e_inf = start is None, end is None
    blocks = day_sessions.off_duty_blocks(track, stops, stop_places, moves, day_lo, params)
    work = [x for x in day_sessions.sessions(acts, blocks, stops, stop_places, marks, day_lo,
                                             params) if x.counts]
    if start is None and end is None and not work:
        return None  # nothing but off-duty activity (a night trip)
    if start is None:
        # The first work session starts at the first activity, or at the departure from
        # the off-duty stay (the night at home) that opens the data.
        first = [x for x in work if end is None or x.start_t < end]
        if first:
            start = first[0].start_t
        elif acts:
            start = acts[0]
        else:
            start = min(end or day_lo, day_hi)
    if end is None:
        last = [x for x in work if x.end_t > start]
        if last:
            end = last[-1].end_t
        else:
            later = [a for a in acts if a > start]
            end = later[-1] if later else start
    start = min(max(start, day_lo), day_hi)
    end = min(max(end, start), day_hi)
    # Off-duty stays and long gaps between work sessions; a gap holding a check-in was
    # work the rep reported, so it stays field time.
    mark_t = [m.t for m in marks if m.action in day_sessions.WORK_ACTIONS]
    off = tuple((b.start_t, b.end_t) for b in blocks
                if start < b.start_t and b.end_t < end
                and not (b.kind == "gap" and any(b.start_t <= t <= b.end_t for t in mark_t)))
    return Workday(start, end, s_inf, e_inf, off)


def derive_breaks(marks: Sequence[Mark], stops: Sequence[Stop],
                  stop_places: Sequence[StopPlace], visits: Sequence[Visit],
                  workday: Workday, params: SessionParams, day_lo: float = 0.0) -> list[Break]:
    """Breaks from check-ins; a missing side is closed by the stop where the break is spent
    (never past the neighbouring check-in). Also off-duty time between work sessions."""
    ordered = sorted(marks, key=lambda m: (m.t, m.event_id))
    out: list[Break] = []
    pending: float | None = None
    for k, m in enumerate(ordered):
        if m.action == "break_start":
            if pending is not None:
                out.append(_close_open_break(pending, ordered, k, stops, params))
            pending = m.t
        elif m.action == "break_end":
            if pending is not None:
                out.append(Break(pending, max(pending, m.t), False))
                pending = None
            else:
                prev = [o.t for o in ordered[:k] if o.t < m.t]
                lo_t = prev[-1] if prev else -math.inf
                st = _break_stop_before(m.t, lo_t, stops, params)
                lo = max(st.start_t, lo_t) if st else m.t
                out.append(Break(min(lo, m.t), m.t, True))
    if pending is not None:
        out.append(_close_open_break(pending, ordered, len(ordered), stops, params))
    wd = sorted((m for m in ordered if m.action in ("workday_start", "workday_end")),
                key=lambda m: (m.t, m.event_id))
    for a, b in itertools.pairwise(wd):
        if a.action == "workday_end" and b.action == "workday_start":
            out.append(Break(a.t, b.t, False))
    out.extend(Break(a, b, True) for a, b in workday.off_duty)
    has_checkins = any(m.action in ("break_start", "break_end") for m in marks)
    if params.infer_breaks and not has_checkins:
        inferred = _infer_break(stops, stop_places, visits, workday, params, day_lo)
        if inferred is not None:
            out.append(inferred)
    return sorted(out, key=lambda b: (b.start_t, b.end_t))


def _close_open_break(start: float, ordered: Sequence[Mark], k: int,
                      stops: Sequence[Stop], params: SessionParams) -> Break:
    nxt = [o.t for o in ordered[k:] if o.t > start]
    hi_t = nxt[0] if nxt else math.inf
    st = _break_stop_after(start, hi_t, stops, params)
    hi = min(st.end_t, hi_t) if st else start
    return Break(start, max(start, hi), True)


def _break_stop_after(t: float, hi_t: float, stops: Sequence[Stop],
                      params: SessionParams) -> Stop | None:
    """The stop where a break checked in at ``t`` is spent: the first stop that goes on for
    at least ``stop_min_duration_s`` after ``t`` and starts within ``travel_max_gap_s`` of
    it and before the next check-in ``hi_t``.

    The rep presses ``break_start`` either where the break is spent (the stop around ``t``
    goes on) or when leaving a stop for it (the stop around ``t`` ends within moments, and
    the break stop is detected only after a drive, or after ``t`` when pings are sparse).
    """
    reach = min(t + params.travel_max_gap_s, hi_t)
    for st in stops:
        if st.start_t >= reach:
            break
        if st.end_t - max(st.start_t, t) >= params.stop_min_duration_s:
            return st
    return None


def _break_stop_before(t: float, lo_t: float, stops: Sequence[Stop],
                       params: SessionParams) -> Stop | None:
    """Mirror of :func:`_break_stop_after` for a ``break_end`` without its start: the last
    stop with at least ``stop_min_duration_s`` of it before ``t`` that ends within
    ``travel_max_gap_s`` of ``t`` and after the previous check-in ``lo_t``."""
    reach = max(t - params.travel_max_gap_s, lo_t)
    for st in reversed(stops):
        if st.end_t <= reach:
            break
        if min(st.end_t, t) - st.start_t >= params.stop_min_duration_s:
            return st
    return None


def _infer_break(stops: Sequence[Stop], stop_places: Sequence[StopPlace],
                 visits: Sequence[Visit], workday: Workday,
                 params: SessionParams, day_lo: float) -> Break | None:
    best: Stop | None = None
    for st, sp in zip(stops, stop_places, strict=True):
        if sp.kind is not None or not (
                params.break_infer_min_s <= st.duration_s <= params.break_infer_max_s):
            continue
        mid_h = ((st.start_t + st.end_t) / 2.0 - day_lo) / 3600.0
        if not params.break_window_start_h <= mid_h <= params.break_window_end_h:
            continue
        if st.start_t < workday.start_t or st.end_t > workday.end_t:
            continue
        if any(v.start_t < st.end_t and st.start_t < v.end_t for v in visits):
            continue
        if best is None or st.duration_s > best.duration_s:
            best = st
    return None if best is None else Break(best.start_t, best.end_t, True)


def base_timeline(stops: Sequence[Stop], stop_places: Sequence[StopPlace],
                  moves: Sequence[Move]) -> list[Interval]:
    """Disjoint labelled pieces from the track alone (stops and moves), in time order."""
    out: list[Interval] = []
    for st, sp in zip(stops, stop_places, strict=True):
        out.append((st.start_t, st.end_t,
                    OFFICE_HOME if sp.kind in OFFICE_HOME_KINDS else STOPPED_OTHER))
    out.extend((m.start_t, m.end_t, UNKNOWN if m.gap else TRAVEL) for m in moves)
    out.sort()
    return out


def paint(layers: Sequence[Interval], lo: float, hi: float) -> list[Interval]:
    """Cut [lo, hi) into pieces labelled by the highest-priority interval covering each
    (``unknown`` where none does), merging neighbours with the same label."""
    if hi <= lo:
        return []
    cuts = np.unique(np.array([lo, hi, *[x for a, b, _ in layers for x in (a, b)]]))
    cuts = cuts[(cuts >= lo) & (cuts <= hi)]
    if len(layers) == 0:
        return [(lo, hi, UNKNOWN)]
    mids = (cuts[:-1] + cuts[1:]) / 2.0
    a = np.array([x[0] for x in layers])
    b = np.array([x[1] for x in layers])
    pr = np.array([_PRIORITY[x[2]] for x in layers], dtype=np.float64)
    cover = (a[None, :] <= mids[:, None]) & (mids[:, None] < b[None, :])
    score = np.where(cover, pr[None, :], -1.0)
    best = np.argmax(score, axis=1)
    has = score[np.arange(len(mids)), best] >= 0
    out: list[Interval] = []
    for k in range(len(mids)):
        label = layers[int(best[k])][2] if has[k] else UNKNOWN
        s, e = float(cuts[k]), float(cuts[k + 1])
        if out and out[-1][2] == label and out[-1][1] == s:
            out[-1] = (out[-1][0], e, label)
        else:
            out.append((s, e, label))
    return out


def extend_edges(base: list[Interval], lo: float, hi: float,
                 params: SessionParams) -> list[Interval]:
    """Let the first/last track piece cover a short lead-in/out to the work-day bounds."""
    if not base:
        return base
    out = list(base)
    s, e, lab = out[0]
    if lo < s and s - lo <= params.travel_max_gap_s:
        out[0] = (lo, e, lab)
    s, e, lab = out[-1]
    if e < hi and hi - e <= params.travel_max_gap_s:
        out[-1] = (s, hi, lab)
    return out


def territory_seconds(track: Track, field: Sequence[Interval]) -> tuple[float, float]:
    """Seconds of field time inside / outside the rep's territory (nearest-fix flag)."""
    if len(track) == 0 or not field:
        return 0.0, 0.0
    t = track.t
    mid = (t[:-1] + t[1:]) / 2.0
    lo = np.concatenate([[-np.inf], mid])
    hi = np.concatenate([mid, [np.inf]])
    inside = outside = 0.0
    for s, e, _ in field:
        ov = np.clip(np.minimum(hi, e) - np.maximum(lo, s), 0.0, None)
        inside += float(ov[track.territory == 1].sum())
        outside += float(ov[track.territory == 0].sum())
    return inside, outside


def overlap_s(s: float, e: float, lo: float, hi: float) -> float:
    return max(0.0, min(e, hi) - max(s, lo))
