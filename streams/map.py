"""Team map: ``GET /map`` (the page), ``GET /v1/map.json`` (its data) and
``GET /v1/map/rep.json`` (one rep's day); docs/map.md.

The data is read from ClickHouse, not from this worker's session state: a worker holds only
the reps of its own partitions, the store holds everyone. Per rep: the latest usable fix
(position, territory, account geofence), the latest check-ins, the ongoing visit segment and
the rep-day's figures; from these :func:`rep_status` decides ``visiting``, ``travelling``,
``stopped`` or ``off_duty``. Territories come from the GeoIndex in use, as GeoJSON, with the
number of reps in each right now.

``at`` (ISO 8601) shows the map as of another time, e.g. to replay yesterday; the default is
now. The page is drawn with Leaflet, vendored in ``streams/static/vendor/leaflet`` and
served from here (no CDN; map tiles only when ``map.tile_url`` is set), and refreshes itself
every few seconds. Paths, account coverage and the rep's day are in
:mod:`streams.map_layers`. Responses are cached for ``cache_s`` so many open pages cost one
set of queries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import shapely
from shapely.geometry import mapping

import geo.timezones as timezones
import streams.map_layers as map_layers
from processors.alert_rules import AlertParams
from streams.auth import bearer_ok

STATUSES = ("visiting", "travelling", "stopped", "off_duty")


@dataclass(frozen=True)
class MapParams:
    window_s: float = 36 * 3600.0  # how far back a rep's data is looked for (last position)
    stale_s: float = 1200.0  # no usable fix for this long: off duty
    motion_window_s: float = 180.0  # fixes this close to the last one measure movement
    moving_m: float = 150.0  # moved this far within the motion window: travelling
    moving_speed_mps: float = 4.0  # or the last fix reports at least this speed
    open_visit_max_s: float = 3 * 3600.0  # a visit_start without its end counts this long
    visit_slack_s: float = 180.0  # a visit segment ending this close to the last fix is ongoing
    cache_s: float = 2.0
    simplify_deg: float = 0.0001  # territory outlines for drawing (about 10 m)


# -- the status of one rep (pure) ---------------------------------------------------------
@dataclass(frozen=True)
class RepFacts:
    """What the store says about one rep at time ``at`` (times are aware UTC)."""

    fix_ts: dt.datetime | None = None
    speed_mps: float | None = None
    moved_m: float = 0.0
    day_action: str | None = None  # latest of workday_start / workday_end
    day_action_ts: dt.datetime | None = None
    visit_action: str | None = None  # latest of visit_start / visit_end
    visit_action_ts: dt.datetime | None = None
    break_action: str | None = None  # latest of break_start / break_end
    visit_segment_end: dt.datetime | None = None  # end of a visit segment overlapping `at`
    workday_start: dt.datetime | None = None  # of the local day of `at` (rep_daily)
    workday_end: dt.datetime | None = None
    workday_end_inferred: bool = True


def rep_status(facts: RepFacts, at: dt.datetime, p: MapParams = MapParams()) -> str:
    """``visiting``, ``travelling``, ``stopped`` or ``off_duty`` at ``at``.

    Off duty: no usable fix for ``stale_s``, or the day was checked out (``workday_end``
    check-in, or a checked-in end in rep_daily), or before the day's start. Otherwise
    travelling when the fixes show movement (``moving_m`` within ``motion_window_s``, or a
    fast last fix), visiting during an open visit check-in or a visit segment that reaches
    the last fix, stopped else (breaks included).

    >>> t = dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC)
    >>> rep_status(RepFacts(fix_ts=t - dt.timedelta(minutes=1), moved_m=900.0), t)
    'travelling'
    >>> rep_status(RepFacts(fix_ts=t - dt.timedelta(hours=2)), t)
    'off_duty'
    """
    if facts.fix_ts is None or (at - facts.fix_ts).total_seconds() > p.stale_s:
        return "off_duty"
    if facts.day_action == "workday_end":
        return "off_duty"
    if facts.workday_start is not None and at < facts.workday_start:
        return "off_duty"
    if (facts.workday_end is not None and not facts.workday_end_inferred
            and at >= facts.workday_end):
        return "off_duty"
    moving = facts.moved_m >= p.moving_m or (facts.speed_mps or 0.0) >= p.moving_speed_mps
    if (facts.visit_action == "visit_start" and facts.visit_action_ts is not None
            and (at - facts.visit_action_ts).total_seconds() <= p.open_visit_max_s
            and not (moving and facts.fix_ts > facts.visit_action_ts
                     + dt.timedelta(seconds=p.motion_window_s))):
        # Checked in at a customer: moving soon after is the arrival still in the motion
        # window; moving long after means the rep left without checking out.
        return "visiting"
    if moving:
        return "travelling"
    if (facts.visit_segment_end is not None
            and (facts.fix_ts - facts.visit_segment_end).total_seconds() <= p.visit_slack_s):
        return "visiting"
    return "stopped"


def _haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(a)))


# -- queries ------------------------------------------------------------------------------
# max/argMax ignore duplicates of an event, so these read the tables without FINAL.
FIXES_SQL = """
SELECT rep_id, max(ts) AS last_ts,
       argMax(lon, ts) AS last_lon, argMax(lat, ts) AS last_lat,
       argMax(speed_mps, ts) AS last_speed, argMax(territory_id, ts) AS last_territory,
       argMax(in_assigned_territory, ts) AS last_in_assigned,
       argMax(geo_account_id, ts) AS last_account,
       argMax(accuracy_m, ts) AS last_accuracy,
       groupArrayIf((toUnixTimestamp64Milli(ts), lon, lat),
                    ts > {at} - INTERVAL {motion} SECOND) AS recent
