"""The map's rep entries carry the roster (name, team, manager) and the rep's zone from
the chain roster > territory > home > last fix, never UTC by default."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from geo import load_index, load_roster
from streams.map import build_reps

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
AT = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)


def _fix(rep: str, lon: float, lat: float) -> dict:  # type: ignore[type-arg]
    return {"rep_id": rep, "last_ts": AT - dt.timedelta(minutes=1), "last_lon": lon,
            "last_lat": lat, "last_speed": 0.0, "recent": [], "last_territory": None,
            "last_in_assigned": None, "last_account": None, "last_accuracy": None}


def test_map_reps_carry_roster_and_zone() -> None:
    index, _ = load_index(SAMPLE / "territories.geojson", SAMPLE / "accounts.geojson",
                          version=1)
    roster, _ = load_roster([{"rep_id": "rep-0001", "name": "Ann", "team": "North",
                              "manager": "Bea"}])
    index = index.with_roster(roster)
    rows = {"fixes": [_fix("rep-0001", 13.4, 52.5), _fix("rep-bj", 116.4, 39.9)],
            "checkins": [], "visits": [], "days": []}
    reps = {r["rep_id"]: r for r in build_reps(rows, AT, index)}
    assert (reps["rep-0001"]["team"], reps["rep-0001"]["manager"],
            reps["rep-0001"]["name"]) == ("North", "Bea", "Ann")
    assert reps["rep-0001"]["tz"] == "Europe/Berlin"  # its territory's (no roster zone)
    assert reps["rep-bj"]["tz"] == "Asia/Shanghai"  # no roster, territory or home: its fix
    assert reps["rep-bj"]["team"] is None
