"""Compiled kernels of the hot loops of derivation, over the column arrays of a rep-day.

Each kernel is a numba translation of a pure-Python reference that stays where it was
(the reference is the specification; the differential tests in ``tests/processors`` hold
them equal on every rep-day of a simulated workload and on random tracks):

* :func:`speed_chain_drops` -- ``gps_filter._speed_chain_drops_py``;
* :func:`spike_drops` -- ``gps_filter._spike_drops_py``;
* :func:`stop_runs` -- ``stops._clusters`` + ``stops._merge`` + the bounds and medians of
  ``stops.detect_stops``;
* :func:`travel_moves` -- ``stops.travel_between`` (``_pieces``, ``_path_distance``,
  ``_turn_path``);
* :func:`transition_runs` -- the state machine of ``transitions.derive_transitions``.

Equality is bit for bit: the same formulas in the same order of operations (no fast-math,
so no reassociation and no fused multiply-add), Python's ``max``/``min`` tie rules, and the
same libm functions (numba's ``math.sin`` and numpy's ``np.sin`` call the C library on a
CPU without AVX-512; numpy's AVX-512 loops for sin/cos may differ from it in the last bit,
which the differential test would show on such a machine).

The kernels are compiled on first use and cached on disk (``cache=True``) beside this
module, so only the first process after an install pays for the compilation.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from processors.geodesy import EARTH_RADIUS_M

_M_PER_DEG = math.pi * EARTH_RADIUS_M / 180.0
_MIN_TURN_SIN = math.sin(math.radians(30.0))
_BIG = 1.7976931348623157e308  # np.nan_to_num's replacement of +inf

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@njit(cache=True)
def _pymax(a: float, b: float) -> float:
    """Python's max(a, b): the first unless the second is greater."""
    return b if b > a else a


@njit(cache=True)
def _pymin(a: float, b: float) -> float:
    return b if b < a else a


@njit(cache=True)
def _nan0(x: float) -> float:
    """np.nan_to_num(x, nan=0.0) of one value."""
    if x != x:
        return 0.0
    if x == np.inf:
        return _BIG
    if x == -np.inf:
        return -_BIG
    return x


@njit(cache=True)
def _haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """geodesy.haversine_m of one pair (radians of each coordinate, then differences)."""
    lo1, la1 = math.radians(lon1), math.radians(lat1)
    lo2, la2 = math.radians(lon2), math.radians(lat2)
    a = (math.sin((la2 - la1) / 2.0) ** 2
         + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2.0) ** 2)
    a = min(max(a, 0.0), 1.0)
    return 2.0 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


