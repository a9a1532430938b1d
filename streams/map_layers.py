"""The map's extra layers and the rep panel: today's path per rep, account coverage, and one
rep's day as a timeline (``/v1/map.json?paths=1&accounts=1`` and ``/v1/map/rep.json``).

Privacy: a path holds only the pings between the rep's work-day start and its end (or ``at``
while the day is open), read from ``rep_daily``; a rep without a started work day has no
path. Closed days are redacted in the store already (docs/privacy.md), the filter here keeps
an open day's off-duty pings (before the start) off the map too. The timeline carries no
positions at all.

The SQL reads the store through the read-only client, which binds no parameters: rep ids are
validated against the event schema's identifier pattern and quoted, times are formatted.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely

import processors.alert_rules as alert_rules
import streams.privacy as privacy
from schemas.records import RepDay, Segment, Transition

# The identifier pattern of schemas/events.py (Ident): what a rep id can be.
REP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,63}$")


@dataclass(frozen=True)
class LayerParams:
    path_step_s: int = 30  # one path point per rep and this many seconds (the first fix)
    path_simplify_deg: float = 0.00005  # path simplification tolerance (about 5 m)
    coverage_lookback_days: int = 90  # last verified visit looked for this far back
    gap_s: float = 120.0  # a hole of at least this long between segments: an unknown gap
    open_end_grace_s: float = 1200.0  # an inferred day end this far behind `at`: the day ended


def _t(t: dt.datetime) -> str:
    return privacy.sql_time(t)


def _aware(v: Any) -> dt.datetime | None:
    if isinstance(v, dt.datetime):
        return v if v.tzinfo else v.replace(tzinfo=dt.UTC)
    return None


def _iso(v: Any) -> str | None:
    t = _aware(v)
    return t.isoformat() if t else None


# -- paths ------------------------------------------------------------------------------------
PATHS_SQL = """
SELECT rep_id, groupArray((ms, x, y)) AS pts FROM (
  SELECT rep_id, intDiv(toUnixTimestamp64Milli(ts), {step_ms}) * {step_ms} AS ms,
         argMin(lon, ts) AS x, argMin(lat, ts) AS y
  FROM events_all
  WHERE kind = 'ping' AND NOT is_mock AND lat IS NOT NULL AND lon IS NOT NULL
    AND ifNull(accuracy_m, 0) <= 100 AND ts >= {lo} AND ts <= {at} {reps}
  GROUP BY rep_id, ms)