FROM events_all
WHERE kind = 'ping' AND NOT is_mock AND lat IS NOT NULL AND lon IS NOT NULL
  AND ifNull(accuracy_m, 0) <= 100
  AND ts > {at} - INTERVAL {window} SECOND AND ts <= {at}
GROUP BY rep_id
"""

CHECKINS_SQL = """
SELECT rep_id,
       argMaxIf(action, ts, action IN ('workday_start', 'workday_end')) AS day_action,
       maxIf(ts, action IN ('workday_start', 'workday_end')) AS day_ts,
       argMaxIf(action, ts, action IN ('visit_start', 'visit_end')) AS visit_action,
       maxIf(ts, action IN ('visit_start', 'visit_end')) AS visit_ts,
       argMaxIf(action, ts, action IN ('break_start', 'break_end')) AS break_action,
       countIf(action IN ('workday_start', 'workday_end')) AS n_day,
       countIf(action IN ('visit_start', 'visit_end')) AS n_visit
FROM events_all
WHERE kind = 'check_in' AND ts > {at} - INTERVAL {window} SECOND AND ts <= {at}
GROUP BY rep_id
"""

DAYS_SQL = """
SELECT rep_id, local_date, tz, field_s, visits, verified_visits, distance_m,
       workday_start, workday_end, workday_end_inferred
FROM rep_daily
WHERE local_date >= toDate({at}) - 1 AND local_date <= toDate({at}) + 1
"""

VISIT_SEGMENTS_SQL = """
SELECT rep_id, max(end) AS seg_end, argMax(place_id, end) AS seg_account
FROM segments
WHERE kind = 'visit' AND local_date >= toDate({at}) - 1 AND local_date <= toDate({at}) + 1
  AND start <= {at} AND end >= {at} - INTERVAL {window} SECOND
GROUP BY rep_id
"""


def _sql_time(t: dt.datetime) -> str:
    return "toDateTime64('" + t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] \
        + "', 3, 'UTC')"


def _aware(v: Any) -> dt.datetime | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=dt.UTC)
    return None


def query_store(reader: Any, at: dt.datetime, p: MapParams
                ) -> dict[str, list[dict[str, Any]]]:
    """Run the four map queries (in a worker thread); rows as dicts, per query."""
    a = _sql_time(at)
    out: dict[str, list[dict[str, Any]]] = {}
    for name, sql in (("fixes", FIXES_SQL.format(at=a, motion=int(p.motion_window_s),
                                                 window=int(p.window_s))),
                      ("checkins", CHECKINS_SQL.format(at=a, window=int(p.window_s))),
                      ("days", DAYS_SQL.format(at=a)),
                      ("visits", VISIT_SEGMENTS_SQL.format(at=a, window=int(p.stale_s)))):
        res = reader.query(sql)
        out[name] = [dict(zip(res.column_names, row, strict=True)) for row in res.result_rows]
    return out


# -- assembling the snapshot ------------------------------------------------------------
def _local_date(t: dt.datetime, tz: str) -> dt.date:
    try:
        return t.astimezone(ZoneInfo(tz)).date()
    except Exception:
        return t.astimezone(dt.UTC).date()


def _rep_tz(index: Any, rep: str, fix: dict[str, Any] | None = None) -> str:
    """The rep's zone: roster, territory, home, else the zone at the last fix."""
    pos = [] if not fix or fix.get("last_lon") is None else [
        SimpleNamespace(lon=fix["last_lon"], lat=fix["last_lat"], ts=None)]
    try:
        return timezones.rep_zone(index, rep, pos)
    except Exception:
        return "UTC"


