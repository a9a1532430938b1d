"""The peer baseline: trackintel's staypoint detection on the same pings.

What a team without geotel would build from an open-source mobility library:

* positionfixes = every ping of the rep-day (local date of the phone's ``ts``), duplicates
  by ``event_id`` removed, nothing else: no accuracy filter, no clock correction (trackintel
  has neither); ``tracked_at`` is the phone's ``ts``;
* staypoints = ``generate_staypoints(method="sliding", dist_threshold=100,
  time_threshold=5, gap_threshold=15)`` (trackintel's defaults but for the 100 m radius,
  which is also ours); triplegs = ``generate_triplegs(gap_threshold=15)``;
* visit = a staypoint whose centroid lies in a customer geofence (the same GeoIndex lookup
  as ours); consecutive staypoints in the same geofence less than ``MERGE_GAP_S`` apart are
  one visit (otherwise every noise split would count twice);
* work day = first to last positionfix of the day;
* field time = work day minus the staypoints in the rep's home or an office geofence
  (clipped to the work day); the peer has no notion of breaks;
* distance = summed haversine length of the triplegs (jitter inside staypoints excluded);
  the naive sum over consecutive positionfixes is reported as information.
"""

from __future__ import annotations

import warnings
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from bench.accuracy.ours import DayFigures
from bench.accuracy.workload import RepUploads
from processors import PlaceLookup

PEER_NAME = "trackintel"
DIST_THRESHOLD_M = 100.0
TIME_THRESHOLD_MIN = 5.0
GAP_THRESHOLD_MIN = 15.0
MERGE_GAP_S = 600.0


def peer_version() -> str:
    import trackintel

    return f"{PEER_NAME} {trackintel.__version__}"


def _haversine_m(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any:
    lon1, lat1, lon2, lat2 = map(np.radians, (lon1, lat1, lon2, lat2))
    a = (np.sin((lat2 - lat1) / 2) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 2 * 6_371_008.8 * np.arcsin(np.sqrt(a))


def _positionfixes(rep: RepUploads) -> pd.DataFrame:
    rows: dict[str, tuple[str, str, float, float]] = {}
    for _, events in rep.uploads:
        for e in events:
            if e["kind"] == "ping":
                rows.setdefault(e["event_id"], (e["ts"], e["rep_id"], e["lon"], e["lat"]))
    df = pd.DataFrame(list(rows.values()), columns=["ts", "rep_id", "lon", "lat"])
    df["tracked_at"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    df["date"] = df["tracked_at"].dt.tz_convert(rep.tz).dt.date.astype(str)
    df["user_id"] = df["rep_id"] + "|" + df["date"]
    return df.sort_values(["user_id", "tracked_at"]).reset_index(drop=True)


def run_peer(rep: RepUploads, places: PlaceLookup) -> dict[str, DayFigures]:
    import trackintel as ti

    df = _positionfixes(rep)
    gdf = gpd.GeoDataFrame(df[["user_id", "tracked_at", "date"]],
                           geometry=gpd.points_from_xy(df["lon"], df["lat"]), crs="EPSG:4326")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trackintel's pandas/geopandas deprecation noise
        pfs = ti.Positionfixes(gdf)
        pfs, sp = pfs.generate_staypoints(method="sliding", distance_metric="haversine",
                                          dist_threshold=DIST_THRESHOLD_M,
                                          time_threshold=TIME_THRESHOLD_MIN,
                                          gap_threshold=GAP_THRESHOLD_MIN)
        pfs, tpls = pfs.generate_triplegs(sp, method="between_staypoints",
                                          gap_threshold=GAP_THRESHOLD_MIN)
    out: dict[str, DayFigures] = {}
    for user, day_pfs in df.groupby("user_id", sort=True):
        date = str(user).split("|", 1)[1]
        t = _epoch_s(day_pfs["tracked_at"])
        start, end = float(t.min()), float(t.max())
        day_sp = sp[sp["user_id"] == user].sort_values("started_at")
        visits, off_s = _staypoint_figures(day_sp, places, start, end)
        day_tpl = tpls[tpls["user_id"] == user]
        dist = float(sum(_line_m(g) for g in day_tpl.geometry))
        lon, lat = day_pfs["lon"].to_numpy(), day_pfs["lat"].to_numpy()
        naive = float(_haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:]).sum())
        out[date] = DayFigures(start=start, end=end, field_s=end - start - off_s,
                               distance_m=dist, visits=visits,
                               detail={"staypoints": len(day_sp), "triplegs": len(day_tpl),
                                       "pfs_distance_m": naive})
    return out


def _epoch_s(times: pd.Series) -> np.ndarray:
    """Epoch seconds of tz-aware times, whatever the datetime unit (pandas 3 varies it)."""
    return ((times - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(float)


def _line_m(line: Any) -> float:
    xy = np.asarray(line.coords)
    if len(xy) < 2:
        return 0.0
    return float(_haversine_m(xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1]).sum())


def _staypoint_figures(sp: gpd.GeoDataFrame, places: PlaceLookup, lo: float, hi: float
                       ) -> tuple[list[tuple[str, float, float]], float]:
    """Customer visits (merged runs) and the home/office time of a day's staypoints."""
    if sp.empty:
        return [], 0.0
    ids, _, kinds = places.nearest(sp.geometry.x.to_numpy(), sp.geometry.y.to_numpy())
    s, e = _epoch_s(sp["started_at"]), _epoch_s(sp["finished_at"])
    visits: list[tuple[str, float, float]] = []
    off_s = 0.0
    for acc, kind, a, b in zip(ids.tolist(), kinds.tolist(), s.tolist(), e.tolist(),
                               strict=True):
        if kind in ("home", "office"):
            off_s += max(0.0, min(b, hi) - max(a, lo))
        elif kind == "customer":
            if visits and visits[-1][0] == acc and a - visits[-1][2] <= MERGE_GAP_S:
                visits[-1] = (acc, visits[-1][1], b)
            else:
                visits.append((acc, a, b))
    return visits, off_s
