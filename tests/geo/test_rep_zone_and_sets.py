"""The rep's time zone chain (roster, territory, home, position; never UTC by default),
the roster loader, the places loader and the index built from separate set records."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import orjson
import pandas as pd
import pytest
from geo_fixtures import accounts_frame, territories_frame
from shapely import Point

from geo import GeoIndex, GeoLoadError, load_accounts, load_places, load_roster, load_territories
from geo.timezones import rep_zone, tz_at

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"


def _index(roster: dict | None = None, accounts: gpd.GeoDataFrame | None = None,
           ) -> GeoIndex:  # type: ignore[type-arg]
    return GeoIndex.build(load_territories(territories_frame()).frame,
                          load_accounts(accounts if accounts is not None
                                        else accounts_frame()).frame,
                          version=3, roster=roster)


def test_zone_chain_roster_then_territory_then_home_then_position() -> None:
    roster, report = load_roster([{"rep_id": "rep-1", "tz": "America/New_York"},
                                  {"rep_id": "rep-9", "team": "Far East"}])
    assert report.ok
    idx = _index(roster)
    p = idx.rep_profile("rep-1")
    assert (p.tz, p.tz_source) == ("America/New_York", "roster")  # before the territory's
    p = idx.rep_profile("rep-2")
    assert (p.tz, p.tz_source) == ("Europe/Berlin", "territory")
    # rep-9: on the roster without a zone, in no territory, no home: its position decides
    beijing = [SimpleNamespace(lon=116.40, lat=39.90, ts=2), SimpleNamespace(lon=13.4,
                                                                             lat=52.5, ts=1)]
    assert idx.rep_profile("rep-9").tz_source == "none"
    assert rep_zone(idx, "rep-9", beijing[:1]) == "Asia/Shanghai"
    assert rep_zone(idx, "rep-9", beijing) == "Europe/Berlin"  # the earliest position
    assert rep_zone(None, "rep-9", beijing[:1]) == "Asia/Shanghai"  # no index at all
    assert rep_zone(idx, "rep-9", []) == "UTC"  # nothing places the rep
    assert tz_at(float("nan"), 0.0) is None


def test_a_rep_in_no_territory_gets_the_zone_of_its_home() -> None:
    acc = accounts_frame()
    row = gpd.GeoDataFrame({"account_id": ["H-bj"], "name": [None], "kind": ["home"],
                            "radius_m": [None], "territory_id": [None], "rep_id": ["rep-bj"]},
                           geometry=[Point(116.40, 39.90)], crs="EPSG:4326")
    idx = _index(accounts=gpd.GeoDataFrame(pd.concat([acc, row], ignore_index=True),
                                           crs="EPSG:4326"))
    p = idx.rep_profile("rep-bj")
    assert (p.tz, p.tz_source) == ("Asia/Shanghai", "home")


def test_roster_csv_rejects_with_reasons_and_keeps_the_rest(tmp_path: Path) -> None:
    f = tmp_path / "roster.csv"
    f.write_text("rep,name,team,manager,time_zone,shoe_size\n"
                 "rep-1,Ann,North,Bea,Europe/Berlin,40\n"
                 ",Nobody,North,Bea,Europe/Berlin,41\n"
                 "rep-1,Ann again,South,Bea,Europe/Berlin,40\n"
                 "rep-2,Bob,South,Cy,Moon/Crater,44\n", encoding="utf-8")
    roster, report = load_roster(f)
    assert sorted(roster) == ["rep-1", "rep-2"]
    assert roster["rep-1"].as_dict() == {"rep_id": "rep-1", "name": "Ann", "team": "North",
                                         "manager": "Bea", "tz": "Europe/Berlin"}
    assert roster["rep-2"].tz is None
    assert [i.reason for i in report.rejected] == ["no rep_id", "rep_id repeated (row 2)"]
    assert "unknown time zone 'Moon/Crater'" in report.repaired[0].reason
    assert report.warnings == ["ignored columns: shoe_size"]
    empty = tmp_path / "empty.csv"
    empty.write_text("name,team\nAnn,North\n", encoding="utf-8")
    with pytest.raises(GeoLoadError, match="no valid roster row"):
        load_roster(empty)


def test_places_file_loads_homes_and_offices_by_place_id(tmp_path: Path) -> None:
    f = tmp_path / "places.csv"
    f.write_text("place_id,kind,rep_id,radius_m,lat,lon\n"
                 "H-1,home,rep-1,80,52.5,13.4\n"
                 "O-1,office,,150,52.51,13.41\n"
                 "H-2,home,,80,52.5,13.4\n", encoding="utf-8")
    frame, report = load_places(f)
    assert frame["account_id"].tolist() == ["H-1", "O-1"]
    assert frame["kind"].tolist() == ["home", "office"]
    assert [(i.ref, i.reason) for i in report.rejected] == [("H-2", "kind home needs a rep_id")]
    assert report.kind == "places" and report.source.endswith("places.csv")
    nokind = tmp_path / "customers.csv"
    nokind.write_text("place_id,lat,lon\nA,52.5,13.4\n", encoding="utf-8")
    with pytest.raises(GeoLoadError, match="kind column"):
        load_places(nokind)


def test_loading_accounts_keeps_the_places_set(tmp_path: Path) -> None:
    """The index of separate set records: a new accounts set keeps the homes of the
    places set; a place replaces an account of the same id; the roster rides along."""
    from streams.geosets import build_index, prepare

    terr, _ = prepare("territories", SAMPLE / "territories.geojson")
    acc, _ = prepare("accounts", SAMPLE / "accounts.geojson")
    doc = json.loads(acc)
    doc["features"] = [f for f in doc["features"] if f["properties"]["kind"] != "home"]
    customers = orjson.dumps(doc)
    places = tmp_path / "places.csv"
    places.write_text("place_id,kind,rep_id,radius_m,lat,lon\n"
                      "H-x,home,rep-0001,80,52.40,13.20\n", encoding="utf-8")
    body, _ = prepare("places", places)
    roster = tmp_path / "roster.csv"
    roster.write_text("rep_id,team,tz\nrep-0001,North,Asia/Tokyo\n", encoding="utf-8")
    rbody, _ = prepare("reps", roster)
    idx = build_index({"territories": (1, terr), "accounts": (5, customers),
                       "places": (3, body), "reps": (4, rbody)})
    assert idx is not None and idx.version == 5
    p = idx.rep_profile("rep-0001")
    assert p.home is not None and p.home.account_id == "H-x"
    assert (p.tz, p.tz_source) == ("Asia/Tokyo", "roster")
    assert idx.roster["rep-0001"].team == "North"
    assert idx.rep_profile("rep-0002").home is None  # its home was in the old accounts only