def _roster(index: Any, rep: str) -> dict[str, Any]:
    entry = getattr(index, "roster", {}).get(rep) if index is not None else None
    return {"name": entry.name if entry else None, "team": entry.team if entry else None,
            "manager": entry.manager if entry else None}


def build_reps(rows: dict[str, list[dict[str, Any]]], at: dt.datetime, index: Any,
               p: MapParams = MapParams()) -> list[dict[str, Any]]:
    """One entry per rep seen in the window, with its status."""
    fixes = {r["rep_id"]: r for r in rows["fixes"]}
    checks = {r["rep_id"]: r for r in rows["checkins"]}
    visits = {r["rep_id"]: r for r in rows["visits"]}
    days: dict[str, list[dict[str, Any]]] = {}
    for r in rows["days"]:
        days.setdefault(r["rep_id"], []).append(r)
    reps = sorted(set(fixes) | set(checks) | {r for r, ds in days.items()
                                              if any(_today(d, at) for d in ds)})
    out = []
    for rep in reps:
        f, c, v = fixes.get(rep), checks.get(rep), visits.get(rep)
        tz = next((d["tz"] for d in days.get(rep, [])), None) or _rep_tz(index, rep, f)
        day = next((d for d in days.get(rep, []) if _today(d, at)), None)
        fix_ts = _aware(f["last_ts"]) if f else None
        moved = 0.0
        if f and fix_ts is not None:
            last_ms = fix_ts.timestamp() * 1000
            for ms, lon, lat in f["recent"] or []:
                if last_ms - ms <= p.motion_window_s * 1000:
                    moved = max(moved, _haversine_m(f["last_lon"], f["last_lat"], lon, lat))
        day_ts = _aware(c["day_ts"]) if c and c["n_day"] else None
        day_action = (c["day_action"] if c and day_ts
                      and _local_date(day_ts, tz) == _local_date(at, tz) else None)
        facts = RepFacts(
            fix_ts=fix_ts, speed_mps=f["last_speed"] if f else None, moved_m=moved,
            day_action=day_action, day_action_ts=day_ts,
            visit_action=c["visit_action"] if c and c["n_visit"] else None,
            visit_action_ts=_aware(c["visit_ts"]) if c and c["n_visit"] else None,
            break_action=(c["break_action"] or None) if c else None,
            visit_segment_end=_aware(v["seg_end"]) if v else None,
            workday_start=_aware(day["workday_start"]) if day else None,
            workday_end=_aware(day["workday_end"]) if day else None,
            workday_end_inferred=bool(day["workday_end_inferred"]) if day else True,
        )
        status = rep_status(facts, at, p)
        out.append({
            "rep_id": rep,
            "status": status,
            "lon": f["last_lon"] if f else None,
            "lat": f["last_lat"] if f else None,
            "accuracy_m": (round(float(f["last_accuracy"]), 1)
                           if f and f["last_accuracy"] is not None else None),
            "last_fix_at": fix_ts.isoformat() if fix_ts else None,
            "last_fix_age_s": round((at - fix_ts).total_seconds()) if fix_ts else None,
            "territory_id": f["last_territory"] if f else None,
            "assigned_territories": list(_assigned(index, rep)),
            "in_assigned_territory": f["last_in_assigned"] if f else None,
            "account_id": (v["seg_account"] if v and status == "visiting" else None)
            or (f["last_account"] if f else None),
            "tz": tz,
            **_roster(index, rep),
            "field_minutes": round(day["field_s"] / 60) if day else 0,
            "visits_today": int(day["verified_visits"]) if day else 0,
            "km_today": round(day["distance_m"] / 1000, 1) if day else 0.0,
            "workday_start": _aware(day["workday_start"]).isoformat()  # type: ignore[union-attr]
            if day and day["workday_start"] else None,
        })
    return out


