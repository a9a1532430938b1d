"""GeoIndex: overlap rule, equivalence with a naive loop, metric geofences, profiles."""

from __future__ import annotations

import dataclasses
import threading

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from geo_fixtures import SAMPLE, accounts_frame, territories_frame
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import Point, box

from geo import GeoIndex, GeoIndexError, load_accounts, load_index, load_territories
from geo.overlap import primary_rank

GEOD = pyproj.Geod(ellps="WGS84")


def _index(territories: gpd.GeoDataFrame, accounts: gpd.GeoDataFrame | None = None) -> GeoIndex:
    t, _ = load_territories(territories)
    a = load_accounts(accounts).frame if accounts is not None else None
    return GeoIndex.build(t, a, version=3)


# -- overlap rule ---------------------------------------------------------------------------------
def test_overlap_priority_wins_over_area() -> None:
    idx = _index(territories_frame())  # T2 (priority 5) overlaps T1 (no priority)
    res = idx.lookup([13.15, 13.05, 13.25], [52.15, 52.05, 52.25])
    assert res.territory_id.tolist() == ["T2", "T1", "T2"]
    assert idx.territories_of(13.15, 52.15) == ("T2", "T1")


def test_overlap_smallest_area_then_id() -> None:
    gdf = gpd.GeoDataFrame(
        {"territory_id": ["big", "small", "b-twin", "a-twin"]},
        geometry=[box(0, 0, 10, 10), box(4, 4, 6, 6), box(20, 0, 22, 2), box(20, 0, 22, 2)],
        crs="EPSG:4326",
    )
    idx = _index(gdf)
    res = idx.lookup([5.0, 1.0, 21.0], [5.0, 1.0, 1.0])
    assert res.territory_id.tolist() == ["small", "big", "a-twin"]
    assert idx.territories_of(5, 5) == ("small", "big")
    assert idx.territories_of(21, 1) == ("a-twin", "b-twin")


def test_primary_rank_rule() -> None:
    rank = primary_rank(["c", "b", "a", "d"], [None, 1, 1, None], [1.0, 5.0, 5.0, 0.5])
    assert [["c", "b", "a", "d"][i] for i in np.argsort(rank)] == ["a", "b", "d", "c"]


# -- lookup equals a naive per-point shapely loop ---------------------------------------------
def _naive(idx: GeoIndex, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, list[set[int]]]:
    best = np.full(len(x), -1)
    matches: list[set[int]] = []
    for k, (px, py) in enumerate(zip(x, y, strict=True)):
        hits = {i for i, p in enumerate(idx.polygons) if p.intersects(Point(px, py))}
        matches.append(hits)
        if hits:
            best[k] = min(hits, key=lambda i: idx.rank[i])
    return best, matches


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_poly=st.integers(1, 25), lat0=st.sampled_from(
    [-60.0, 0.0, 45.0, 60.0, 78.0]))
def test_lookup_matches_naive_loop(seed: int, n_poly: int, lat0: float) -> None:
    rng = np.random.default_rng(seed)
    cx, cy = rng.uniform(-1, 1, n_poly) + 10, rng.uniform(-0.5, 0.5, n_poly) + lat0
    polys = [shapely.Point(a, b).buffer(r, quad_segs=rng.integers(2, 12))
             for a, b, r in zip(cx, cy, rng.uniform(0.05, 0.6, n_poly), strict=True)]
    polys[0] = box(9.0, lat0 - 1, 11.0, lat0 + 1).difference(box(9.5, lat0 - 0.5, 10.5, lat0))
    reps = [tuple(f"r{j}" for j in rng.choice(5, rng.integers(0, 3), replace=False))
            for _ in polys]
    gdf = gpd.GeoDataFrame(
        {"territory_id": [f"T{i}" for i in range(n_poly)], "assigned_reps": reps,
         "priority": [int(p) if p >= 0 else None for p in rng.integers(-3, 3, n_poly)]},
        geometry=polys, crs="EPSG:4326")
    idx = _index(gdf)
    n = 400
    x, y = rng.uniform(8.5, 11.5, n), rng.uniform(lat0 - 1.2, lat0 + 1.2, n)
    verts = shapely.get_coordinates(np.array(polys, dtype=object))
    take = rng.choice(len(verts), 40)
    x[:40], y[:40] = verts[take, 0], verts[take, 1]  # exactly on boundaries
    x[40], y[40] = np.nan, lat0
    point_reps = np.array([f"r{j}" for j in rng.integers(0, 6, n)], dtype=object)
    point_reps[41] = None
    res = idx.lookup(x, y, point_reps)
    best, matches = _naive(idx, x, y)
    np.testing.assert_array_equal(res.territory_idx, best)
    for k in range(n):
        if best[k] < 0 or point_reps[k] is None:
            assert res.in_assigned_territory[k] is None
        else:
            expected = any(point_reps[k] in reps[i] for i in matches[k])
            assert res.in_assigned_territory[k] is expected, k


