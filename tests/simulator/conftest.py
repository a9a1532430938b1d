"""A tiny synthetic world (4 square territories near Berlin) for the simulator tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

LAT0, LON0 = 52.40, 13.20
SIZE_LAT, SIZE_LON = 0.18, 0.30  # about 20 x 20 km per territory


def write_world(root: Path, grid: int = 2, reps_per_territory: int = 5) -> Path:
    rng = random.Random(7)
    territories, accounts = [], []
    rep_no = 0
    for row in range(grid):
        for col in range(grid):
            tid = f"T{row * grid + col + 1:02d}"
            lat0, lon0 = LAT0 + row * SIZE_LAT, LON0 + col * SIZE_LON
            ring = [[lon0, lat0], [lon0 + SIZE_LON, lat0], [lon0 + SIZE_LON, lat0 + SIZE_LAT],
                    [lon0, lat0 + SIZE_LAT], [lon0, lat0]]
            reps = []
            for _ in range(reps_per_territory):
                rep_no += 1
                rid = f"rep-{rep_no:04d}"
                reps.append(rid)
                accounts.append(_point(f"H-{rid}", "home", lat0 + rng.random() * SIZE_LAT,
                                       lon0 + rng.random() * SIZE_LON, 40, tid, rid))
            territories.append({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"territory_id": tid, "name": f"Territory {tid}", "region": "East",
                               "assigned_reps": reps, "tz": "Europe/Berlin"},
            })
            for k in range(25):
                accounts.append(_point(f"A-{tid}-{k:03d}", "customer",
                                       lat0 + rng.random() * SIZE_LAT,
                                       lon0 + rng.random() * SIZE_LON, 60, tid, None))
            accounts.append(_point(f"O-{tid}", "office", lat0 + SIZE_LAT / 2,
                                   lon0 + SIZE_LON / 2, 100, tid, None))
    root.mkdir(parents=True, exist_ok=True)
    (root / "territories.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": territories}))
    (root / "accounts.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": accounts}))
    return root


def _point(aid: str, kind: str, lat: float, lon: float, radius: float, tid: str,
           rep_id: str | None) -> dict:
    props = {"account_id": aid, "name": aid, "kind": kind, "radius_m": radius,
             "territory_id": tid}
    if rep_id:
        props["rep_id"] = rep_id
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": props}


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_world(tmp_path_factory.mktemp("world"))