def _assigned(index: Any, rep: str) -> tuple[str, ...]:
    if index is None:
        return ()
    try:
        return tuple(index.rep_profile(rep).territory_ids)
    except Exception:
        return ()


def filter_reps(reps: list[dict[str, Any]], territory: str | None, region: str | None,
                regions: dict[str, str | None]) -> list[dict[str, Any]]:
    """The reps of a territory or a region: assigned to it, or in it now.

    >>> reps = [{"rep_id": "a", "territory_id": "T1", "assigned_territories": ["T2"]},
    ...         {"rep_id": "b", "territory_id": None, "assigned_territories": ["T3"]}]
    >>> [r["rep_id"] for r in filter_reps(reps, "T2", None, {})]
    ['a']
    >>> [r["rep_id"] for r in filter_reps(reps, None, "north", {"T3": "north"})]
    ['b']
    """
    if not territory and not region:
        return reps
    out = []
    for r in reps:
        terrs = {*r["assigned_territories"], *([r["territory_id"]] if r["territory_id"] else [])}
        if territory and territory not in terrs:
            continue
        if region and not any(regions.get(t) == region for t in terrs):
            continue
        out.append(r)
    return out


def _today(day: dict[str, Any], at: dt.datetime) -> bool:
    return bool(day["local_date"] == _local_date(at, day["tz"]))


def _round(obj: Any, nd: int = 5) -> Any:
    if isinstance(obj, float):
        return round(obj, nd)
    if isinstance(obj, list | tuple):
        return [_round(o, nd) for o in obj]
    return obj


def territories_geojson(index: Any, p: MapParams = MapParams()) -> dict[str, Any]:
    """The index's territories as a FeatureCollection (simplified for drawing)."""
    if index is None:
        return {"type": "FeatureCollection", "features": []}
    assigned: Counter[str] = Counter()
    for rep in index.rep_ids():
        for t in index.rep_profile(rep).territory_ids:
            assigned[t] += 1
    polys = shapely.simplify(index.polygons, p.simplify_deg, preserve_topology=True)
    feats = []
    for i, poly in enumerate(polys):
        tid = str(index.territory_ids[i])
        geom = mapping(poly)
        feats.append({"type": "Feature", "id": tid,
                      "properties": {"territory_id": tid, "name": index.names[i],
                                     "region": index.regions[i],
                                     "assigned_reps": assigned[tid]},
                      "geometry": {"type": geom["type"],
                                   "coordinates": _round(geom["coordinates"])}})
    return {"type": "FeatureCollection", "features": feats}


def snapshot(reps: list[dict[str, Any]], territories: dict[str, Any] | None, at: dt.datetime,
             geo_version: int, bbox: list[float] | None) -> dict[str, Any]:
    by_status = Counter({s: 0 for s in STATUSES})
    by_territory: Counter[str] = Counter()
    per_terr_status: dict[str, Counter[str]] = {}
    for r in reps:
        by_status[r["status"]] += 1
        if r["status"] != "off_duty" and r["territory_id"]:
            by_territory[r["territory_id"]] += 1
            per_terr_status.setdefault(r["territory_id"], Counter())[r["status"]] += 1
    if territories is not None:
        territories = {"type": "FeatureCollection", "features": [
            {**f, "properties": {**f["properties"], "reps_now": by_territory[f["id"]],
                                 "reps_by_status": dict(per_terr_status.get(f["id"], {}))}}
            for f in territories["features"]]}
    return {"at": at.isoformat(), "geo_version": geo_version, "bbox": bbox,
            "counts": {"status": dict(by_status), "territory": dict(by_territory),
                       "reps": len(reps)},
            "reps": reps, "territories": territories}


# -- web views ------------------------------------------------------------------------------
def _static(name: str) -> bytes:
    return resources.files("streams.static").joinpath(name).read_bytes()


def parse_at(value: str | None) -> dt.datetime | None:
    """``at`` query parameter: ISO 8601 (naive means UTC) or empty/"now" for now."""
    if not value or value == "now":
        return None
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class MapQuery:
    """What one ``/v1/map.json`` request asks for."""

    at: dt.datetime | None = None
    territories: bool = True
    paths: bool = False
    accounts: bool = False
    alerts: bool = False
    territory: str | None = None
    region: str | None = None

    def key(self) -> str:
        return "|".join(str(v) for v in (self.at.isoformat() if self.at else "now",
                                         self.territories, self.paths, self.accounts,
                                         self.alerts,
                                         self.territory, self.region))