def test_lookup_rep_ids_forms() -> None:
    idx = _index(territories_frame())
    lon, lat = [13.05, 13.25, 14.05, 0.0], [52.05, 52.25, 52.05, 0.0]
    assert idx.lookup(lon, lat).in_assigned_territory.tolist() == [None] * 4
    assert idx.lookup(lon, lat, "rep-1").in_assigned_territory.tolist() == [
        True, False, False, None]
    # rep-1 is assigned to T1 only; at (13.15, 52.15) T2 is primary but T1 holds it too
    res = idx.lookup([13.15] * 3, [52.15] * 3, ["rep-1", "rep-3", None])
    assert res.territory_id.tolist() == ["T2"] * 3
    assert res.in_assigned_territory.tolist() == [True, True, None]
    with pytest.raises(ValueError, match="rep_ids has 1 entries for 3 points"):
        idx.lookup([1, 2, 3], [1, 2, 3], ["x"])
    with pytest.raises(ValueError, match="differ in length"):
        idx.lookup([1, 2], [1])


# -- accounts in metres ----------------------------------------------------------------------------
@pytest.mark.parametrize("lat", [0.0, 45.0, 60.0, -60.0, 80.0])
@pytest.mark.parametrize("radius", [50.0, 1000.0, 5000.0])
def test_account_radius_in_metres(lat: float, radius: float) -> None:
    terr = gpd.GeoDataFrame({"territory_id": ["T"]}, geometry=[box(-20, -85, 40, 85)], crs=4326)
    acc = gpd.GeoDataFrame({"account_id": ["A"], "radius_m": [radius]},
                           geometry=[Point(10.0, lat)], crs=4326)
    idx = _index(terr, acc)
    az = np.arange(0, 360, 15.0)
    lons, lats = [], []
    for f in (0.995, 1.005):  # just inside / just outside, by geodesic distance
        lo, la, _ = GEOD.fwd(np.full(az.size, 10.0), np.full(az.size, lat), az,
                             np.full(az.size, f * radius))
        lons += list(lo)
        lats += list(la)
    res = idx.lookup(np.array(lons), np.array(lats))
    n = az.size
    assert res.account_id[:n].tolist() == ["A"] * n
    assert res.account_id[n:].tolist() == [None] * n
    assert np.isnan(res.account_distance_m[n:]).all()
    _, _, true = GEOD.inv(np.full(n, 10.0), np.full(n, lat), np.array(lons[:n]),
                          np.array(lats[:n]))
    np.testing.assert_allclose(res.account_distance_m[:n], true, rtol=1e-4)


def test_nearest_of_overlapping_geofences_and_ties() -> None:
    terr = gpd.GeoDataFrame({"territory_id": ["T"]}, geometry=[box(13, 52, 14, 53)], crs=4326)
    acc = gpd.GeoDataFrame(
        {"account_id": ["B", "A", "C", "D"], "radius_m": [500.0, 500.0, 100.0, 5000.0],
         "kind": ["customer", "office", "customer", "home"], "rep_id": [None, None, None, "r"]},
        geometry=[Point(13.5, 52.5), Point(13.5, 52.5), Point(13.5, 52.501),
                  Point(13.9, 52.9)], crs=4326)
    idx = _index(terr, acc)
    res = idx.lookup([13.5, 13.5, 13.5], [52.5, 52.5008, 52.52])
    # same spot: tie broken by account_id; closer to C (inside its 100 m): C
    assert res.account_id.tolist() == ["A", "C", None]
    assert res.account_kind.tolist() == ["office", "customer", None]
    hit = idx.nearest_account(13.5, 52.5008)
    assert hit is not None and hit.place.account_id == "C"
    assert hit.distance_m == pytest.approx(22.25, abs=0.05)
    assert idx.nearest_account(0.0, 0.0) is None