GROUP BY rep_id
"""


def work_windows(days: list[dict[str, Any]], at: dt.datetime, grace_s: float = 1200.0
                 ) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """Per rep, the part of its work day of ``at`` (its local day) up to ``at``.

    ``days`` are rep_daily rows (``rep_id``, ``local_date``, ``tz``, ``workday_start``,
    ``workday_end``, ``workday_end_inferred``). A checked-out day ends at its end. An
    inferred end is the last thing derived so far: the day runs on to ``at`` unless that
    end is more than ``grace_s`` behind ``at`` (the day is over: what came after is off
    duty).

    >>> t = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)
    >>> row = {"rep_id": "r1", "local_date": dt.date(2026, 11, 2), "tz": "UTC",
    ...        "workday_start": t.replace(hour=8), "workday_end": t.replace(hour=11, minute=50),
    ...        "workday_end_inferred": True}
    >>> [w.strftime("%H:%M") for w in work_windows([row], t)["r1"]]
    ['08:00', '12:00']
    >>> [w.strftime("%H:%M") for w in work_windows([row], t.replace(hour=15))["r1"]]
    ['08:00', '11:50']
    """
    out: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    for d in days:
        start = _aware(d.get("workday_start"))
        if start is None or start > at:
            continue
        try:
            local = at.astimezone(ZoneInfo(d["tz"])).date()
        except Exception:
            local = at.date()
        if d["local_date"] != local:
            continue
        end = _aware(d.get("workday_end"))
        inferred = d.get("workday_end_inferred", True)
        if end is None or (inferred and (at - end).total_seconds() <= grace_s):
            stop = at
        else:
            stop = min(end, at)
        if stop > start:
            out[d["rep_id"]] = (start, stop)
    return out


def query_paths(reader: Any, windows: dict[str, tuple[dt.datetime, dt.datetime]],
                at: dt.datetime, p: LayerParams, reps: list[str] | None = None
                ) -> list[dict[str, Any]]:
    if not windows:
        return []
    lo = min(w[0] for w in windows.values())
    only = ""
    if reps is not None:
        only = "AND rep_id IN (" + ",".join(privacy.sql_str(r) for r in reps) + ")"
    res = reader.query(PATHS_SQL.format(step_ms=int(p.path_step_s * 1000), lo=_t(lo),
                                        at=_t(at), reps=only))
    return [dict(zip(res.column_names, row, strict=True)) for row in res.result_rows]


def build_paths(rows: list[dict[str, Any]], windows: dict[str, tuple[dt.datetime, dt.datetime]],
                p: LayerParams = LayerParams()) -> dict[str, list[list[float]]]:
    """rep -> ``[[lon, lat], ...]`` in time order, only inside the rep's work window,
    simplified for drawing."""
    reps: list[str] = []
    lines: list[Any] = []
    for r in rows:
        w = windows.get(r["rep_id"])
        if w is None:
            continue
        lo, hi = w[0].timestamp() * 1000, w[1].timestamp() * 1000
        pts = sorted((ms, lon, lat) for ms, lon, lat in r["pts"] or []
                     if lo <= ms <= hi and lon is not None and lat is not None)
        if not pts:
            continue
        reps.append(r["rep_id"])
        lines.append(np.array([(lon, lat) for _, lon, lat in pts], dtype=float))
    out: dict[str, list[list[float]]] = {}
    geoms = [shapely.linestrings(c) if len(c) >= 2 else shapely.points(c[0]) for c in lines]
    simple = shapely.simplify(np.array(geoms, dtype=object), p.path_simplify_deg)
    for rep, g in zip(reps, simple, strict=True):
        coords = shapely.get_coordinates(g)
        out[rep] = [[round(float(x), 5), round(float(y), 5)] for x, y in coords]
    return out


# -- account coverage ---------------------------------------------------------------------
ACCOUNTS_SQL = """
SELECT account_id, name, territory_id, region, lon, lat, radius_m
FROM accounts WHERE kind = 'customer'
"""

LAST_VERIFIED_SQL = """
SELECT account_id, max(start) AS last_verified
FROM visits
WHERE verified AND start <= {at} AND local_date >= toDate({at}) - {days}
GROUP BY account_id
"""


def query_accounts(reader: Any, at: dt.datetime, p: LayerParams
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    out = []
    for sql in (ACCOUNTS_SQL, LAST_VERIFIED_SQL.format(at=_t(at),
                                                       days=int(p.coverage_lookback_days))):
        res = reader.query(sql)
        out.append([dict(zip(res.column_names, row, strict=True)) for row in res.result_rows])
    return out[0], out[1]


def build_accounts(accounts: list[dict[str, Any]], last: list[dict[str, Any]],
                   at: dt.datetime) -> list[dict[str, Any]]:
    """Customer accounts with the days since their last verified visit (``None``: none in
    the lookback)."""
    seen = {r["account_id"]: _aware(r["last_verified"]) for r in last}
    out = []
    for a in sorted(accounts, key=lambda r: r["account_id"]):
        t = seen.get(a["account_id"])
        out.append({
            "account_id": a["account_id"], "name": a["name"],
            "territory_id": a["territory_id"], "region": a["region"],
            "lon": round(float(a["lon"]), 5), "lat": round(float(a["lat"]), 5),
            "radius_m": float(a["radius_m"]),
            "last_verified_visit": t.isoformat() if t else None,
            "days_since_verified": (round((at - t).total_seconds() / 86400, 1)
                                    if t else None),
        })
    return out


# -- one rep's day --------------------------------------------------------------------------
DAY_SQL = """
SELECT * FROM rep_daily WHERE rep_id = {rep} AND local_date = toDate('{day}')
"""

SEGMENTS_SQL = """
SELECT segment_id, kind, start, `end`, duration_s, place_id, place_kind, distance_m,
       visit_source, verified, inferred
FROM segments WHERE rep_id = {rep} AND local_date = toDate('{day}') AND start <= {at}
ORDER BY start, segment_id
"""

VISITS_SQL = """
SELECT segment_id, account_id, start, `end`, source, verified, distance_m, outcome,
       order_currency, order_total, tags, form, notes, photo_count
