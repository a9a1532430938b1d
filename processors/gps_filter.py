"""Clean one rep's GPS fixes: drop what a real phone gets wrong, and say why.

Rules, in order (a fix gets the first reason that applies):

* ``invalid_position`` -- (0, 0) or non-finite coordinates (a phone without a fix);
* ``mock_location``    -- the OS flagged a mock provider: never used for tracks or visits;
* ``in_future``        -- ``ts`` more than ``max_future_s`` after the event's ``received_at``;
* ``bad_accuracy``     -- reported accuracy worse than ``max_accuracy_m`` (cell/Wi-Fi fixes);
* ``duplicate``        -- same ``event_id``, or the same instant as a better fix;
* ``speed_jump``       -- short runs of fixes that need more than ``max_speed_mps`` (beyond
  both accuracy radii) to be reached from the track around them. The kept track is the
  chain that maximises kept fixes minus a penalty per inconsistent step, so one outlier (or
  up to ``jump_max_points`` in a row) is dropped, while a long consistent trip never is;
* ``spike``            -- a single fix off the path at plausible speed: it turns back sharply
  (out-and-back detour over ``spike_min_excess_m``), or its detour needs a speed far above
  what the phone's own Doppler speeds and the direct path say.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from processors.config import SessionParams
from processors.geodesy import FloatArray, haversine_m
from schemas.events import Ping


@dataclass(frozen=True)
class Track:
    """Parallel arrays of fixes sorted by time. ``t`` is epoch seconds (clock-corrected);
    ``acc``, ``speed`` and ``heading`` (degrees from north) are nan when unknown;
    ``territory`` is 1 inside the rep's own territory, 0 outside, -1 unknown."""

    t: FloatArray
    lon: FloatArray
    lat: FloatArray
    acc: FloatArray
    speed: FloatArray
    heading: FloatArray
    territory: npt.NDArray[np.int8]
    event_id: npt.NDArray[np.object_]

    def __len__(self) -> int:
        return len(self.t)

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Track:
        return Track(self.t[idx], self.lon[idx], self.lat[idx], self.acc[idx],
                     self.speed[idx], self.heading[idx], self.territory[idx],
                     self.event_id[idx])


@dataclass(frozen=True)
class FilterResult:
    kept: Track
    rejected: tuple[tuple[str, str], ...]  # (event_id, reason), in time order

    def dropped_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(reason for _, reason in self.rejected).items()))


def territory_flag(ping: Ping) -> bool | None:
    """The enrichment's ``in_assigned_territory`` of a ping, wherever it is carried."""
    # Enriched events carry it in ``geo`` (the common case: look there first; a missing
    # attribute on a pydantic model is the slow path).
    geo = getattr(ping, "geo", None)
    flag = getattr(geo, "in_assigned_territory", None) if geo is not None else None
    if flag is None:
        flag = getattr(ping, "in_assigned_territory", None)
    return None if flag is None else bool(flag)


def _sorted_unique(pings: Sequence[Ping]) -> tuple[list[Ping], list[str]]:
    ordered = sorted(pings, key=lambda p: (p.ts, p.event_id.int))  # == str order
    seen: set[uuid.UUID] = set()
    out: list[Ping] = []
    dups: list[str] = []
    for p in ordered:
        if p.event_id in seen:
            dups.append(str(p.event_id))
        else:
            seen.add(p.event_id)
            out.append(p)
    return out, dups


def filter_pings(
    pings: Sequence[Ping],
    params: SessionParams,
    clock_offsets_s: Mapping[str, float] | None = None,
    *,
    compiled: bool = True,
) -> FilterResult:
    """Filter one rep's pings (any order, duplicates allowed) into a clean track.

    ``clock_offsets_s`` maps device_id to seconds added to that device's ``ts``. With
    ``compiled`` the speed-jump and spike tests run as compiled kernels
    (:mod:`processors.kernels`), equal to the Python reference here.
    """
    offsets = clock_offsets_s or {}
    uniq, dup_ids = _sorted_unique(pings)
    ts = np.array([p.ts.timestamp() for p in uniq], dtype=np.float64)
    t = ts + np.array([offsets.get(p.device_id, 0.0) for p in uniq], dtype=np.float64)
    recv = np.array([p.received_at.timestamp() if p.received_at else np.nan for p in uniq])
    lon = np.array([p.lon for p in uniq], dtype=np.float64)
    lat = np.array([p.lat for p in uniq], dtype=np.float64)
    acc = np.array([np.nan if p.accuracy_m is None else p.accuracy_m for p in uniq])
    speed = np.array([np.nan if p.speed_mps is None else p.speed_mps for p in uniq])
    heading = np.array([np.nan if p.heading_deg is None else p.heading_deg for p in uniq])
    mock = np.array([p.is_mock for p in uniq], dtype=bool)
    terr_flags = [territory_flag(p) for p in uniq]
    terr = np.array([-1 if f is None else int(f) for f in terr_flags], dtype=np.int8)
    eid = np.array([str(p.event_id) for p in uniq], dtype=object)
    result, _ = filter_columns(ts, t, recv, lon, lat, acc, speed, heading, mock, terr, eid,
                               params, compiled=compiled, dup_ids=dup_ids)
    return result