@njit(cache=True)
def _dist(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """stops._dist (radians of the longitude difference)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    s1, s2 = math.sin((p2 - p1) / 2), math.sin(math.radians(lon2 - lon1) / 2)
    a = s1 * s1 + math.cos(p1) * math.cos(p2) * s2 * s2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(_pymin(1.0, a)))


# -- GPS filter -----------------------------------------------------------------------------
@njit(cache=True)
def _consistent(t: FloatArray, lon: FloatArray, lat: FloatArray, acc0: FloatArray,
                i: int, k: int, max_speed: float) -> bool:
    d = _haversine(lon[i], lat[i], lon[i + k], lat[i + k])
    slack = acc0[i] + acc0[i + k]
    dt = max(t[i + k] - t[i], 1.0)
    return max(d - slack, 0.0) / dt <= max_speed


@njit(cache=True)
def speed_chain_drops(t: FloatArray, lon: FloatArray, lat: FloatArray, acc: FloatArray,
                      max_speed: float, jump_max_points: int) -> IntArray:
    """Indices of fixes off the best speed-consistent chain (see the reference)."""
    m = len(t)
    if m < 3:
        return np.zeros(0, dtype=np.int64)
    acc0 = np.empty(m)
    for i in range(m):
        acc0[i] = _nan0(acc[i])
    kmax = min(jump_max_points + 1, m - 1)
    ok = np.zeros((kmax + 1, m), dtype=np.bool_)
    all1 = True
    for k in range(1, kmax + 1):
        for i in range(m - k):
            ok[k, i] = _consistent(t, lon, lat, acc0, i, k, max_speed)
            if k == 1 and not ok[k, i]:
                all1 = False
    if all1:
        return np.zeros(0, dtype=np.int64)
    penalty = (jump_max_points + 1) / 2.0
    score = np.ones(m)
    prev = np.full(m, -1, dtype=np.int64)
    for j in range(1, m):
        best, arg = 1.0, -1
        for k in range(1, kmax + 1):
            i = j - k
            if i < 0:
                break
            if ok[k, i]:
                cand = score[i] + 1.0
            elif k == 1:
                cand = score[i] + 1.0 - penalty
            else:
                continue
            if cand > best:
                best, arg = cand, i
        score[j], prev[j] = best, arg
    end = m - 1
    for j in range(m - 1, -1, -1):  # the latest index of the maximum
        if score[j] > score[end]:
            end = j
    keep = np.zeros(m, dtype=np.bool_)
    j = end
    while j >= 0:
        keep[j] = True
        j = prev[j]
    return np.flatnonzero(~keep).astype(np.int64)


@njit(cache=True)
def spike_drops(t: FloatArray, lon: FloatArray, lat: FloatArray, acc: FloatArray,
                speed: FloatArray, min_excess: float, max_window: float) -> IntArray:
    """Indices of single-fix spikes, found iteratively (see the reference)."""
    alive = np.arange(len(t))
    dropped = np.zeros(len(t), dtype=np.bool_)
    for _ in range(4):
        m = len(alive)
        if m < 3:
            break
        score = np.full(m - 2, -np.inf)
        flag = np.zeros(m - 2, dtype=np.bool_)
        anyflag = False
        for q in range(m - 2):
            a, x, b = alive[q], alive[q + 1], alive[q + 2]
            d_ax = _haversine(lon[a], lat[a], lon[x], lat[x])
            d_xb = _haversine(lon[x], lat[x], lon[b], lat[b])
            d_ab = _haversine(lon[a], lat[a], lon[b], lat[b])
            dt = max(t[b] - t[a], 1.0)
            excess = d_ax + d_xb - d_ab
            acc_a, acc_x, acc_b = _nan0(acc[a]), _nan0(acc[x]), _nan0(acc[b])
            in_window = dt <= max_window
            reversal = (excess > min_excess) and (d_ab < 0.5 * min(d_ax, d_xb))
            reported = np.nan  # np.nanmax of the three speeds
            for s in (speed[a], speed[x], speed[b]):
                if s == s and (reported != reported or s > reported):
                    reported = s
            allowed = 1.5 * reported + 5.0 if np.isfinite(reported) else np.inf
            detour_speed = max(d_ax + d_xb - acc_a - acc_b - 2 * acc_x, 0.0) / dt
            direct_speed = max(d_ab - acc_a - acc_b, 0.0) / dt
            too_fast = ((excess > 0.5 * min_excess) and (detour_speed > allowed)
                        and (direct_speed <= allowed))
            if in_window and (reversal or too_fast):
                flag[q] = True
                score[q] = excess
                anyflag = True
        if not anyflag:
            break
        pick = np.zeros(m, dtype=np.bool_)  # by position in alive
        npick = 0
        for q in range(m - 2):
            left = score[q - 1] if q > 0 else -np.inf
            right = score[q + 1] if q + 1 < m - 2 else -np.inf
            if flag[q] and score[q] >= left and score[q] > right:
                pick[q + 1] = True
                dropped[alive[q + 1]] = True
                npick += 1
        rest = np.empty(m - npick, dtype=alive.dtype)
        w = 0
        for q in range(m):
            if not pick[q]:
                rest[w] = alive[q]
                w += 1
        alive = rest
    return np.flatnonzero(dropped).astype(np.int64)


# -- stops ----------------------------------------------------------------------------------
@njit(cache=True)
def _median(v: FloatArray) -> float:
    """np.median: the middle value, or the mean of the two middle ones."""
    s = np.sort(v)
    n = len(s)
    h = n // 2
    if n % 2 == 1:
        return s[h]
    return (s[h - 1] + s[h]) / 2.0


@njit(cache=True)
def stop_runs(t: FloatArray, lon: FloatArray, lat: FloatArray, radius: float,
              max_gap: float, excursion: float, min_duration: float, merge_gap: float,
              travel_max_gap: float, gap_speed: float,
              ) -> tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray,
                         IntArray]:
    """Stops of a filtered track: (first, last, start_t, end_t, lon, lat, n) per stop."""
    n = len(t)
    members = np.empty(n, dtype=np.int64)  # clusters are disjoint: at most n members
    bounds = np.empty(n + 1, dtype=np.int64)  # cluster c is members[bounds[c]:bounds[c+1]]
    nm = 0
    nc = 0
    bounds[0] = 0
    i = 0
    while i < n:
        start = nm
        members[nm] = i
        nm += 1
        s_lon, s_lat = lon[i], lat[i]
        last_in = i
        j = i + 1
        while j < n:
            if t[j] - t[last_in] > max_gap:
                break
            size = nm - start
            c_lon, c_lat = s_lon / size, s_lat / size
            if _dist(c_lon, c_lat, lon[j], lat[j]) <= radius:
                members[nm] = j
                nm += 1
                s_lon += lon[j]
                s_lat += lat[j]
                last_in = j
                j += 1
                continue
            back = -1
            k = j + 1
            while k < n and t[k] - t[last_in] <= excursion:
                if _dist(c_lon, c_lat, lon[k], lat[k]) <= radius:
                    back = k
                    break
                k += 1
            if back < 0:
                break
            j = back
        if t[last_in] - t[i] >= min_duration:
            nc += 1
            bounds[nc] = nm
            i = last_in + 1
        else:
            nm = start
            i += 1
    # merge neighbours (consecutive runs of the flat member list)
    mb = np.empty(nc + 1, dtype=np.int64)
    nmc = 0
    mb[0] = 0
    for c in range(nc):
        lo, hi = bounds[c], bounds[c + 1]
        if nmc > 0:
            plo, phi = mb[nmc - 1], mb[nmc]
            gap = t[members[lo]] - t[members[phi - 1]]
            pm = members[plo:phi]
            cm = members[lo:hi]
            d = _dist(_median(lon[pm]), _median(lat[pm]), _median(lon[cm]), _median(lat[cm]))
            if gap <= merge_gap and d <= radius:
                mb[nmc] = hi
                continue
        nmc += 1
        mb[nmc] = hi
    first = np.empty(nmc, dtype=np.int64)
    last = np.empty(nmc, dtype=np.int64)
    start_t = np.empty(nmc)
    end_t = np.empty(nmc)
    s_lon_out = np.empty(nmc)
    s_lat_out = np.empty(nmc)
    count = np.empty(nmc, dtype=np.int64)
    for c in range(nmc):
        mm = members[mb[c]:mb[c + 1]]
        s_lon_out[c], s_lat_out[c] = _median(lon[mm]), _median(lat[mm])
    for c in range(nmc):
        mm = members[mb[c]:mb[c + 1]]
        f, la = mm[0], mm[-1]
        st = t[f]
        if f > 0 and t[f] - t[f - 1] <= travel_max_gap:
            st = (t[f - 1] + t[f]) / 2.0
            if c > 0 and members[mb[c] - 1] == f - 1:  # back to back with the previous
                d = _dist(s_lon_out[c - 1], s_lat_out[c - 1], s_lon_out[c], s_lat_out[c])
                st = st + _pymin(t[f] - t[f - 1], d / gap_speed) / 2.0
        en = t[la]
        if la + 1 < n and t[la + 1] - t[la] <= travel_max_gap:
            en = (t[la] + t[la + 1]) / 2.0
            if c + 1 < nmc and members[mb[c + 1]] == la + 1:  # back to back with the next
                d = _dist(s_lon_out[c], s_lat_out[c], s_lon_out[c + 1], s_lat_out[c + 1])
                en = en - _pymin(t[la + 1] - t[la], d / gap_speed) / 2.0
        first[c], last[c], start_t[c], end_t[c] = f, la, st, en
        count[c] = len(mm)
    return first, last, start_t, end_t, s_lon_out, s_lat_out, count


# -- travel ---------------------------------------------------------------------------------
@njit(cache=True)
def _turn_path(alon: float, alat: float, ha: float, blon: float, blat: float,
               hb: float) -> float:
    if ha != ha or hb != hb:
        return math.nan
    kx = math.cos(math.radians(alat)) * _M_PER_DEG
    dx, dy = (blon - alon) * kx, (blat - alat) * _M_PER_DEG
    ax, ay = math.sin(math.radians(ha)), math.cos(math.radians(ha))
    bx, by = math.sin(math.radians(hb)), math.cos(math.radians(hb))
    det = ax * by - ay * bx
    if abs(det) < _MIN_TURN_SIN:
        return math.nan
    s = (dx * by - dy * bx) / det
    u = (ax * dy - ay * dx) / det
    return s + u if s > 0 and u > 0 else math.nan


@njit(cache=True)
def _path_distance(nt: FloatArray, nlon: FloatArray, nlat: FloatArray, nacc: FloatArray,
                   nspeed: FloatArray, nhead: FloatArray, lo: int, hi: int,
                   min_step: float, max_dt: float, ratio: float) -> float:
    """stops._path_distance over the nodes lo..hi-1."""
    if hi - lo < 2:
        return 0.0
    total, a = 0.0, lo
    est, est_ok = 0.0, True
    for j in range(lo + 1, hi):
        p = j - 1
        dt = nt[j] - nt[p]
        if est_ok and nspeed[p] == nspeed[p] and nspeed[j] == nspeed[j] and dt <= max_dt:
            est += 0.5 * (nspeed[p] + nspeed[j]) * dt
        else:
            est_ok = False
        chord = _dist(nlon[a], nlat[a], nlon[j], nlat[j])
        noise = nacc[a] + nacc[j]
        if chord >= _pymax(min_step, noise) or j == hi - 1:
            if est_ok:
                leg = _pymin(_pymax(est, chord - noise), ratio * chord + noise)
            else:
                leg = chord
                turn = math.nan
                if j == a + 1 and chord > noise:
                    turn = _turn_path(nlon[a], nlat[a], nhead[a], nlon[j], nlat[j], nhead[j])
                if turn == turn:
                    leg = _pymin(_pymax(turn, chord), ratio * chord)
            total += leg
            a, est, est_ok = j, 0.0, True
    return total


@njit(cache=True)
def travel_moves(t: FloatArray, lon: FloatArray, lat: FloatArray, acc: FloatArray,
                 speed: FloatArray, heading: FloatArray, first: IntArray, last: IntArray,
                 start_t: FloatArray, end_t: FloatArray, s_lon: FloatArray, s_lat: FloatArray,
                 min_step: float, max_gap: float, max_dt: float, ratio: float
                 ) -> tuple[FloatArray, FloatArray, FloatArray, IntArray, npt.NDArray[np.bool_]]:
    """Travel and gap pieces between stops: (start, end, distance, fixes, is gap)."""
    n = len(t)
    ns = len(first)
    cap = 2 * n + 2 * ns + 4
    m_start = np.empty(cap)
    m_end = np.empty(cap)
    m_dist = np.empty(cap)
    m_n = np.empty(cap, dtype=np.int64)
    m_gap = np.empty(cap, dtype=np.bool_)
    nmv = 0
    if n == 0:
        return m_start[:0], m_end[:0], m_dist[:0], m_n[:0], m_gap[:0]
    nt = np.empty(n + 2)
    nlon = np.empty(n + 2)
    nlat = np.empty(n + 2)
    nacc = np.empty(n + 2)
    nspeed = np.empty(n + 2)
    nhead = np.empty(n + 2)
    nfix = np.empty(n + 2, dtype=np.bool_)
    for q in range(ns + 1):
        has_a, has_b = q > 0, q < ns
        lo = last[q - 1] + 1 if has_a else 0
        hi = first[q] if has_b else n
        if not has_a and has_b and hi == 0:
            continue
        if not has_b and has_a and lo >= n:
            continue
        k = 0
        if has_a:  # stop centroids: exact ends, at standstill, without heading
            a = q - 1
            nt[k], nlon[k], nlat[k], nacc[k] = t[last[a]], s_lon[a], s_lat[a], 0.0
            nspeed[k], nhead[k], nfix[k] = 0.0, math.nan, False
            k += 1
        for r in range(lo, hi):
            nt[k], nlon[k], nlat[k], nacc[k] = t[r], lon[r], lat[r], acc[r]
            nspeed[k], nhead[k], nfix[k] = speed[r], heading[r], True
            k += 1
        if has_b:
            nt[k], nlon[k], nlat[k], nacc[k] = t[first[q]], s_lon[q], s_lat[q], 0.0
            nspeed[k], nhead[k], nfix[k] = 0.0, math.nan, False
            k += 1
        start = end_t[q - 1] if has_a else t[lo]
        end = start_t[q] if has_b else t[hi - 1]
        # _pieces: split at long gaps
        seg_start, seg_first = start, 0
        for r in range(1, k):
            if nt[r] - nt[r - 1] <= max_gap:
                continue
            gap_a, gap_b = _pymax(nt[r - 1], start), _pymin(nt[r], end)
            fixes = 0
            for u in range(seg_first, r):
                fixes += nfix[u]
            m_start[nmv], m_end[nmv] = seg_start, _pymax(seg_start, gap_a)
            m_dist[nmv] = _path_distance(nt, nlon, nlat, nacc, nspeed, nhead, seg_first, r,
                                         min_step, max_dt, ratio)
            m_n[nmv], m_gap[nmv] = fixes, False
            nmv += 1
            m_start[nmv], m_end[nmv] = gap_a, gap_b
            m_dist[nmv] = _dist(nlon[r - 1], nlat[r - 1], nlon[r], nlat[r])
            m_n[nmv], m_gap[nmv] = 0, True
            nmv += 1
            seg_start, seg_first = gap_b, r
        fixes = 0
        for u in range(seg_first, k):
            fixes += nfix[u]
        m_start[nmv], m_end[nmv] = seg_start, _pymax(seg_start, end)
        m_dist[nmv] = _path_distance(nt, nlon, nlat, nacc, nspeed, nhead, seg_first, k,
                                     min_step, max_dt, ratio)
        m_n[nmv], m_gap[nmv] = fixes, False
        nmv += 1
    keep = np.zeros(nmv, dtype=np.bool_)
    for q in range(nmv):
        keep[q] = m_end[q] > m_start[q] or m_dist[q] > 0
    return (m_start[:nmv][keep], m_end[:nmv][keep], m_dist[:nmv][keep], m_n[:nmv][keep],
            m_gap[:nmv][keep])


# -- transitions ----------------------------------------------------------------------------
@njit(cache=True)
def transition_runs(codes: IntArray, ts_us: IntArray, min_pings: int,
                    min_dwell_s: float) -> tuple[IntArray, IntArray, IntArray]:
    """One state machine of derive_transitions over value codes (-1: none) of the usable
    fixes: (fix index of the first fix of the new run, 0 exit / 1 enter, value code)."""
    n = len(codes)
    at = np.empty(2 * n, dtype=np.int64)
    kind = np.empty(2 * n, dtype=np.int64)
    subject = np.empty(2 * n, dtype=np.int64)
    out = 0
    confirmed = -1
    run_value = -1
    run_first = -1
    run_len = 0
    for i in range(n):
        v = codes[i]
        if v == confirmed:
            run_first, run_len = -1, 0
            continue
        if run_first < 0 or v != run_value:
            run_value, run_first, run_len = v, i, 0
        run_len += 1
        # timedelta.total_seconds(): exact microseconds / 10**6, correctly rounded
        if run_len >= min_pings and (ts_us[i] - ts_us[run_first]) / 1e6 >= min_dwell_s:
            if confirmed != -1:
                at[out], kind[out], subject[out] = run_first, 0, confirmed
                out += 1
            if v != -1:
                at[out], kind[out], subject[out] = run_first, 1, v
                out += 1
            confirmed, run_first, run_len = v, -1, 0
    return at[:out], kind[:out], subject[:out]


def warm_up() -> None:
    """Compile (or load from the disk cache) every kernel for the argument types derivation
    uses, on a tiny track: a process calls it once at start so that its first derivation
    does not pay for it."""
    t = np.array([0.0, 60.0, 120.0, 180.0, 240.0])
    lon = np.array([13.4, 13.4, 13.41, 13.4, 13.4])
    lat = np.full(5, 52.5)
    acc = np.array([10.0, np.nan, 10.0, 10.0, 10.0])
    speed = np.array([0.0, np.nan, 1.0, 0.0, 0.0])
    speed_chain_drops(t, lon, lat, acc, 70.0, 5)
    spike_drops(t, lon, lat, acc, speed, 250.0, 600.0)
    first, last, start_t, end_t, s_lon, s_lat, _ = stop_runs(
        t, lon, lat, 100.0, 14_400.0, 180.0, 100.0, 900.0, 900.0, 10.0)
    travel_moves(t, lon, lat, np.nan_to_num(acc, nan=20.0), speed, speed, first, last,
                 start_t, end_t, s_lon, s_lat, 20.0, 900.0, 180.0, 1.5)
    transition_runs(np.array([0, 0, 1, 1, -1], dtype=np.int64),
                    np.arange(5, dtype=np.int64) * 60_000_000, 2, 60.0)
