"""Loading territories and accounts from every supported format, with repair and rejection."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from geo_fixtures import BOWTIE, SAMPLE, accounts_frame, territories_frame
from shapely import LineString, Point, Polygon

from geo import GeoError, GeoLoadError, load_accounts, load_territories
from geo.metric import local_distance_m

# Writing the fixtures (not loading them) makes GDAL warn about Shapefile's limits.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Column names longer than 10:UserWarning"),
    pytest.mark.filterwarnings("ignore:Normalized/laundered field name:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:'crs' was not provided:UserWarning"),
]


def _check_basic(frame: gpd.GeoDataFrame) -> None:
    assert list(frame["territory_id"]) == ["T1", "T2", "T3"]
    assert frame.crs.equals("EPSG:4326")
    assert frame.loc[0, "assigned_reps"] == ("rep-1", "rep-2")
    assert frame.loc[2, "assigned_reps"] == ()
    assert list(frame["tz"]) == ["Europe/Berlin", "Europe/Berlin", "UTC"]
    assert frame.loc[1, "priority"] == 5 and frame["priority"].isna().sum() == 2
    assert list(frame["region"]) == ["R1", "R1", "R2"]


def test_geojson(tmp_path: Path) -> None:
    path = tmp_path / "t.geojson"
    territories_frame("list").to_file(path, driver="GeoJSON")
    frame, report = load_territories(path)
    _check_basic(frame)
    assert report.loaded == 3 and report.ok and not report.repaired
    assert any("defaulted to UTC: T3" in w for w in report.warnings)


def test_geopackage_json_list_column(tmp_path: Path) -> None:
    path = tmp_path / "t.gpkg"
    territories_frame("json").to_file(path, driver="GPKG", layer="territories")
    frame, report = load_territories(path)
    _check_basic(frame)
    assert report.ok


def test_shapefile_comma_list_and_truncated_names(tmp_path: Path) -> None:
    path = tmp_path / "t.shp"
    territories_frame("csv").to_file(path, driver="ESRI Shapefile")  # names cut to 10 chars
    assert "territory_" in gpd.read_file(path).columns
    frame, report = load_territories(path)
    _check_basic(frame)
    assert report.ok


def test_other_crs_is_reprojected(tmp_path: Path) -> None:
    src = territories_frame()
    path = tmp_path / "utm.gpkg"
    src.to_crs("EPSG:25833").to_file(path, driver="GPKG")
    frame, report = load_territories(path)
    assert report.source_crs == "EPSG:25833"
    assert frame.crs.equals("EPSG:4326")
    a = shapely.get_coordinates(frame.geometry.array)
    b = shapely.get_coordinates(src.geometry.array)
    assert np.abs(a - b).max() < 1e-7

    path = tmp_path / "merc.geojson"
    src.to_crs("EPSG:3857").to_file(path, driver="GeoJSON")
    frame, _ = load_territories(path)
    assert np.abs(shapely.get_coordinates(frame.geometry.array) - b).max() < 1e-7


def test_no_crs_assumes_4326_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "nocrs.shp"
    src = territories_frame().drop(columns=["assigned_reps"]).set_crs(None, allow_override=True)
    src.to_file(path)
    assert not path.with_suffix(".prj").exists()
    frame, report = load_territories(path)
    assert len(frame) == 3
    assert "no CRS: assumed EPSG:4326 (longitude, latitude)" in report.warnings


def test_no_crs_with_projected_coordinates_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nocrs_m.shp"
    territories_frame().drop(columns=["assigned_reps"]).to_crs("EPSG:25833").set_crs(
        None, allow_override=True).to_file(path)
    with pytest.raises(GeoLoadError, match="not longitude/latitude"):
        load_territories(path)


def test_bowtie_is_repaired_and_reported() -> None:
    gdf = territories_frame()
    gdf.loc[2, "geometry"] = BOWTIE
    frame, report = load_territories(gdf)
    assert report.loaded == 3
    assert [i.ref for i in report.repaired] == ["T3"]
    assert "Self-intersection" in report.repaired[0].reason
    fixed = frame.geometry.iloc[2]
    assert fixed.is_valid and fixed.geom_type == "MultiPolygon"
    assert fixed.area == pytest.approx(0.005)  # two triangles of the bow-tie


def test_bad_geometries_are_rejected_with_reasons() -> None:
    gdf = gpd.GeoDataFrame(
        {"territory_id": ["ok", "empty", "point", "line", "null", "flat"]},
        geometry=[shapely.box(0, 0, 1, 1), Polygon(), Point(1, 1),
                  LineString([(0, 0), (1, 1)]), None,
                  Polygon([(0, 0), (1, 1), (2, 2), (0, 0)])],
        crs="EPSG:4326",
    )
    frame, report = load_territories(gdf)
    assert list(frame["territory_id"]) == ["ok"]
    reasons = dict(report.rejected)
    assert reasons["empty"] == "empty geometry"
    assert reasons["point"] == "geometry type Point is not polygonal"
    assert reasons["line"] == "geometry type LineString is not polygonal"
    assert reasons["null"] == "null geometry"
    assert "no area after repair" in reasons["flat"]


def test_attribute_problems_are_rejected() -> None:
    gdf = gpd.GeoDataFrame(
        {"territory_id": ["A", "A", None, "B", "C", "D"],
         "tz": ["UTC", "UTC", "UTC", "Europe/Berln", "UTC", "UTC"],
         "priority": [1, 1, 1, 1, "high", 2.5]},
        geometry=[shapely.box(0, 0, 1, 1)] * 6, crs="EPSG:4326",
    )
    frame, report = load_territories(gdf)
    assert list(frame["territory_id"]) == ["A"]
    assert report.rejected == [
        ("A", "duplicate territory_id (feature #1; first at #0)"),
        ("#2", "missing territory_id"),
        ("B", "unknown time zone 'Europe/Berln'"),
        ("C", "priority must be an integer, got 'high'"),
        ("D", "priority must be an integer, got 2.5"),
    ]
    with pytest.raises(GeoLoadError, match="strict load failed") as exc:
        load_territories(gdf, strict=True)
    assert exc.value.report is not None and len(exc.value.report.rejected) == 5


def test_unusable_sources_raise(tmp_path: Path) -> None:
    with pytest.raises(GeoLoadError, match="no such file"):
        load_territories(tmp_path / "missing.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(GeoLoadError, match="cannot read"):
        load_territories(bad)
    with pytest.raises(GeoLoadError, match="no territory_id column"):
        load_territories(territories_frame().rename(columns={"territory_id": "tid"}))
    only_points = gpd.GeoDataFrame({"territory_id": ["P"]}, geometry=[Point(0, 0)], crs=4326)
    with pytest.raises(GeoLoadError, match="no usable territories") as exc:
        load_territories(only_points)
    assert isinstance(exc.value, ValueError) and isinstance(exc.value, GeoError)
    gpkg = tmp_path / "two.gpkg"
    territories_frame().to_file(gpkg, layer="a")
    territories_frame().to_file(gpkg, layer="b")
    with pytest.raises(GeoLoadError, match="several layers"):
        load_territories(gpkg)
    assert len(load_territories(gpkg, layer="b").frame) == 3
    csv = tmp_path / "t.csv"
    csv.write_text("territory_id,lat,lon\nT1,1,1\n")
    with pytest.raises(GeoLoadError, match="CSV holds points only"):
        load_territories(csv)


def test_geojson_mapping_source() -> None:
    fc = json.loads(territories_frame().to_json())
    frame, _ = load_territories(fc)
    _check_basic(frame)
    with pytest.raises(GeoLoadError, match="not a GeoJSON FeatureCollection"):
        load_territories({"type": "Feature"})


# -- accounts ---------------------------------------------------------------------------------
def test_accounts_geojson_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "a.geojson"
    accounts_frame().to_file(path, driver="GeoJSON")
    frame, report = load_accounts(path)
    assert report.ok and report.loaded == 3
    assert list(frame["kind"]) == ["customer", "office", "home"]
    assert list(frame["radius_m"]) == [100.0, 150.0, 100.0]
    assert frame.loc[2, "rep_id"] == "rep-1"
    assert frame.loc[1, "territory_id"] is None


def test_accounts_gpkg_and_shapefile(tmp_path: Path) -> None:
    for name in ("a.gpkg", "a.shp"):
        path = tmp_path / name
        accounts_frame().to_file(path)
        frame, report = load_accounts(path)
        assert report.ok, report.summary()
        assert list(frame["account_id"]) == ["A1", "A2", "H1"]


def test_accounts_csv(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(
        "account_id,name,Latitude,Longitude,kind,radius_m,rep_id\n"
        "0007,Shop,52.5,13.4,,,\n"
        "0008,Home,52.51,13.41,home,80,rep-9\n"
        "0009,Bad,north,13.4,,,\n"
        "0010,Far,52.5,13.4,,6000,\n"
        "0011,Zero,52.5,13.4,,0,\n"
        "0012,Kind,52.5,13.4,warehouse,,\n"
        "0013,Homeless,52.5,13.4,home,,\n"
        "0007,Again,52.5,13.4,,,\n"
    )
    frame, report = load_accounts(path)
    assert list(frame["account_id"]) == ["0007", "0008"]  # ids stay text: leading zeros kept
    assert frame.loc[0, "kind"] == "customer" and frame.loc[0, "radius_m"] == 100.0
    assert frame.loc[1, "radius_m"] == 80.0
    assert frame.geometry.iloc[1].equals(Point(13.41, 52.51))
    assert report.rejected == [
        ("0009", "null geometry (no coordinates)"),
        ("0010", "radius_m '6000' is outside (0, 5000]"),
        ("0011", "radius_m '0' is outside (0, 5000]"),
        ("0012", "kind 'warehouse' is not one of customer, office, home"),
        ("0013", "kind home needs a rep_id"),
        ("0007", "duplicate account_id (feature #7; first at #0)"),
    ]
    nolat = tmp_path / "nolat.csv"
    nolat.write_text("account_id,x1,y1\nA,1,2\n")
    with pytest.raises(GeoLoadError, match="needs lat and lon"):
        load_accounts(nolat)


def test_accounts_reject_non_points() -> None:
    gdf = accounts_frame()
    gdf.loc[0, "geometry"] = shapely.box(0, 0, 1, 1)
    gdf.loc[1, "geometry"] = shapely.MultiPoint([(13.3, 52.3)])
    frame, report = load_accounts(gdf)
    assert report.rejected == [("A1", "geometry type Polygon is not a point")]
    assert report.repaired == [("A2", "one-point MultiPoint taken as a Point")]
    assert frame.geometry.iloc[0].geom_type == "Point"


def test_two_homes_for_one_rep_warns() -> None:
    gdf = accounts_frame()
    gdf.loc[0, ["kind", "rep_id"]] = ["home", "rep-1"]
    _, report = load_accounts(gdf)
    assert report.warnings == ["rep rep-1 has 2 homes (A1, H1); the index uses A1"]


# -- the committed sample ------------------------------------------------------------------------
def test_sample_data_loads_clean() -> None:
    terr, t_report = load_territories(SAMPLE / "territories.geojson", strict=True)
    acc, a_report = load_accounts(SAMPLE / "accounts.geojson", strict=True)
    assert t_report.ok and not t_report.repaired and not t_report.warnings
    assert a_report.ok and not a_report.repaired and not a_report.warnings
    assert len(terr) == 50 and list(terr["territory_id"]) == [f"T{i:02d}" for i in range(1, 51)]
    assert set(terr["region"]) == {"R1", "R2", "R3", "R4", "R5"}
    assert set(terr["tz"]) == {"Europe/Berlin"}
    reps = [r for t in terr["assigned_reps"] for r in t]
    assert reps == [f"rep-{i:04d}" for i in range(1, 251)]
    assert terr.loc[0, "assigned_reps"] == tuple(f"rep-000{i}" for i in range(1, 6))
    union = shapely.union_all(terr.geometry.array)
    assert union.geom_type == "Polygon"  # tiles the area: no gaps ...
    assert sum(g.area for g in terr.geometry) == pytest.approx(union.area, rel=1e-9)  # no overlaps
    vertices = [len(shapely.get_coordinates(g)) for g in terr.geometry]
    assert min(vertices) >= 10 and max(vertices) <= 80
    kinds = acc["kind"].value_counts().to_dict()
    assert kinds == {"customer": 2000, "home": 250, "office": 5}
    cust = acc[acc["kind"] == "customer"]
    assert (cust["radius_m"] == 100).mean() > 0.7
    assert cust["radius_m"].between(50, 200).all()
    x, y = cust.geometry.x.to_numpy(), cust.geometry.y.to_numpy()
    near = [local_distance_m(x[i], y[i], np.delete(x, i), np.delete(y, i)).min()
            for i in range(0, len(x), 7)]
    assert min(near) >= 250.0
    homes = acc[acc["kind"] == "home"]
    assert sorted(homes["rep_id"]) == [f"rep-{i:04d}" for i in range(1, 251)]
