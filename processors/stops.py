"""Stops (stay points) and the travel between them, over a filtered track.

Stop detection follows the stay-point idea of Li et al. (2008) -- a run of fixes that stays
within a distance for at least a duration -- with three changes for phone data:

* the run is measured against its running centroid, not its first fix, so a noisy first fix
  does not decide the stop;
* fixes that leave the radius but come back within ``stop_excursion_max_s`` are outliers
  of the stop, not a departure; gaps up to ``stop_max_gap_s`` at one place are bridged;
* stops split by a longer excursion are merged when their centroids are within the radius
  and the gap is short.

Boundaries: a stop starts halfway between the last fix before it and its first fix (and ends
halfway to the next fix), the unbiased estimate of the arrival with sparse pings; between
two back-to-back stops (no fix in between) the move gets the straight line at
``gap_travel_speed_mps`` centred on that midpoint, so it never lasts 0 s. Travel
fills the time between stops; a gap between fixes longer than ``travel_max_gap_s`` is
unknown time. Travel distance runs from stop centroid to stop centroid over the fixes in
between, skipping steps shorter than the noise (so jitter adds nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from processors.config import SessionParams
from processors.geodesy import EARTH_RADIUS_M
from processors.gps_filter import Track


def _dist(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    # Squares as products: CPython's ``x ** 2`` is pow(), which differs from x * x in the
    # last bit for about 1 in 1,200 values; numpy and the compiled kernel multiply.
    s1, s2 = math.sin((p2 - p1) / 2), math.sin(math.radians(lon2 - lon1) / 2)
    a = s1 * s1 + math.cos(p1) * math.cos(p2) * s2 * s2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


#: (time, lon, lat, accuracy or 0, Doppler speed or nan, heading or nan, is a fix)
_Node = tuple[float, float, float, float, float, float, bool]
_M_PER_DEG = math.pi * EARTH_RADIUS_M / 180.0
_STOPPED_MPS = 0.0  # a stop centroid's speed: it is at standstill
_MIN_TURN_SIN = math.sin(math.radians(30.0))  # smaller heading changes: a straight road


@dataclass(frozen=True, slots=True)
class Stop:
    first: int  # index of the first member fix in the track
    last: int  # index of the last member fix
    start_t: float  # estimated arrival (epoch s)
    end_t: float  # estimated departure
    lon: float  # median of member fixes
    lat: float
    n: int  # member fixes

    @property
    def duration_s(self) -> float:
        return self.end_t - self.start_t


@dataclass(frozen=True, slots=True)
class Move:
    """A piece of the time between stops: travel, or a gap without data (``gap=True``)."""

    start_t: float
    end_t: float
    distance_m: float
    n: int  # fixes inside (not counting the stops' centroids)
    gap: bool = False

    @property
    def duration_s(self) -> float:
        return self.end_t - self.start_t


def _clusters(track: Track, params: SessionParams) -> list[list[int]]:
    t, lon, lat = track.t.tolist(), track.lon.tolist(), track.lat.tolist()
    n, radius = len(t), params.stop_radius_m
    out: list[list[int]] = []
    i = 0
    while i < n:
        members = [i]
        s_lon, s_lat = lon[i], lat[i]
        last_in = i
        j = i + 1
        while j < n:
            if t[j] - t[last_in] > params.stop_max_gap_s:
                break
            c_lon, c_lat = s_lon / len(members), s_lat / len(members)
            if _dist(c_lon, c_lat, lon[j], lat[j]) <= radius:
                members.append(j)
                s_lon += lon[j]
                s_lat += lat[j]
                last_in = j
                j += 1
                continue
            back = -1
            k = j + 1
            while k < n and t[k] - t[last_in] <= params.stop_excursion_max_s:
                if _dist(c_lon, c_lat, lon[k], lat[k]) <= radius:
                    back = k
                    break
                k += 1
            if back < 0:
                break
            j = back
        if t[last_in] - t[i] >= params.stop_min_duration_s:
            out.append(members)
            i = last_in + 1
        else:
            i += 1
    return out


def _merge(clusters: list[list[int]], track: Track, params: SessionParams) -> list[list[int]]:
    merged: list[list[int]] = []
    for c in clusters:
        if merged:
            p = merged[-1]
            gap = track.t[c[0]] - track.t[p[-1]]
            d = _dist(float(np.median(track.lon[p])), float(np.median(track.lat[p])),
                      float(np.median(track.lon[c])), float(np.median(track.lat[c])))
            if gap <= params.stop_merge_gap_s and d <= params.stop_radius_m:
                merged[-1] = p + c
                continue
        merged.append(c)
    return merged


def detect_stops(track: Track, params: SessionParams, *, compiled: bool = True) -> list[Stop]:
    """Stops of a filtered, time-sorted track, in time order and non-overlapping. With
    ``compiled``: :func:`processors.kernels.stop_runs`, equal to the Python below."""
    if compiled:
        import processors.kernels as kernels  # on first use: numba is slow to import

        p = params
        cols = kernels.stop_runs(track.t, track.lon, track.lat, p.stop_radius_m,
                                 p.stop_max_gap_s, p.stop_excursion_max_s,
                                 p.stop_min_duration_s, p.stop_merge_gap_s, p.travel_max_gap_s,
                                 p.gap_travel_speed_mps)
        return [Stop(*row) for row in zip(*(c.tolist() for c in cols), strict=True)]
    t = track.t
    stops: list[Stop] = []
    runs = _merge(_clusters(track, params), track, params)
    cen = [(float(np.median(track.lon[m])), float(np.median(track.lat[m]))) for m in runs]
    speed = params.gap_travel_speed_mps
    for c, members in enumerate(runs):
        first, last = members[0], members[-1]
        # Back to back (no fix between this stop and its neighbour): the move happened
        # between the two fixes. It gets the straight line at gap_travel_speed_mps (fast:
        # the least taken from the midpoint estimates), centred between them, or the travel
        # between the stops would last 0 s and carry its distance at infinite speed.
        start = t[first]
        if first > 0 and t[first] - t[first - 1] <= params.travel_max_gap_s:
            start = (t[first - 1] + t[first]) / 2.0
            if c > 0 and runs[c - 1][-1] == first - 1:
                d = _dist(cen[c - 1][0], cen[c - 1][1], cen[c][0], cen[c][1])
                start = start + min(t[first] - t[first - 1], d / speed) / 2.0
        end = t[last]
        if last + 1 < len(t) and t[last + 1] - t[last] <= params.travel_max_gap_s:
            end = (t[last] + t[last + 1]) / 2.0
            if c + 1 < len(runs) and runs[c + 1][0] == last + 1:
                d = _dist(cen[c][0], cen[c][1], cen[c + 1][0], cen[c + 1][1])
                end = end - min(t[last + 1] - t[last], d / speed) / 2.0
        stops.append(Stop(first, last, float(start), float(end), cen[c][0], cen[c][1],
                          len(members)))
    return stops


def _turn_path(a: _Node, b: _Node) -> float:
    """Length of the two-leg path a -> corner -> b that leaves ``a`` along its heading and
    enters ``b`` along its heading (nan when the headings do not describe one turn)."""
    ha, hb = a[5], b[5]
    if ha != ha or hb != hb:
        return math.nan
    kx = math.cos(math.radians(a[2])) * _M_PER_DEG
    dx, dy = (b[1] - a[1]) * kx, (b[2] - a[2]) * _M_PER_DEG
    ax, ay = math.sin(math.radians(ha)), math.cos(math.radians(ha))
    bx, by = math.sin(math.radians(hb)), math.cos(math.radians(hb))
    det = ax * by - ay * bx
    if abs(det) < _MIN_TURN_SIN:
        return math.nan
    s = (dx * by - dy * bx) / det
    u = (ax * dy - ay * dx) / det
    return s + u if s > 0 and u > 0 else math.nan


def stop_around(t: float, stops: Sequence[Stop], slack_s: float) -> Stop | None:
    """The stop containing ``t``, else the nearest one within ``slack_s`` of it."""
    best, best_d = None, slack_s
    for st in stops:
        d = max(st.start_t - t, t - st.end_t, 0.0)
        if d <= best_d:
            best, best_d = st, d
            if d == 0.0:
                break
    return best


def _path_distance(nodes: list[_Node], params: SessionParams) -> float:
    """Distance along nodes (see module doc); the last node always counts.

    A leg between counted nodes is at least the chord (straight line). Chords cut every
    corner, so the leg is lengthened to the two-leg path through the corner when the phone's
    headings at both ends describe a turn, or to the phone's Doppler speeds integrated over
    the leg (trapezoid, when every step has speeds and is at most
    ``speed_integration_max_dt_s``), whichever is longer, but never beyond
    ``turn_max_ratio`` times the chord (plus the fixes' noise).
    """
    if len(nodes) < 2:
        return 0.0
    total, a = 0.0, 0
    est, est_ok = 0.0, True
    for j in range(1, len(nodes)):
        na, nj, np_ = nodes[a], nodes[j], nodes[j - 1]
        dt = nj[0] - np_[0]
        if (est_ok and np_[4] == np_[4] and nj[4] == nj[4]
                and dt <= params.speed_integration_max_dt_s):
            est += 0.5 * (np_[4] + nj[4]) * dt
        else:
            est_ok = False
        chord = _dist(na[1], na[2], nj[1], nj[2])
        noise = na[3] + nj[3]  # two 68% radii: steps shorter than this are mostly noise
        if chord >= max(params.travel_min_step_m, noise) or j == len(nodes) - 1:
            if est_ok:
                leg = min(max(est, chord - noise), params.turn_max_ratio * chord + noise)
            else:
                leg = chord
                turn = _turn_path(na, nj) if j == a + 1 and chord > noise else math.nan
                if turn == turn:
                    leg = min(max(turn, chord), params.turn_max_ratio * chord)
            total += leg
            a, est, est_ok = j, 0.0, True
    return total


def travel_between(track: Track, stops: list[Stop], params: SessionParams, *,
                   compiled: bool = True) -> list[Move]:
    """Travel and gap pieces covering the track's time outside stops, in time order. With
    ``compiled``: :func:`processors.kernels.travel_moves`, equal to the Python below."""
    n = len(track)
    if n == 0:
        return []
    if compiled:
        import processors.kernels as kernels

        ints = np.array([(s.first, s.last) for s in stops], dtype=np.int64).reshape(-1, 2)
        fl = np.array([(s.start_t, s.end_t, s.lon, s.lat) for s in stops],
                      dtype=np.float64).reshape(-1, 4).T.copy()
        ints = ints.T.copy()
        cols = kernels.travel_moves(
            track.t, track.lon, track.lat, np.nan_to_num(track.acc, nan=params.travel_min_step_m),
            track.speed, track.heading, ints[0], ints[1], fl[0], fl[1], fl[2], fl[3],
            params.travel_min_step_m, params.travel_max_gap_s,
            params.speed_integration_max_dt_s, params.turn_max_ratio)
        return [Move(*row) for row in zip(*(c.tolist() for c in cols), strict=True)]
    t, lon, lat = track.t.tolist(), track.lon.tolist(), track.lat.tolist()
    acc = np.nan_to_num(track.acc, nan=params.travel_min_step_m).tolist()
    speed, heading = track.speed.tolist(), track.heading.tolist()
    moves: list[Move] = []
    bounds: list[tuple[Stop | None, Stop | None]] = []
    prev: Stop | None = None
    for s in stops:
        bounds.append((prev, s))
        prev = s
    bounds.append((prev, None))
    for a, b in bounds:
        lo = a.last + 1 if a else 0
        hi = b.first if b else n  # fixes lo..hi-1 are travel
        if a is None and b is not None and hi == 0:
            continue
        if b is None and a is not None and lo >= n:
            continue
        # Stop centroids are exact ends, at standstill, with no heading.
        nodes: list[_Node] = []
        if a:
            nodes.append((t[a.last], a.lon, a.lat, 0.0, _STOPPED_MPS, math.nan, False))
        nodes.extend((t[k], lon[k], lat[k], acc[k], speed[k], heading[k], True)
                     for k in range(lo, hi))
        if b:
            nodes.append((t[b.first], b.lon, b.lat, 0.0, _STOPPED_MPS, math.nan, False))
        start = a.end_t if a else t[lo]
        end = b.start_t if b else t[hi - 1]
        moves.extend(_pieces(nodes, start, end, params))
    return [m for m in moves if m.end_t > m.start_t or m.distance_m > 0]


def _pieces(nodes: list[_Node], start: float, end: float,
            params: SessionParams) -> list[Move]:
    """Split a run of nodes at long gaps into travel and gap pieces within [start, end]."""
    out: list[Move] = []
    seg_start, seg_first = start, 0
    for k in range(1, len(nodes)):
        if nodes[k][0] - nodes[k - 1][0] <= params.travel_max_gap_s:
            continue
        gap_a, gap_b = max(nodes[k - 1][0], start), min(nodes[k][0], end)
        part = nodes[seg_first:k]
        out.append(_move(part, seg_start, gap_a, params))
        gap_d = _dist(nodes[k - 1][1], nodes[k - 1][2], nodes[k][1], nodes[k][2])
        out.append(Move(gap_a, gap_b, gap_d, 0, gap=True))
        seg_start, seg_first = gap_b, k
    out.append(_move(nodes[seg_first:], seg_start, end, params))
    return out


def _move(part: list[_Node], start: float, end: float, params: SessionParams) -> Move:
    n_fixes = sum(1 for p in part if p[6])
    return Move(start, max(start, end), _path_distance(part, params), n_fixes)
