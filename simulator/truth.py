"""Ground truth per rep-day: what the pipeline should derive if it were perfect.

One JSON object per rep-day, written as JSON lines. Times are ISO 8601 UTC with a ``Z``;
durations are seconds; distance is metres along the true path (not between pings).
See ``docs/simulator.md`` for the field list.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from simulator.phone import PhoneDay
from simulator.plan import BREAK, VISIT, DayPlan

#: Bump when a field changes meaning, so the accuracy harness can refuse stale files.
TRUTH_VERSION = 1
#: Sampling step for time outside the own territory (a point-in-polygon test per step).
OUTSIDE_STEP_S = 60.0


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z"
    )


def truth_record(plan: DayPlan, phone: PhoneDay | None, territory: Any = None) -> dict[str, Any]:
    """The truth record of one rep-day.

    ``territory`` (a :class:`simulator.world.Territory`) enables ``outside_territory_s``;
    without it the field is ``None``.
    """
    ws, we = plan.workday_start, plan.workday_end
    dur: dict[str, float] = {"home": 0.0, "office": 0.0}
    visit_s = break_s = other_s = 0.0
    for s in plan.stops:
        d = s.end - s.start
        if s.kind == VISIT:
            visit_s += d
        elif s.kind == BREAK:
            break_s += d
        elif s.place in dur:
            dur[s.place] += d
        else:
            other_s += d
    workday_s = we - ws
    stopped_s = visit_s + break_s + other_s + dur["home"] + dur["office"]
    record: dict[str, Any] = {
        "version": TRUTH_VERSION,
        "rep_id": plan.rep.rep_id,
        "device_id": plan.device_id,
        "date": plan.day.isoformat(),
        "tz": plan.rep.tz,
        "territory_id": plan.rep.territory_id,
        "workday_start": iso(ws),
        "workday_end": iso(we),
        "workday_s": round(workday_s, 1),
        "field_s": round(workday_s - dur["home"] - dur["office"] - break_s, 1),
        "at_customers_s": round(visit_s, 1),
        "travel_s": round(workday_s - stopped_s, 1),
        "break_s": round(break_s, 1),
        "home_s": round(dur["home"], 1),
        "office_s": round(dur["office"], 1),
        "other_stop_s": round(other_s, 1),
        "distance_m": round(plan.trajectory.distance_m, 1),
        "outside_territory_s": _outside_s(plan, territory) if territory is not None else None,
        "stops": [
            {
                "start": iso(s.start), "end": iso(s.end), "duration_s": round(s.end - s.start, 1),
                "lat": round(s.lat, 6), "lon": round(s.lon, 6), "kind": s.kind,
                "place": s.place, "account_id": s.account_id, "visit_id": s.visit_id,
            }
            for s in plan.stops
        ],
        "visits": [
            {
                "visit_id": v.visit_id, "account_id": v.account.account_id,
                "territory_id": v.account.territory_id, "in_own_territory": v.in_own_territory,
                "start": iso(v.start), "end": iso(v.end), "duration_s": round(v.end - v.start, 1),
            }
            for v in plan.visits
        ],
    }
    if phone is not None:
        record["phone"] = {
            "clock_skew_s": round(phone.clock_skew_s, 3),
            "offline": [[iso(a), iso(b)] for a, b in phone.offline],
            "missing_checkins": phone.missing_checkins,
            "pings_scheduled": phone.pings_scheduled,
            "pings_recorded": phone.pings_recorded,
            "events": len(phone.events),
            "no_speed": phone.no_speed,
            "off_duty_pings": phone.off_duty_pings,
            "night_trip": None if phone.night_trip is None else [iso(x) for x in phone.night_trip],
        }
    return record


def _outside_s(plan: DayPlan, territory: Any) -> float:
    t, outside = plan.workday_start, 0.0
    while t < plan.workday_end:
        lat, lon, _, _ = plan.trajectory.sample(t)
        step = min(OUTSIDE_STEP_S, plan.workday_end - t)
        if not territory.contains(lat, lon):
            outside += step
        t += step
    return round(outside, 1)


def write_truth(path: Path | str, truth_records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line; return the number of records written."""
    n = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for rec in truth_records:
            fh.write(json.dumps(rec, separators=(",", ":"), sort_keys=True))
            fh.write("\n")
            n += 1
    return n


def read_truth(path: Path | str) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