FROM visits WHERE rep_id = {rep} AND local_date = toDate('{day}') AND start <= {at}
ORDER BY start, segment_id
"""

DAILY_FIGURES = ("workday_s", "field_s", "travel_s", "customer_s", "stopped_other_s",
                 "unknown_s", "break_s", "office_home_s", "in_territory_s", "out_territory_s",
                 "distance_m", "visits", "verified_visits", "unverified_visits", "auto_visits",
                 "pings_kept", "events")


def valid_rep(rep: str | None) -> str:
    """The rep id, or ValueError with the reason."""
    if not rep or not REP_ID.match(rep):
        raise ValueError("rep must be a rep id (letters, digits, ._:@/-, at most 64)")
    return rep


def query_day(reader: Any, rep: str, day: dt.date, at: dt.datetime
              ) -> dict[str, list[dict[str, Any]]]:
    args = {"rep": privacy.sql_str(valid_rep(rep)), "day": day.isoformat(), "at": _t(at)}
    out: dict[str, list[dict[str, Any]]] = {}
    for name, sql in (("day", DAY_SQL), ("segments", SEGMENTS_SQL), ("visits", VISITS_SQL)):
        res = reader.query(sql.format(**args))
        out[name] = [dict(zip(res.column_names, row, strict=True)) for row in res.result_rows]
    return out


def _json(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return _iso(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float):
        return round(v, 3)
    if isinstance(v, list | tuple):
        return [_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json(x) for k, x in v.items()}
    if v is None or isinstance(v, bool | int | str):
        return v
    return str(v)


def _within(seg: dict[str, Any], start: dt.datetime, end: dt.datetime, slack_s: float
            ) -> bool:
    a, b = _aware(seg["start"]), _aware(seg["end"])
    slack = dt.timedelta(seconds=slack_s)
    return a is not None and b is not None and a >= start - slack and b <= end + slack


def timeline(day: dict[str, Any] | None, segments: list[dict[str, Any]],
             visits: list[dict[str, Any]], at: dt.datetime, p: LayerParams = LayerParams()
             ) -> list[dict[str, Any]]:
    """The day in order: ``workday_start``, the segments (a visit with its account and
    outcome, in place of the stop it overlays), ``gap`` for a hole of at least ``gap_s``
    between segments inside the work day (nothing known: phone off, no fixes),
    ``workday_end``. Clipped at ``at``.

    >>> t = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)
    >>> h = dt.timedelta(hours=1)
    >>> segs = [{"segment_id": "a", "kind": "stop", "start": t, "end": t + h},
    ...         {"segment_id": "b", "kind": "travel", "start": t + 2 * h, "end": t + 3 * h}]
    >>> [e["kind"] for e in timeline({"workday_start": t}, segs, [], t + 4 * h)]
    ['workday_start', 'stop', 'gap', 'travel']
    """
    by_seg = {str(v["segment_id"]): v for v in visits}
    # A visit overlays the stop that verifies it: show the visit, not the same hour twice.
    spans = [(_aware(s["start"]), _aware(s["end"])) for s in segments if s["kind"] == "visit"]
    segments = [s for s in segments if s["kind"] != "stop" or not any(
        a is not None and b is not None and _within(s, a, b, p.gap_s) for a, b in spans)]
    out: list[dict[str, Any]] = []
    ws = _aware(day.get("workday_start")) if day else None
    we = _aware(day.get("workday_end")) if day else None
    if ws is not None and ws <= at:
        out.append({"kind": "workday_start", "start": ws.isoformat(),
                    "inferred": bool(day.get("workday_start_inferred")) if day else None})
    prev_end = ws
    for s in segments:
        start, end = _aware(s["start"]), _aware(s["end"])
        if start is None or end is None or start > at:
            continue
        if prev_end is not None and (start - prev_end).total_seconds() >= p.gap_s:
            out.append({"kind": "gap", "start": prev_end.isoformat(), "end": start.isoformat(),
                        "duration_s": round((start - prev_end).total_seconds())})
        end = min(end, at)
        e: dict[str, Any] = {"kind": str(s["kind"]), "segment_id": str(s["segment_id"]),
                             "start": start.isoformat(), "end": end.isoformat(),
                             "duration_s": round((end - start).total_seconds()),
                             "place_id": s.get("place_id"), "place_kind": s.get("place_kind"),
                             "distance_m": round(float(s.get("distance_m") or 0.0))}
        v = by_seg.get(str(s["segment_id"]))
        if s["kind"] == "visit":
            e.update({"account_id": (v or {}).get("account_id") or s.get("place_id"),
                      "outcome": (v or {}).get("outcome"),
                      "verified": _json((v or s).get("verified")),
                      "source": (v or {}).get("source") or s.get("visit_source")})
        out.append(e)
        prev_end = end if prev_end is None else max(prev_end, end)
    if (we is not None and day and not day.get("workday_end_inferred", True) and we <= at):
        out.append({"kind": "workday_end", "start": we.isoformat(), "inferred": False})
    return out


def rep_day(rows: dict[str, list[dict[str, Any]]], rep: str, day: dt.date, at: dt.datetime,
            p: LayerParams = LayerParams()) -> dict[str, Any]:
    """The rep panel's data: the timeline, the rep_daily figures and the visit forms."""
    d = rows["day"][0] if rows["day"] else None
    figures = {k: _json(d[k]) for k in DAILY_FIGURES if k in d} if d else None
    forms = [{k: _json(v[k]) for k in ("segment_id", "account_id", "start", "end", "source",
                                       "verified", "outcome", "order_currency", "order_total",
                                       "tags", "form", "notes", "photo_count")}
             for v in rows["visits"]]
    return {"rep_id": rep, "local_date": day.isoformat(), "at": at.isoformat(),
            "tz": d["tz"] if d else None,
            "workday_start": _iso(d["workday_start"]) if d else None,
            "workday_end": _iso(d["workday_end"]) if d else None,
            "workday_end_inferred": bool(d["workday_end_inferred"]) if d else None,
            "figures": figures, "timeline": timeline(d, rows["segments"], rows["visits"], at, p),
            "visits": forms}