class MapService:
    """Builds (and briefly caches) the map data of one worker."""

    def __init__(self, pipeline: Any, params: MapParams = MapParams(),
                 layers: map_layers.LayerParams | None = None,
                 alert_params: AlertParams | None = None) -> None:
        self.p = pipeline
        self.params = params
        self.layers = layers or map_layers.LayerParams()
        self.alert_params = alert_params or AlertParams()
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._geo: tuple[int, dict[str, Any], list[float] | None] | None = None
        self._lock = asyncio.Lock()

    def _index(self) -> Any:
        return getattr(self.p.enricher, "index", None)

    def _territories(self) -> tuple[int, dict[str, Any], list[float] | None]:
        index = self._index()
        version = int(index.version) if index is not None else 0
        if self._geo is None or self._geo[0] != version:
            bbox = ([round(float(v), 5) for v in shapely.total_bounds(index.polygons)]
                    if index is not None else None)
            self._geo = (version, territories_geojson(index, self.params), bbox)
        return self._geo

    def _regions(self) -> dict[str, str | None]:
        geo = self._territories()[1]
        return {f["id"]: f["properties"]["region"] for f in geo["features"]}

    def _build(self, q: MapQuery, when: dt.datetime) -> dict[str, Any]:
        """The blocking part (store queries and assembly), run in the query executor."""
        reader = self.p.reader
        rows = query_store(reader, when, self.params)
        version, geo, bbox = self._territories()
        reps = build_reps(rows, when, self._index(), self.params)
        reps = filter_reps(reps, q.territory, q.region, self._regions())
        if bbox is None:
            pts = [(r["lon"], r["lat"]) for r in reps if r["lon"] is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                bbox = [min(xs), min(ys), max(xs), max(ys)]
        body = snapshot(reps, geo if q.territories else None, when, version, bbox)
        if q.paths:
            windows = map_layers.work_windows(rows["days"], when,
                                              self.layers.open_end_grace_s)
            wanted = {r["rep_id"] for r in reps}
            windows = {k: v for k, v in windows.items() if k in wanted}
            only = sorted(windows) if (q.territory or q.region) else None
            body["paths"] = map_layers.build_paths(
                map_layers.query_paths(reader, windows, when, self.layers, only), windows,
                self.layers)
        if q.accounts:
            accounts, last = map_layers.query_accounts(reader, when, self.layers)
            accs = map_layers.build_accounts(accounts, last, when)
            if q.territory:
                accs = [a for a in accs if a["territory_id"] == q.territory]
            if q.region:
                accs = [a for a in accs if a["region"] == q.region]
            body["accounts"] = accs
        if q.alerts:
            only = sorted(r["rep_id"] for r in reps) if (q.territory or q.region) else None
            positions = {r["rep_id"]: (r["lon"], r["lat"]) for r in reps
                         if r["lon"] is not None}
            index = self._index()
            body["alerts"] = map_layers.build_alerts(
                map_layers.query_alert_inputs(reader, when, only), when,
                lambda rep: _assigned(index, rep), self.alert_params, positions)
        return body

    async def data(self, q: MapQuery) -> dict[str, Any]:
        key = q.key()
        async with self._lock:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.params.cache_s:
                return hit[1]
            when = q.at or dt.datetime.now(dt.UTC)
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(self.p.query_executor, self._build, q, when)
            self._cache = {k: v for k, v in self._cache.items()
                           if time.monotonic() - v[0] < self.params.cache_s}
            self._cache[key] = (time.monotonic(), body)
            return body

    def _rep_day(self, rep: str, at: dt.datetime) -> dict[str, Any]:
        rows = map_layers.query_day(self.p.reader, rep, _local_date(at, "UTC"), at)
        tz = (rows["day"][0]["tz"] if rows["day"] else None) or _rep_tz(self._index(), rep)
        day = _local_date(at, tz)
        if day != _local_date(at, "UTC") or not rows["day"]:
            rows = map_layers.query_day(self.p.reader, rep, day, at)
        return map_layers.rep_day(rows, rep, day, at, self.layers)

    async def rep_day(self, rep: str, at: dt.datetime | None) -> dict[str, Any]:
        """One rep's day (its local day of ``at``) for the rep panel."""
        map_layers.valid_rep(rep)
        when = at or dt.datetime.now(dt.UTC)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.p.query_executor, self._rep_day, rep, when)


