"""Tracker apps' protocols -> geotel ping events. Pure: no I/O, no clock.

Each function takes what one request of an app carried (a decoded JSON document, or the
query/form parameters) and the identity its token authenticated, and returns the events to
validate as ``/v1/events`` validates them, the points it could not convert (with a reason),
and how many messages carried no position (OwnTracks ``lwt``, ``card``, ...). Units become
the schema's: speeds in m/s (knots and km/h converted), battery in percent (fractions of 1
converted), and each app's "unknown" sentinels (accuracy 0, speed/course/accuracy -1,
altitude 0.0 where the app sends it for "no altitude") become absent. No ``event_id`` is
set: the schema derives one from device, kind, time and position, so an app's resend of
the same point is stored once (docs/ingest.md).

Field definitions: OwnTracks booklet (``docs/tech/json.md``, HTTP mode), Traccar's OsmAnd
protocol page and decoder, Traccar Client's JSON body (v9+), Overland-iOS README
(GeoJSON batches), GPSLogger's custom-URL placeholders (``%ALL``).

>>> c = osmand({"id": "x", "timestamp": "1762070400", "lat": "52.5", "lon": "13.4",
...             "speed": "10", "accuracy": "0", "batt": "87"}, "d-1", "r-1")
>>> p = c.events[0]
>>> p["ts"], round(p["speed_mps"], 3), "accuracy_m" in p, p["battery_pct"]
('2025-11-02T08:00:00+00:00', 5.144, False, 87.0)
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KNOTS_TO_MPS = 1852.0 / 3600.0
KMH_TO_MPS = 1.0 / 3.6
_MS_THRESHOLD = 100_000_000_000  # epoch values above this are milliseconds (year 5138 in s)


class PointError(ValueError):
    """A point that cannot become an event (missing or unreadable position or time)."""


@dataclass
class Converted:
    events: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (index in request, why)
    skipped: int = 0  # messages without a position (not an error)


def _num(v: object, name: str) -> float | None:
    """A finite number from a number or a numeric string; None when absent or empty."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise PointError(f"{name}: expected a number, got {v!r}")
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PointError(f"{name}: expected a number, got {str(v)[:40]!r}") from None
    if not math.isfinite(x):
        raise PointError(f"{name}: not a finite number")
    return x


def _opt(v: object, name: str, *, absent: tuple[float, ...] = (), negative_absent: bool = False
         ) -> float | None:
    """An optional number with the app's "unknown" sentinels mapped to None."""
    x = _num(v, name)
    if x is None or x in absent or (negative_absent and x < 0):
        return None
    return x


