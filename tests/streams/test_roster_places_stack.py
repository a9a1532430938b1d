"""Through the real stack: `geotel reps load` and `geotel places load` publish their own
sets; the roster reaches ClickHouse (`reps`) and sets each rep's zone, a rep no roster or
territory places gets the zone of its position (never UTC), and loading accounts again
keeps the places set."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.conftest import Stack, ping, wait_for


def test_roster_and_places_sets_through_the_stack(stack: Stack, tmp_path: Path) -> None:
    stack.cli("territories", "load", _sample("territories.geojson"))
    roster = tmp_path / "roster.csv"
    roster.write_text("rep_id,name,team,manager,tz\n"
                      "rep-tk,Taro,East,Mia,Asia/Tokyo\n"
                      "rep-0002,Bo,North,Mia,\n", encoding="utf-8")
    places = tmp_path / "places.csv"
    places.write_text("place_id,kind,rep_id,radius_m,lat,lon\n"
                      "O-extra,office,,120,52.45,13.30\n", encoding="utf-8")
    out = stack.cli("reps", "load", str(roster)).stdout
    assert "2 reps loaded" in out
    stack.cli("places", "load", str(places))
    stack.cli("accounts", "load", _sample("accounts.geojson"))

    def sets_loaded() -> bool:
        sets = stack.health()["components"]["geo"].get("sets", {})
        return {"territories", "accounts", "places", "reps"} <= set(sets)

    wait_for(sets_loaded, 60, "the worker uses the roster and the places set")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=6)  # any hour: only zones are read
    tokens = {rep: stack.add_device(rep, f"dev-{rep}") for rep in ("rep-tk", "rep-bj")}
    for rep, (lat, lon) in (("rep-tk", (52.52, 13.40)), ("rep-bj", (39.90, 116.40))):
        evs = [ping(f"dev-{rep}", rep, start + dt.timedelta(minutes=2 * k), lat=lat,
                    lon=lon + 0.0004 * k) for k in range(30)]
        r = stack.post(tokens[rep], evs)
        assert r.status_code == 202 and r.json()["accepted"] == 30, r.text[:300]
    stack.wait_derived()

    def zones() -> dict[str, str]:
        return {r["rep_id"]: r["tz"] for r in stack.sql(
            "SELECT rep_id, any(tz) AS tz FROM rep_daily "
            "WHERE rep_id IN ('rep-tk', 'rep-bj') GROUP BY rep_id")}

    wait_for(lambda: len(zones()) == 2, 60, "both reps' days stored")
    assert zones() == {"rep-tk": "Asia/Tokyo", "rep-bj": "Asia/Shanghai"}
    wait_for(lambda: stack.scalar("SELECT count() FROM reps") == 2, 60, "the roster stored")
    rows = stack.sql("SELECT rep_id, name, team, manager, tz FROM reps ORDER BY rep_id")
    assert rows == [{"rep_id": "rep-0002", "name": "Bo", "team": "North", "manager": "Mia",
                     "tz": None},
                    {"rep_id": "rep-tk", "name": "Taro", "team": "East", "manager": "Mia",
                     "tz": "Asia/Tokyo"}]
    # The accounts were loaded after the places: the office of the places set stays.
    wait_for(lambda: stack.scalar(
        "SELECT count() FROM accounts WHERE account_id = 'O-extra' AND kind = 'office'") == 1,
        60, "the places' office in the accounts table")


def _sample(name: str) -> str:
    return str(Path(__file__).resolve().parents[2] / "data" / "sample" / name)