def filter_columns(
    ts: FloatArray, t: FloatArray, recv: FloatArray, lon: FloatArray, lat: FloatArray,
    acc: FloatArray, speed: FloatArray, heading: FloatArray, mock: npt.NDArray[np.bool_],
    terr: npt.NDArray[np.int8], eid: npt.NDArray[np.object_], params: SessionParams, *,
    compiled: bool = True, dup_ids: Sequence[str] = (),
) -> tuple[FilterResult, npt.NDArray[np.bool_]]:
    """:func:`filter_pings` over columns of unique fixes already sorted by
    ``(ts, event_id)`` (``ts`` raw epoch seconds, ``t`` clock-corrected, ``recv`` the
    received_at seconds or nan; see :class:`Track` for the rest): the result and the mask
    of the kept fixes. ``dup_ids`` are event ids already found duplicate."""
    n = len(ts)
    track = Track(t.reshape(n), lon.reshape(n), lat.reshape(n), acc.reshape(n),
                  speed.reshape(n), heading.reshape(n), terr, eid)

    reason = np.full(n, "", dtype=object)  # "" = kept so far

    def mark(mask: npt.NDArray[np.bool_], why: str) -> None:
        reason[mask & (reason == "")] = why

    mark(~np.isfinite(lon) | ~np.isfinite(lat) | ((np.abs(lon) < 1e-6) & (np.abs(lat) < 1e-6)),
         "invalid_position")
    mark(mock, "mock_location")
    with np.errstate(invalid="ignore"):
        mark(ts - recv > params.max_future_s, "in_future")
        mark(acc > params.max_accuracy_m, "bad_accuracy")
    _mark_same_instant(track, reason)

    chain, spikes = ((_speed_chain_drops_compiled, _spike_drops_compiled) if compiled
                     else (_speed_chain_drops, _spike_drops))
    alive = np.flatnonzero(reason == "")
    drop = chain(track.take(alive), params)
    reason[alive[drop]] = "speed_jump"
    alive = np.flatnonzero(reason == "")
    drop = spikes(track.take(alive), params)
    reason[alive[drop]] = "spike"

    kept_mask = np.asarray(reason == "", dtype=bool)
    rejected = [(str(eid[i]), str(reason[i])) for i in np.flatnonzero(~kept_mask)]
    rejected.extend((e, "duplicate") for e in dup_ids)
    return FilterResult(track.take(kept_mask), tuple(rejected)), kept_mask


def _mark_same_instant(track: Track, reason: npt.NDArray[np.object_]) -> None:
    """Several fixes at one instant: keep the most accurate (then smallest event id)."""
    alive = np.flatnonzero(reason == "")
    if len(alive) < 2:
        return
    t = track.t[alive]
    same = np.flatnonzero(np.diff(t) == 0.0)
    if len(same) == 0:
        return
    groups: dict[float, list[int]] = {}
    for k in same:
        groups.setdefault(float(t[k]), []).extend([int(alive[k]), int(alive[k + 1])])
    for members in groups.values():
        uniq = sorted(set(members), key=lambda i: (np.nan_to_num(track.acc[i], nan=1e9),
                                                   track.event_id[i]))
        for i in uniq[1:]:
            reason[i] = "duplicate"


def _consistent(track: Track, k: int, params: SessionParams) -> npt.NDArray[np.bool_]:
    """For each i, can fix i+k be reached from fix i within max speed (beyond accuracy)?"""
    d = haversine_m(track.lon[:-k], track.lat[:-k], track.lon[k:], track.lat[k:])
    acc = np.nan_to_num(track.acc, nan=0.0)
    slack = acc[:-k] + acc[k:]
    dt = np.maximum(track.t[k:] - track.t[:-k], 1.0)
    return np.asarray(np.maximum(d - slack, 0.0) / dt <= params.max_speed_mps)