# -- alerts (the rules of processors/alert_rules.py on the store's current derivation) ------
ALERT_DAYS_SQL = """
SELECT * FROM rep_daily
WHERE local_date >= toDate({at}) - 1 AND local_date <= toDate({at}) + 1 {reps}
"""

ALERT_SEGMENTS_SQL = """
SELECT * FROM segments
WHERE local_date >= toDate({at}) - 1 AND local_date <= toDate({at}) + 1
  AND kind IN ('break', 'visit') AND start <= {at} {reps}
"""

ALERT_TRANSITIONS_SQL = """
SELECT * FROM transitions
WHERE local_date >= toDate({at}) - 1 AND local_date <= toDate({at}) + 1
  AND kind IN ('territory_enter', 'territory_exit') AND at <= {at} {reps}
"""


def query_alert_inputs(reader: Any, at: dt.datetime, reps: list[str] | None = None
                       ) -> dict[str, list[dict[str, Any]]]:
    only = ""
    if reps is not None:
        only = "AND rep_id IN (" + ",".join(privacy.sql_str(r) for r in reps) + ")"
    out: dict[str, list[dict[str, Any]]] = {}
    for name, sql in (("days", ALERT_DAYS_SQL), ("segments", ALERT_SEGMENTS_SQL),
                      ("transitions", ALERT_TRANSITIONS_SQL)):
        res = reader.query(sql.format(at=_t(at), reps=only))
        out[name] = [dict(zip(res.column_names, row, strict=True)) for row in res.result_rows]
    return out


def _utc_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.replace(tzinfo=dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo is None
                else v) for k, v in row.items()}


def build_alerts(rows: dict[str, list[dict[str, Any]]], at: dt.datetime,
                 assigned: Any, params: alert_rules.AlertParams,
                 positions: dict[str, tuple[float, float]]) -> list[dict[str, Any]]:
    """The alerts of each rep's local day of ``at`` that were true by ``at`` (a condition
    that ends after ``at`` shows as open). ``assigned(rep)`` gives the rep's territories;
    ``positions`` the reps' current positions, for alerts that have none of their own."""
    segs: dict[tuple[str, dt.date], list[Segment]] = {}
    for r in rows["segments"]:
        s = Segment.model_validate(_utc_fields(r))
        segs.setdefault((s.rep_id, s.local_date), []).append(s)
    trans: dict[tuple[str, dt.date], list[Transition]] = {}
    for r in rows["transitions"]:
        t = Transition.model_validate(_utc_fields(r))
        trans.setdefault((t.rep_id, t.local_date), []).append(t)
    out: list[dict[str, Any]] = []
    for r in rows["days"]:
        try:
            local = at.astimezone(ZoneInfo(r["tz"])).date()
        except Exception:
            local = at.date()
        if r["local_date"] != local:
            continue
        day = RepDay.model_validate(_utc_fields(r))
        key = (day.rep_id, day.local_date)
        day_segs = segs.get(key, [])
        seg_of = {alert_rules.alert_id(s.rep_id, s.local_date, rule, str(s.segment_id)): s
                  for s in day_segs for rule in ("long_break", "unverified_visit")}
        for c in alert_rules.evaluate(day, day_segs, trans.get(key, []),
                                      assigned(day.rep_id), params):
            if c.raised_at > at:
                continue
            seg = seg_of.get(c.alert_id)
            lon, lat = ((seg.lon, seg.lat) if seg is not None and seg.lon is not None
                        else positions.get(c.rep_id, (None, None)))
            out.append({"alert_id": str(c.alert_id), "rule": c.rule, "rep_id": c.rep_id,
                        "local_date": c.local_date.isoformat(),
                        "raised_at": c.raised_at.isoformat(),
                        "resolved_at": (c.resolved_at.isoformat()
                                        if c.resolved_at is not None and c.resolved_at <= at
                                        else None),
                        "detail": _json(c.detail),
                        "lon": round(lon, 5) if lon is not None else None,
                        "lat": round(lat, 5) if lat is not None else None})
    return sorted(out, key=lambda a: (a["raised_at"], a["alert_id"]))