def _epoch(v: object, name: str) -> str:
    x = _num(v, name)
    if x is None:
        raise PointError(f"{name}: missing")
    if abs(x) >= _MS_THRESHOLD:
        x /= 1000.0
    try:
        return dt.datetime.fromtimestamp(x, dt.UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        raise PointError(f"{name}: {x} is not a time") from None


def _iso(v: object, name: str) -> str:
    """An ISO 8601 time; one without an offset is taken as UTC (Traccar Client, OsmAnd)."""
    if not isinstance(v, str) or not v:
        raise PointError(f"{name}: expected an ISO 8601 time")
    try:
        t = dt.datetime.fromisoformat(v.strip().replace(" ", "T", 1))
    except ValueError:
        raise PointError(f"{name}: {v[:40]!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.isoformat()


def _ping(device_id: str, rep_id: str, ts: str, lat: float | None, lon: float | None,
          **opt: object) -> dict[str, Any]:
    if lat is None or lon is None:
        raise PointError("lat/lon: missing")
    ev: dict[str, Any] = {"device_id": device_id, "rep_id": rep_id, "kind": "ping", "ts": ts,
                          "lat": lat, "lon": lon}
    ev.update({k: v for k, v in opt.items() if v is not None})
    return ev


def _pct(level: float | None) -> float | None:
    """A battery level given as a fraction of 1 (-1: unknown) in percent."""
    if level is None or level < 0:
        return None
    return round(level * 100.0, 1)


# -- OwnTracks (HTTP mode) ------------------------------------------------------------------
#: ``_type`` values that carry a fix of the phone.
OWNTRACKS_FIXES = frozenset({"location", "transition"})


def owntracks(doc: object, device_id: str, rep_id: str) -> Converted:
    """One OwnTracks message. ``location`` (and ``transition``, an enter/leave that carries
    the fix that triggered it) become a ping: ``tst`` epoch s, ``acc`` m (0: absent),
    ``vel`` km/h, ``cog`` degrees, ``alt`` m, ``batt`` percent. Other types are skipped."""
    out = Converted()
    if not isinstance(doc, dict):
        out.rejects.append((0, "expected one JSON object"))
        return out
    if doc.get("_type") not in OWNTRACKS_FIXES:
        out.skipped = 1
        return out
    try:
        vel = _num(doc.get("vel"), "vel")
        out.events.append(_ping(
            device_id, rep_id, _epoch(doc.get("tst"), "tst"), _num(doc.get("lat"), "lat"),
            _num(doc.get("lon"), "lon"),
            accuracy_m=_opt(doc.get("acc"), "acc", absent=(0.0,), negative_absent=True),
            speed_mps=None if vel is None or vel < 0 else vel * KMH_TO_MPS,
            heading_deg=_opt(doc.get("cog"), "cog", negative_absent=True),
            altitude_m=_num(doc.get("alt"), "alt"),
            battery_pct=_opt(doc.get("batt"), "batt", negative_absent=True)))
    except PointError as exc:
        out.rejects.append((0, str(exc)))
    return out


# -- OsmAnd / Traccar Client up to v8 ----------------------------------------------------------
def _osmand_time(v: object) -> str:
    if isinstance(v, str) and v.strip().lstrip("-").replace(".", "", 1).isdigit():
        return _epoch(v, "timestamp")
    return _iso(v, "timestamp")


def osmand(params: Mapping[str, str], device_id: str, rep_id: str) -> Converted:
    """One OsmAnd request (query string or form): ``timestamp`` (epoch s or ms, or
    ``yyyy-MM-dd HH:mm:ss`` in UTC), ``lat``/``lon`` or ``location=lat,lon``, ``speed`` in
    KNOTS, ``bearing``, ``altitude`` (0.0: absent), ``accuracy`` (0: absent), ``batt`` %."""
    out = Converted()
    try:
        lat, lon = _num(params.get("lat"), "lat"), _num(params.get("lon"), "lon")
        loc = params.get("location")
        if (lat is None or lon is None) and loc:
            parts = loc.split(",")
            if len(parts) != 2:
                raise PointError("location: expected lat,lon")
            lat, lon = _num(parts[0], "location"), _num(parts[1], "location")
        speed = _opt(params.get("speed"), "speed", negative_absent=True)
        out.events.append(_ping(
            device_id, rep_id, _osmand_time(params.get("timestamp")), lat, lon,
            accuracy_m=_opt(params.get("accuracy"), "accuracy", absent=(0.0,),
                            negative_absent=True),
            speed_mps=None if speed is None else speed * KNOTS_TO_MPS,
            heading_deg=_opt(params.get("bearing") or params.get("heading"), "bearing",
                             negative_absent=True),
            altitude_m=_opt(params.get("altitude"), "altitude", absent=(0.0,)),
            battery_pct=_opt(params.get("batt"), "batt", negative_absent=True)))
    except PointError as exc:
        out.rejects.append((0, str(exc)))
    return out


# -- Traccar Client v9+ (JSON) ------------------------------------------------------------
def traccar_json(doc: object, device_id: str, rep_id: str) -> Converted:
    """One Traccar Client v9+ body: ``{"device_id", "location": {"timestamp" ISO, "coords":
    {latitude, longitude, accuracy, speed m/s, heading, altitude}, "battery": {"level" 0-1},
    "is_moving", "activity"}}``; -1 means unknown for speed, heading, accuracy and level.
    A list of such locations under ``location`` is taken point by point."""
    out = Converted()
    locs = doc.get("location") if isinstance(doc, dict) else None
    items = locs if isinstance(locs, list) else [locs]
    for i, loc in enumerate(items):
        try:
            if not isinstance(loc, dict) or not isinstance(loc.get("coords"), dict):
                raise PointError("location.coords: missing")
            c = loc["coords"]
            batt = loc.get("battery")
            level = _num(batt.get("level"), "battery.level") if isinstance(batt, dict) else None
            out.events.append(_ping(
                device_id, rep_id, _iso(loc.get("timestamp"), "location.timestamp"),
                _num(c.get("latitude"), "latitude"), _num(c.get("longitude"), "longitude"),
                accuracy_m=_opt(c.get("accuracy"), "accuracy", absent=(0.0,),
                                negative_absent=True),
                speed_mps=_opt(c.get("speed"), "speed", negative_absent=True),
                heading_deg=_opt(c.get("heading"), "heading", negative_absent=True),
                altitude_m=_num(c.get("altitude"), "altitude"),
                battery_pct=_pct(level)))
        except PointError as exc:
            out.rejects.append((i, str(exc)))
    return out


# -- Overland (iOS) -------------------------------------------------------------------------
#: iOS reports a visit that has not ended with ``departure_date`` = distantFuture (4001).
_FAR_FUTURE_YEAR = 4000


def overland(doc: object, device_id: str, rep_id: str) -> Converted:
    """An Overland batch ``{"locations": [GeoJSON Feature, ...]}``: ``geometry.coordinates``
    [lon, lat], ``properties.timestamp`` ISO, ``speed`` m/s, ``course``,
    ``horizontal_accuracy`` (-1: invalid), ``altitude``, ``battery_level`` 0-1. A visit
    feature (``type``/``action`` ``visit``) becomes a ping at its arrival and one at its
    departure (when it has ended): the phone was there at both times."""
    out = Converted()
    locs = doc.get("locations") if isinstance(doc, dict) else None
    if not isinstance(locs, list):
        out.rejects.append((-1, 'expected {"locations": [...]}'))
        return out
    for i, feat in enumerate(locs):
        try:
            if not isinstance(feat, dict):
                raise PointError("expected a GeoJSON Feature")
            geom, props = feat.get("geometry"), feat.get("properties")
            if not isinstance(geom, dict) or not isinstance(props, dict):
                raise PointError("geometry/properties: missing")
            coords = geom.get("coordinates")
            if not isinstance(coords, list) or len(coords) < 2:
                raise PointError("geometry.coordinates: expected [lon, lat]")
            lon, lat = _num(coords[0], "coordinates"), _num(coords[1], "coordinates")
            acc = _opt(props.get("horizontal_accuracy"), "horizontal_accuracy",
                       negative_absent=True, absent=(0.0,))
            common = {"accuracy_m": acc,
                      "battery_pct": _pct(_num(props.get("battery_level"), "battery_level"))}
            if "visit" in (props.get("type"), props.get("action")):
                times = [props.get("arrival_date") or props.get("timestamp"),
                         props.get("departure_date")]
                for t in times:
                    if t is None:
                        continue
                    ts = _iso(t, "arrival_date/departure_date")
                    if int(ts[:4]) >= _FAR_FUTURE_YEAR:
                        continue
                    out.events.append(_ping(device_id, rep_id, ts, lat, lon, **common))
                continue
            out.events.append(_ping(
                device_id, rep_id, _iso(props.get("timestamp"), "properties.timestamp"),
                lat, lon, **common,
                speed_mps=_opt(props.get("speed"), "speed", negative_absent=True),
                heading_deg=_opt(props.get("course"), "course", negative_absent=True),
                altitude_m=_num(props.get("altitude"), "altitude")))
        except PointError as exc:
            out.rejects.append((i, str(exc)))
    return out


# -- GPSLogger for Android (custom URL, %ALL) ----------------------------------------------
_GPSLOGGER_PROVIDERS = {"gps": "gps", "network": "network", "fused": "fused"}


def gpslogger(params: Mapping[str, str], device_id: str, rep_id: str) -> Converted:
    """One GPSLogger custom-URL request with the ``%ALL`` parameters (form body or query):
    ``lat``, ``lon``, ``timestamp`` epoch s (else ``time`` ISO), ``acc`` m (0: absent),
    ``spd`` m/s, ``dir``, ``alt`` (0.0: absent), ``batt`` %, ``prov``."""
    out = Converted()
    try:
        if params.get("timestamp"):
            ts = _epoch(params.get("timestamp"), "timestamp")
        else:
            ts = _iso(params.get("time"), "time")
        out.events.append(_ping(
            device_id, rep_id, ts, _num(params.get("lat"), "lat"), _num(params.get("lon"), "lon"),
            accuracy_m=_opt(params.get("acc"), "acc", absent=(0.0,), negative_absent=True),
            speed_mps=_opt(params.get("spd"), "spd", negative_absent=True),
            heading_deg=_opt(params.get("dir"), "dir", negative_absent=True),
            altitude_m=_opt(params.get("alt"), "alt", absent=(0.0,)),
            battery_pct=_opt(params.get("batt"), "batt", negative_absent=True),
            provider=_GPSLOGGER_PROVIDERS.get(str(params.get("prov", "")).lower())))
    except PointError as exc:
        out.rejects.append((0, str(exc)))
    return out
