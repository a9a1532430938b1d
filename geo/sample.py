"""Deterministic sample data: territories and accounts over a Berlin-sized metro area.

Run ``python -m geo.sample --out data/sample`` to (re)write ``territories.geojson`` and
``accounts.geojson``. The same seed always gives byte-identical files.

Territories are Voronoi cells clipped to the area, with every shared edge replaced by the
same seeded wiggly line on both sides, so they look drawn by hand yet tile the area with
no gaps or overlaps. :func:`wiggly_tiling` is reused by the benchmark (with ~200 vertices
per polygon).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geo.metric import local_distance_m, metres_per_degree

BERLIN = (13.0, 52.3, 13.8, 52.7)  # lon/lat bounds of the sample area
SEED = 20240501
N_TERRITORIES, N_REGIONS, REPS_PER_TERRITORY = 50, 5, 5
N_CUSTOMERS = 2000
MIN_GAP_M = 250.0
REGION_NAMES = ("West", "North-West", "Central", "North-East", "East")
_SURNAMES = ("Schmidt", "Mueller", "Schneider", "Fischer", "Weber", "Meyer", "Wagner",
             "Becker", "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Neumann",
             "Schwarz", "Braun", "Zimmermann", "Krueger", "Hartmann", "Lange", "Werner")
_TRADES = ("Hardware", "Pharmacy", "Bakery", "Garage", "Florist", "Kiosk", "Office Supplies",
           "Electrics", "Pet Shop", "Opticians", "Bike Shop", "Deli", "Wine Store", "Salon")


def _round(geom: BaseGeometry) -> BaseGeometry:
    return shapely.transform(geom, lambda xy: np.round(xy, 6))


def _wiggle(a: tuple[float, float], b: tuple[float, float], k: int, amp: float,
            seed: int) -> list[tuple[float, float]]:
    """``k`` interior points of a smooth seeded curve from ``a`` to ``b`` (a < b)."""
    key = [round(v * 1e6) % (1 << 31) for v in (*a, *b)]
    rng = np.random.default_rng([seed, *key])
    t = np.linspace(0.0, 1.0, k + 2)[1:-1]
    h1, h2 = rng.uniform(-1, 1, 2)
    ph = rng.uniform(0, 2 * np.pi)
    off = amp * np.sin(np.pi * t) * (h1 + 0.5 * h2 * np.sin(2 * np.pi * t + ph))
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    # Perpendicular in a locally isotropic frame (a degree of longitude is shorter).
    kx = float(metres_per_degree(ay)[0] / metres_per_degree(ay)[1])
    px, py = -dy / kx, dx * kx
    return [(ax + dx * ti + px * oi, ay + dy * ti + py * oi)
            for ti, oi in zip(t, off, strict=True)]


def wiggly_tiling(
    bounds: tuple[float, float, float, float], n: int, *, seed: int,
    points_per_edge: int = 5, amplitude: float = 0.08,
) -> tuple[list[BaseGeometry], np.ndarray]:
    """``n`` polygons tiling ``bounds`` exactly, and their Voronoi seed points (n, 2).

    Examples
    --------
    >>> polys, seeds = wiggly_tiling((0.0, 0.0, 1.0, 1.0), 10, seed=1)
    >>> len(polys), all(p.is_valid for p in polys), round(sum(p.area for p in polys), 9)
    (10, True, 1.0)
    """
    rng = np.random.default_rng(seed)
    xmin, ymin, xmax, ymax = bounds
    frame = shapely.box(*bounds)
    pts = np.column_stack([rng.uniform(xmin, xmax, n), rng.uniform(ymin, ymax, n)])
    for _ in range(2):  # Lloyd relaxation: rounder, more even cells
        pts = shapely.get_coordinates(shapely.centroid(_voronoi(pts, frame)))
    cells = [_round(c) for c in _voronoi(pts, frame)]
    for attempt in range(6):
        amp = amplitude / (2**attempt)
        polys = [_wiggle_polygon(c, bounds, points_per_edge, amp, seed) for c in cells]
        total = sum(p.area for p in polys)
        if all(p.is_valid for p in polys) and abs(total - frame.area) < 1e-9 * frame.area:
            return polys, pts
    return cells, pts


def _voronoi(pts: np.ndarray, frame: BaseGeometry) -> np.ndarray:
    vor = shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=frame, ordered=True)
    return shapely.intersection(shapely.get_parts(vor), frame)


def _wiggle_polygon(cell: BaseGeometry, bounds: tuple[float, float, float, float], k: int,
                    amp: float, seed: int) -> BaseGeometry:
    ring = [tuple(c) for c in np.asarray(cell.exterior.coords)]
    xmin, ymin, xmax, ymax = (round(v, 6) for v in bounds)
    out: list[tuple[float, float]] = []
    for p, q in itertools.pairwise(ring):
        out.append(p)
        on_frame = ((p[0] == q[0] and p[0] in (xmin, xmax))
                    or (p[1] == q[1] and p[1] in (ymin, ymax)))
        if on_frame:
            continue
        a, b = (p, q) if p < q else (q, p)
        mid = _wiggle(a, b, k, amp, seed)
        out.extend(mid if a == p else mid[::-1])
    out.append(out[0])
    return _round(shapely.Polygon(out))


def _feature(geom: BaseGeometry, props: dict[str, Any]) -> str:
    return json.dumps({"type": "Feature", "properties": props,
                       "geometry": shapely.geometry.mapping(geom)}, separators=(",", ":"))


def _write(path: Path, features: list[str]) -> None:
    path.write_text('{"type":"FeatureCollection","features":[\n' + ",\n".join(features)
                    + "\n]}\n", encoding="utf-8")


class _Darts:
    """Places kept at least ``gap_m`` apart (a grid hash makes each check O(1))."""

    def __init__(self, gap_m: float, lat0: float) -> None:
        self.gap = gap_m
        mx, my = metres_per_degree(lat0)
        self.cx, self.cy = gap_m / float(mx), gap_m / float(my)
        self.cells: dict[tuple[int, int], list[tuple[float, float]]] = {}

    def try_add(self, lon: float, lat: float) -> bool:
        i, j = int(lon // self.cx), int(lat // self.cy)
        near = [p for di in (-1, 0, 1) for dj in (-1, 0, 1)
                for p in self.cells.get((i + di, j + dj), ())]
        if near:
            arr = np.array(near)
            if (local_distance_m(lon, lat, arr[:, 0], arr[:, 1]) < self.gap).any():
                return False
        self.cells.setdefault((i, j), []).append((lon, lat))
        return True


def _sample_in(geom: BaseGeometry, rng: np.random.Generator, darts: _Darts) -> tuple[float, float]:
    xmin, ymin, xmax, ymax = geom.bounds
    for _ in range(10_000):
        x, y = round(rng.uniform(xmin, xmax), 6), round(rng.uniform(ymin, ymax), 6)
        if geom.contains(shapely.Point(x, y)) and darts.try_add(x, y):
            return x, y
    raise RuntimeError("could not place a point")  # pragma: no cover - area is ample


def generate(out: Path, seed: int = SEED) -> tuple[Path, Path]:
    """Write ``territories.geojson`` and ``accounts.geojson`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    polys, seeds = wiggly_tiling(BERLIN, N_TERRITORIES, seed=seed)
    per_region = N_TERRITORIES // N_REGIONS
    # Regions are west-to-east bands; inside a region territories run north to south.
    by_x = np.argsort(seeds[:, 0], kind="stable")
    order = [int(i) for r in range(N_REGIONS)
             for i in sorted(by_x[r * per_region:(r + 1) * per_region], key=lambda i: -seeds[i, 1])]
    terr_feats, territories = [], []
    for n, i in enumerate(order):
        r = n // per_region
        tid = f"T{n + 1:02d}"
        reps = [f"rep-{n * REPS_PER_TERRITORY + k + 1:04d}" for k in range(REPS_PER_TERRITORY)]
        territories.append((tid, f"R{r + 1}", polys[i], reps))
        terr_feats.append(_feature(polys[i], {
            "territory_id": tid, "name": f"{REGION_NAMES[r]} {n % per_region + 1}",
            "region": f"R{r + 1}", "assigned_reps": reps, "tz": "Europe/Berlin",
        }))

    rng = np.random.default_rng(seed + 1)
    darts = _Darts(MIN_GAP_M, (BERLIN[1] + BERLIN[3]) / 2)
    acc_feats: list[str] = []

    def add(aid: str, name: str, kind: str, radius: float, x: float, y: float,
            tid: str | None, rep: str | None = None) -> None:
        props: dict[str, Any] = {"account_id": aid, "name": name, "kind": kind,
                                 "radius_m": radius, "territory_id": tid}
        if rep is not None:
            props["rep_id"] = rep
        acc_feats.append(_feature(shapely.Point(x, y), props))

    for r in range(N_REGIONS):
        region = [t for t in territories if t[1] == f"R{r + 1}"]
        hub = region[len(region) // 2]  # a middle territory of the band
        x, y = _sample_in(hub[2].buffer(-0.005), rng, darts)
        add(f"O{r + 1:02d}", f"{REGION_NAMES[r]} regional office", "office", 150.0, x, y, hub[0])
    for tid, _, poly, reps in territories:
        for rep in reps:
            x, y = _sample_in(poly, rng, darts)
            add(f"H{int(rep[4:]):04d}", f"Home of {rep}", "home", 100.0, x, y, tid, rep)
    tree = shapely.STRtree([t[2] for t in territories])
    frame = shapely.box(*BERLIN)
    radii = np.array([100.0, 50.0, 75.0, 150.0, 200.0])
    for n in range(N_CUSTOMERS):
        x, y = _sample_in(frame, rng, darts)
        hit = tree.query(shapely.Point(x, y), predicate="intersects")
        cust_tid = territories[int(hit.min())][0] if hit.size else None
        radius = float(radii[0] if rng.random() < 0.8 else rng.choice(radii[1:]))
        name = f"{_SURNAMES[rng.integers(len(_SURNAMES))]} {_TRADES[rng.integers(len(_TRADES))]}"
        add(f"A{n + 1:04d}", name, "customer", radius, x, y, cust_tid)

    t_path, a_path = out / "territories.geojson", out / "accounts.geojson"
    _write(t_path, terr_feats)
    _write(a_path, acc_feats)
    return t_path, a_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/sample"))
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    for path in generate(args.out, args.seed):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
