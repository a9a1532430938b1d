"""Benchmark: GeoIndex.lookup against geopandas.sjoin on the same data, in the same run.

Data: 1,000 territories of ~200 vertices each tiling a 10 x 5 degree area (seeded
Voronoi cells with wiggly shared edges), 1,000,000 points (90 % uniform over the area
plus a 2 % margin, 10 % within a few hundred metres of an account) and 2,000 accounts.

Figures are medians of ``--runs`` runs; each RESULT line reads
``RESULT <name> <value> <unit> baseline=<sjoin value> ratio=<value/baseline>`` and the
figures are merged into ``var/bench/results.json``. ``--quick`` (100k points, 1 run) is for
tests and writes results only when ``--results`` is given.

    python bench/bench_geo.py            # full run, updates var/bench/results.json
    python bench/bench_geo.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import geopandas as gpd
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DEFAULT_RESULTS, merge_results

from geo.index import GeoIndex
from geo.metric import metres_per_degree
from geo.sample import wiggly_tiling

BOUNDS = (5.0, 45.0, 15.0, 50.0)


def make_data(n_territories: int, n_points: int, n_accounts: int, seed: int) -> dict[str, Any]:
    polys, _ = wiggly_tiling(BOUNDS, n_territories, seed=seed, points_per_edge=32,
                             amplitude=0.05)
    ids = [f"T{i:04d}" for i in range(len(polys))]
    reps = [(f"rep-{i:04d}",) for i in range(len(polys))]
    territories = gpd.GeoDataFrame({"territory_id": ids, "assigned_reps": reps},
                                   geometry=polys, crs="EPSG:4326")
    rng = np.random.default_rng(seed)
    xmin, ymin, xmax, ymax = BOUNDS
    alon, alat = rng.uniform(xmin, xmax, n_accounts), rng.uniform(ymin, ymax, n_accounts)
    accounts = gpd.GeoDataFrame(
        {"account_id": [f"A{i:05d}" for i in range(n_accounts)],
         "kind": "customer", "radius_m": rng.choice([50.0, 100.0, 100.0, 200.0], n_accounts)},
        geometry=gpd.points_from_xy(alon, alat), crs="EPSG:4326")
    n_near = n_points // 10
    mx, my = (xmax - xmin) * 0.02, (ymax - ymin) * 0.02
    x = rng.uniform(xmin - mx, xmax + mx, n_points)
    y = rng.uniform(ymin - my, ymax + my, n_points)
    pick = rng.integers(0, n_accounts, n_near)
    kx, ky = metres_per_degree(alat[pick])
    x[:n_near] = alon[pick] + rng.normal(0, 150, n_near) / kx
    y[:n_near] = alat[pick] + rng.normal(0, 150, n_near) / ky
    order = rng.permutation(n_points)
    rep_ids = np.array(reps, dtype=object).reshape(-1)[rng.integers(0, len(polys), n_points)]
    return {"territories": territories, "accounts": accounts, "x": x[order], "y": y[order],
            "rep_ids": rep_ids, "vertices": int(np.mean([len(p.exterior.coords) for p in polys]))}


def timed(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="GeoIndex.lookup vs geopandas.sjoin")
    ap.add_argument("--quick", action="store_true", help="100k points, 1 run, no results file")
    ap.add_argument("--points", type=int, default=None)
    ap.add_argument("--territories", type=int, default=1000)
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args(argv)
    n_points = args.points or (100_000 if args.quick else 1_000_000)
    runs = args.runs or (1 if args.quick else 5)
    results = args.results or (None if args.quick else DEFAULT_RESULTS)

    t0 = time.perf_counter()
    d = make_data(args.territories, n_points, args.accounts, args.seed)
    print(f"data: {len(d['territories'])} territories (~{d['vertices']} vertices), "
          f"{n_points:,} points, {args.accounts:,} accounts "
          f"({time.perf_counter() - t0:.1f}s)")
    x, y = d["x"], d["y"]

    build_s, index = timed(lambda: GeoIndex.build(d["territories"], version=1), 1)
    assert isinstance(index, GeoIndex)
    build_acc_s, index_acc = timed(
        lambda: GeoIndex.build(d["territories"], d["accounts"], version=1), 1)
    assert isinstance(index_acc, GeoIndex)
    print(f"build: {build_s:.2f}s territories, {build_acc_s:.2f}s with accounts; "
          f"grid {index.grid.grid.nx}x{index.grid.grid.ny}, "
          f"boundary cells {index.grid.boundary_fraction:.1%}")

    terr = d["territories"]
    terr.sindex  # noqa: B018 - build sjoin's tree before timing, as GeoIndex.build is excluded
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs="EPSG:4326")
    sjoin_s, joined_out = timed(lambda: gpd.sjoin(pts, terr, predicate="within"), runs)
    sjoin_xy_s, _ = timed(lambda: gpd.sjoin(
        gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs="EPSG:4326"), terr,
        predicate="within"), 1)
    joined = cast(gpd.GeoDataFrame, joined_out)
    lookup_s, res = timed(lambda: index.lookup(x, y), runs)
    acc_s, res_acc = timed(lambda: index_acc.lookup(x, y), runs)
    rep_s, _ = timed(lambda: index_acc.lookup(x, y, d["rep_ids"]), runs)

    # Same answers as sjoin (ids of points inside exactly one territory, which is all of
    # them here: the tiling has no overlaps and boundary hits have probability ~0).
    got = np.asarray(res.territory_idx)  # type: ignore[attr-defined]
    sj = np.full(n_points, -1)
    sj[joined.index.to_numpy()] = joined["index_right"].to_numpy()
    mismatches = int((got != sj).sum())
    hits = int((np.asarray(res_acc.account_idx) >= 0).sum())  # type: ignore[attr-defined]
    print(f"check: {mismatches} territory mismatches vs sjoin; {hits:,} account hits")

    base = n_points / sjoin_s
    figures: dict[str, dict[str, Any]] = {}

    def report(name: str, seconds: float) -> None:
        value = n_points / seconds
        figures[name] = {"value": round(value), "unit": "pts/s", "baseline": round(base),
                         "ratio": round(value / base, 2)}
        print(f"RESULT {name} {value:.0f} pts/s baseline={base:.0f} ratio={value / base:.2f}")

    report("geo_lookup_pts_per_s", lookup_s)
    report("geo_lookup_accounts_pts_per_s", acc_s)
    report("geo_lookup_accounts_reps_pts_per_s", rep_s)
    print(f"info: sjoin incl. points_from_xy {n_points / sjoin_xy_s:.0f} pts/s; "
          f"runs={runs}; index build {build_s:.2f}s / {build_acc_s:.2f}s")
    figures["geo_index_build_s"] = {"value": round(build_acc_s, 3), "unit": "s",
                                    "baseline": None, "ratio": None}
    if results is not None:
        merge_results(results, figures)
        print(f"merged {len(figures)} figures into {results}")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
