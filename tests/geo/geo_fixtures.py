"""Small territory/account frames for the geo tests; tests write them to tmp_path in each
format at test time, so no binary fixtures live in git. (Not a conftest: a plain module
with a unique name cannot clash with other test directories' conftest modules.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
from shapely import Point, Polygon, box

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"


def territories_frame(assigned: str = "list") -> gpd.GeoDataFrame:
    """Three Berlin-ish squares; T2 overlaps T1 and has a priority."""
    reps: list[Any] = [["rep-1", "rep-2"], ["rep-3"], []]
    if assigned == "json":
        reps = ['["rep-1", "rep-2"]', '["rep-3"]', None]
    elif assigned == "csv":
        reps = ["rep-1, rep-2", "rep-3", None]
    return gpd.GeoDataFrame(
        {
            "territory_id": ["T1", "T2", "T3"],
            "name": ["One", "Two", "Three"],
            "region": ["R1", "R1", "R2"],
            "assigned_reps": reps,
            "tz": ["Europe/Berlin", "Europe/Berlin", None],
            "priority": [None, 5, None],
        },
        geometry=[box(13.0, 52.0, 13.2, 52.2), box(13.1, 52.1, 13.3, 52.3),
                  box(14.0, 52.0, 14.1, 52.1)],
        crs="EPSG:4326",
    )


def accounts_frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "account_id": ["A1", "A2", "H1"],
            "name": ["Shop", "Office", "Home"],
            "kind": ["customer", "office", "home"],
            "radius_m": [100.0, 150.0, None],
            "territory_id": ["T1", None, None],
            "rep_id": [None, None, "rep-1"],
        },
        geometry=[Point(13.05, 52.05), Point(13.25, 52.25), Point(13.15, 52.02)],
        crs="EPSG:4326",
    )


BOWTIE = Polygon([(13.5, 52.5), (13.6, 52.6), (13.6, 52.5), (13.5, 52.6)])
