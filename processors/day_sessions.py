"""Where a rep-day's data is work: off-duty stays and long gaps cut it into sessions.

A phone that records around the clock (tracker apps, location histories) also records the
evening and night at home, a drive to the station at 03:00, a day without data. Those must
not set the bounds of an inferred work day, nor count as field time:

* a *stay* is a run of consecutive stops at the same known place (or all at none) within
  ``day_idle_radius_m`` of the first of them, with no kept fix farther away in between (one
  stay at home that indoor noise or sparse pings split into several stops); at the edge of
  the data it runs to the first (last) fix when every fix before (after) it lies within
  that radius;
* an *off-duty stay* lasts at least ``day_idle_s``, is at no customer or office, and is at
  the rep's home or reaches into the night (local ``night_start_h`` to ``night_end_h``):
  where the rep spends the night. A long stay at an unknown place in the day (an office
  the place set does not know) is not off duty;
* a *long gap* is a stretch without data of at least ``day_gap_s`` outside any stop;
* the activity between off-duty stays and long gaps forms *sessions*. A session is work when
  it overlaps a stop at a customer or office or holds a work check-in, or when it is not
  entirely at night; a session at night without either (a night trip) is not work.

The inferred work day runs from the first work session's start to the last one's end; the
off-duty stays and long gaps between work sessions are off duty (counted as break).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from processors.config import SessionParams
from processors.geodesy import haversine_m
from processors.gps_filter import Track
from processors.places import WORK_PLACE_KINDS
from processors.stops import Move, Stop
from processors.visits import Mark, StopPlace

WORK_ACTIONS = frozenset({"workday_start", "workday_end", "visit_start", "visit_end",
                          "break_start", "break_end"})


@dataclass(frozen=True, slots=True)
class OffDuty:
    start_t: float
    end_t: float
    kind: str  # "stay" or "gap"


@dataclass(frozen=True, slots=True)
class Session:
    start_t: float
    end_t: float
    work: bool  # a stop at a customer/office or a work check-in in it
    night: bool  # entirely within the night window

    @property
    def counts(self) -> bool:
        return self.work or not self.night


def _stays(track: Track, stops: Sequence[Stop], stop_places: Sequence[StopPlace],
           radius: float) -> list[tuple[int, int]]:
    """(first, last) stop index of each stay: consecutive stops at one place (the same
    known place, or no known place and within ``radius``)."""
    out: list[tuple[int, int]] = []
    k, n = 0, len(stops)
    while k < n:
        anchor, m = stops[k], k
        while m + 1 < n:
            nxt = stops[m + 1]
            if stop_places[m + 1].place_id != stop_places[k].place_id:
                break  # home and the roadside lunch 200 m away are two stays
            if float(haversine_m(anchor.lon, anchor.lat, nxt.lon, nxt.lat)) > radius:
                break
            between = slice(stops[m].last + 1, nxt.first)
            if np.any(haversine_m(track.lon[between], track.lat[between],
                                  anchor.lon, anchor.lat) > radius):
                break
            m += 1
        out.append((k, m))
        k = m + 1
    return out


def _hour(t: float, day_lo: float) -> float:
    # Local hour as seconds since local midnight: off by the DST shift after it on the two
    # DST days (at night, where it hardly matters).
    return (t - day_lo) / 3600.0


def off_duty_blocks(track: Track, stops: Sequence[Stop], stop_places: Sequence[StopPlace],
                    moves: Sequence[Move], day_lo: float, params: SessionParams,
                    ) -> list[OffDuty]:
    """Off-duty stays and long gaps, in time order (see module doc)."""
    out: list[OffDuty] = []
    n = len(track)
    radius = params.day_idle_radius_m
    for k, m in _stays(track, stops, stop_places, radius):
        if any(stop_places[j].kind in WORK_PLACE_KINDS for j in range(k, m + 1)):
            continue
        a, b = stops[k], stops[m]
        s, e = a.start_t, b.end_t
        if n and not np.any(haversine_m(track.lon[:a.first], track.lat[:a.first],
                                        a.lon, a.lat) > radius):
            s = min(s, float(track.t[0]))
        if n and not np.any(haversine_m(track.lon[b.last + 1:], track.lat[b.last + 1:],
                                        a.lon, a.lat) > radius):
            e = max(e, float(track.t[-1]))
        if e - s < params.day_idle_s:
            continue
        at_home = any(stop_places[j].kind == "home" for j in range(k, m + 1))
        nightly = (_hour(s, day_lo) < params.night_end_h
                   or _hour(e, day_lo) > params.night_start_h)
        if at_home or nightly:
            out.append(OffDuty(s, e, "stay"))
    out.extend(OffDuty(mv.start_t, mv.end_t, "gap") for mv in moves
               if mv.gap and mv.duration_s >= params.day_gap_s)
    out.sort(key=lambda o: (o.start_t, o.end_t))
    return out


def sessions(activity_t: Sequence[float], blocks: Sequence[OffDuty], stops: Sequence[Stop],
             stop_places: Sequence[StopPlace], marks: Sequence[Mark], day_lo: float,
             params: SessionParams) -> list[Session]:
    """The activity between off-duty blocks, each with its evidence of work."""
    acts = sorted(activity_t)
    if not acts:
        return []
    cuts: list[tuple[float, float]] = []
    lo, cut = acts[0], False  # cut: lo is the end of a block
    for b in blocks:
        if b.end_t < lo or (b.end_t == lo and cut):
            continue
        if b.start_t > lo:
            cuts.append((lo, b.start_t))
        lo, cut = max(lo, b.end_t), True
    if acts[-1] > lo or (acts[-1] == lo and not cut):
        cuts.append((lo, acts[-1]))
    arr = np.asarray(acts)
    work_t = [mk.t for mk in marks if mk.action in WORK_ACTIONS]
    out: list[Session] = []
    for s, e in cuts:
        if not np.any((arr >= s) & (arr <= e)):
            continue  # nothing recorded in it (the edge of a block)
        work = any(s <= t <= e for t in work_t) or any(
            sp.kind in WORK_PLACE_KINDS and st.start_t <= e and s <= st.end_t
            for st, sp in zip(stops, stop_places, strict=True))
        night = (_hour(e, day_lo) < params.night_end_h
                 or _hour(s, day_lo) >= params.night_start_h)
        out.append(Session(s, e, work, night))
    return out