def _speed_chain_drops(track: Track, params: SessionParams) -> npt.NDArray[np.intp]:
    """Indices (into ``track``) of fixes off the best speed-consistent chain."""
    m = len(track)
    if m < 3:
        return np.zeros(0, dtype=np.intp)
    max_k = params.jump_max_points + 1
    ok = {k: _consistent(track, k, params) for k in range(1, min(max_k, m - 1) + 1)}
    if bool(ok[1].all()):
        return np.zeros(0, dtype=np.intp)
    # A break (inconsistent step) costs `penalty` kept fixes: a run of up to jump_max_points
    # outliers (two breaks) is cheaper to drop; a longer run is kept as real.
    penalty = (params.jump_max_points + 1) / 2.0
    score = np.ones(m)
    prev = np.full(m, -1, dtype=np.intp)
    for j in range(1, m):
        best, arg = 1.0, -1
        for k, okk in ok.items():
            i = j - k
            if i < 0:
                break
            if okk[i]:
                cand = score[i] + 1.0
            elif k == 1:
                cand = score[i] + 1.0 - penalty
            else:
                continue
            if cand > best:
                best, arg = cand, i
        score[j], prev[j] = best, arg
    end = int(m - 1 - np.argmax(score[::-1]))  # ties: the latest end keeps the most recent
    keep = np.zeros(m, dtype=bool)
    j = end
    while j >= 0:
        keep[j] = True
        j = int(prev[j])
    return np.flatnonzero(~keep)


def _speed_chain_drops_compiled(track: Track, params: SessionParams) -> npt.NDArray[np.intp]:
    # Imported on first use: numba takes a second to import, and most processes (ingest,
    # the CLI) never derive.
    import processors.kernels as kernels

    return kernels.speed_chain_drops(track.t, track.lon, track.lat, track.acc,
                                     params.max_speed_mps, params.jump_max_points)


def _spike_drops_compiled(track: Track, params: SessionParams) -> npt.NDArray[np.intp]:
    import processors.kernels as kernels

    return kernels.spike_drops(track.t, track.lon, track.lat, track.acc, track.speed,
                               params.spike_min_excess_m, params.spike_max_window_s)


def _spike_drops(track: Track, params: SessionParams) -> npt.NDArray[np.intp]:
    """Indices of single-fix spikes (see module doc), found iteratively."""
    alive = np.arange(len(track))
    dropped: list[int] = []
    for _ in range(4):
        if len(alive) < 3:
            break
        s = track.take(alive)
        a, x, b = slice(0, -2), slice(1, -1), slice(2, None)
        d_ax = haversine_m(s.lon[a], s.lat[a], s.lon[x], s.lat[x])
        d_xb = haversine_m(s.lon[x], s.lat[x], s.lon[b], s.lat[b])
        d_ab = haversine_m(s.lon[a], s.lat[a], s.lon[b], s.lat[b])
        dt = np.maximum(s.t[b] - s.t[a], 1.0)
        excess = d_ax + d_xb - d_ab
        acc = np.nan_to_num(s.acc, nan=0.0)
        in_window = dt <= params.spike_max_window_s
        reversal = (excess > params.spike_min_excess_m) & (
            d_ab < 0.5 * np.minimum(d_ax, d_xb))
        # fmax ignores NaN like nanmax, without nanmax's "All-NaN slice" RuntimeWarning
        # on fixes without a speed (phones that report none, cell fixes): NaN stays NaN.
        reported = np.fmax(np.fmax(s.speed[a], s.speed[x]), s.speed[b])
        allowed = np.where(np.isfinite(reported), 1.5 * reported + 5.0, np.inf)
        detour_speed = np.maximum(d_ax + d_xb - acc[a] - acc[b] - 2 * acc[x], 0.0) / dt
        direct_speed = np.maximum(d_ab - acc[a] - acc[b], 0.0) / dt
        too_fast = ((excess > 0.5 * params.spike_min_excess_m) & (detour_speed > allowed)
                    & (direct_speed <= allowed))
        flag = in_window & (reversal | too_fast)
        if not flag.any():
            break
        # Of adjacent candidates drop only the worst, then look again.
        score = np.where(flag, excess, -np.inf)
        left = np.concatenate([[-np.inf], score[:-1]])
        right = np.concatenate([score[1:], [-np.inf]])
        pick = flag & (score >= left) & (score > right)
        idx = np.flatnonzero(pick) + 1
        dropped.extend(int(i) for i in alive[idx])
        alive = np.delete(alive, idx)
    return np.array(sorted(dropped), dtype=np.intp)