# -- profiles, time zones, sample ------------------------------------------------------------------
def test_rep_profile_and_tz() -> None:
    idx = _index(territories_frame(), accounts_frame())
    p = idx.rep_profile("rep-1")
    assert p.territory_ids == ("T1",) and p.tz == "Europe/Berlin"
    assert p.home is not None and p.home.account_id == "H1" and p.home.lon == 13.15
    unknown = idx.rep_profile("nobody")
    assert unknown.territory_ids == () and unknown.tz == "UTC" and unknown.home is None
    assert idx.territory_tz("T3") == "UTC" and idx.territory_region("T2") == "R1"
    assert idx.rep_ids() == ("rep-1", "rep-2", "rep-3")
    with pytest.raises(KeyError):
        idx.territory_tz("nope")
    # accounts without territory_id get the primary territory they lie in
    assert idx.place("A2").territory_id == "T2" and idx.place("H1").territory_id == "T1"


def test_sample_index() -> None:
    idx, reports = load_index(SAMPLE / "territories.geojson", SAMPLE / "accounts.geojson",
                              version=1, strict=True)
    assert all(r.ok for r in reports) and idx.warnings == ()
    acc = idx.accounts
    res = idx.lookup(acc.lon, acc.lat)
    assert (res.territory_id == acc.territory_id).all()  # the file's territory_id is right
    assert (res.account_id == acc.account_id).all()  # each place is its own nearest
    for i in range(1, 251):
        p = idx.rep_profile(f"rep-{i:04d}")
        assert p.territory_ids == (f"T{(i - 1) // 5 + 1:02d}",) and p.tz == "Europe/Berlin"
        assert p.home is not None and p.home.territory_id == p.territory_ids[0]


def test_records_validate_as_enrichment() -> None:
    from schemas.derived import Enrichment

    idx = _index(territories_frame(), accounts_frame())
    res = idx.lookup([13.05, 50.0], [52.05, 0.0], ["rep-1", "rep-1"])
    recs = res.records()
    assert recs[0] == {"territory_id": "T1", "region": "R1", "in_assigned_territory": True,
                       "account_id": "A1", "account_distance_m": 0.0, "geo_version": 3}
    assert recs[1]["territory_id"] is None and recs[1]["account_distance_m"] is None
    assert Enrichment(**recs[0]).account_id == "A1"


# -- immutability and threads ----------------------------------------------------------------------
def test_index_is_immutable() -> None:
    idx = _index(territories_frame(), accounts_frame())
    with pytest.raises(dataclasses.FrozenInstanceError):
        idx.version = 4  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        idx.territory_ids[0] = "X"
    with pytest.raises(ValueError, match="read-only"):
        idx.grid.cell_class[0] = 1
    with pytest.raises(TypeError):
        idx._rep_territories["x"] = ()  # type: ignore[index]


def test_concurrent_lookups_agree() -> None:
    idx, _ = load_index(SAMPLE / "territories.geojson", SAMPLE / "accounts.geojson")
    rng = np.random.default_rng(1)
    x, y = rng.uniform(12.95, 13.85, 50_000), rng.uniform(52.25, 52.75, 50_000)
    expected = idx.lookup(x, y, "rep-0001")
    errors: list[str] = []

    def work() -> None:
        for _ in range(5):
            r = idx.lookup(x, y, "rep-0001")
            if not ((r.territory_idx == expected.territory_idx).all()
                    and (r.account_idx == expected.account_idx).all()):
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_build_rejects_bad_frames() -> None:
    t = territories_frame()
    with pytest.raises(GeoIndexError, match="not unique"):
        GeoIndex.build(t.assign(territory_id=["A", "A", "B"]))
    with pytest.raises(GeoIndexError, match="no territories"):
        GeoIndex.build(t.iloc[:0])