ASSETS = {"map.js": "application/javascript", "map.css": "text/css",
          "vendor/leaflet/leaflet.js": "application/javascript",
          "vendor/leaflet/leaflet.css": "text/css",
          "vendor/leaflet/LICENSE": "text/plain; charset=utf-8",
          **{f"vendor/leaflet/images/{n}.png": "image/png"
             for n in ("layers", "layers-2x", "marker-icon", "marker-icon-2x", "marker-shadow")}}


def page_config(settings: Any) -> dict[str, Any]:
    """What the page needs from the settings (no secrets)."""
    m = settings.map
    return {"tile_url": m.tile_url, "tile_attribution": m.tile_attribution,
            "tile_max_zoom": m.tile_max_zoom, "refresh_s": m.refresh_s}


def register_map(pipeline: Any) -> MapService | None:
    """Add /map, its assets, /v1/map.json and /v1/map/rep.json to the worker's web server
    (workers only: the data comes from the store through the read-only client)."""
    if getattr(pipeline, "reader", None) is None:
        return None
    from faust.web import Request, Response, View

    app = pipeline.app
    m = pipeline.settings.map
    service = MapService(pipeline, layers=map_layers.LayerParams(
        path_step_s=m.path_step_s, coverage_lookback_days=m.coverage_lookback_days),
        alert_params=pipeline.settings.alerts)
    pipeline.map_service = service
    config = page_config(pipeline.settings)

    @app.page("/map")
    class MapPage(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(_static("map.html"), content_type="text/html")

    @app.page("/map/config.json")
    class MapConfig(View):
        async def get(self, request: Request) -> Response:
            return self.json(config)

    @app.page("/map/{name:.+}")
    class MapAsset(View):
        async def get(self, request: Request, name: str) -> Response:
            if name not in ASSETS:
                return self.json({"error": "not_found"}, status=404)
            return self.bytes(_static(name), content_type=ASSETS[name],
                              headers={"Cache-Control": "max-age=300"})

    q = pipeline.settings.query
    # The viewer token or the query token (who may run SQL may see the map).
    tokens = [t for t in (q.viewer_token, q.token) if t is not None]

    def refused(view: View, request: Request) -> Response | None:
        if tokens:  # rep positions are as private as the SQL endpoint
            req: Any = request
            if not bearer_ok(req.headers.get("Authorization"), tokens):
                return view.json({"error": "unauthorized"}, status=401,
                                 headers={"WWW-Authenticate": "Bearer"})
        return None

    def bad(view: View, detail: str) -> Response:
        return view.json({"error": "bad_request", "detail": detail}, status=400)

    @app.page("/v1/map.json")
    class MapData(View):
        async def get(self, request: Request) -> Response:
            query: Any = getattr(request, "query", {})
            if (no := refused(self, request)) is not None:
                return no
            try:
                at = parse_at(query.get("at"))
            except ValueError:
                return bad(self, "at must be an ISO 8601 time")
            mq = MapQuery(at=at, territories=query.get("territories", "1") != "0",
                          paths=query.get("paths", "0") == "1",
                          accounts=query.get("accounts", "0") == "1",
                          alerts=query.get("alerts", "0") == "1",
                          territory=query.get("territory") or None,
                          region=query.get("region") or None)
            try:
                body = await service.data(mq)
            except Exception as exc:  # the store is down: say so, the page keeps polling
                return self.json({"error": "unavailable", "detail": str(exc)[:500]},
                                 status=503)
            return self.json(body)

    @app.page("/v1/map/rep.json")
    class MapRepDay(View):
        async def get(self, request: Request) -> Response:
            query: Any = getattr(request, "query", {})
            if (no := refused(self, request)) is not None:
                return no
            try:
                at = parse_at(query.get("at"))
                rep = map_layers.valid_rep(query.get("rep"))
            except ValueError as exc:
                return bad(self, str(exc) if "rep" in str(exc)
                           else "at must be an ISO 8601 time")
            try:
                body = await service.rep_day(rep, at)
            except Exception as exc:
                return self.json({"error": "unavailable", "detail": str(exc)[:500]},
                                 status=503)
            return self.json(body)

    return service
