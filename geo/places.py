"""Account/place geofences: which account's circle holds a point, in metres.

Each account is a circle of ``radius_m`` around a lon/lat point. Lookup: a coarse boolean
grid says which cells any geofence box touches (most pings are nowhere near an account and
stop there); the rest query an STRtree of conservative lon/lat boxes
(:func:`geo.metric.degree_box`), then the candidates are measured in metres on the local
tangent plane (:func:`geo.metric.local_distance_m`) and the nearest one inside its own
radius wins (ties: smaller account_id).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import shapely

from geo.grid import CellGrid
from geo.metric import degree_box, local_distance_m

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Place:
    """One account or place as the index holds it (coordinates in EPSG:4326)."""

    account_id: str
    name: str | None
    kind: str
    lon: float
    lat: float
    radius_m: float
    territory_id: str | None
    rep_id: str | None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class AccountIndex:
    """Immutable geofence index; arrays are parallel and sorted by ``account_id``."""

    account_id: npt.NDArray[np.object_]
    name: npt.NDArray[np.object_]
    kind: npt.NDArray[np.object_]
    lon: FloatArray
    lat: FloatArray
    radius_m: FloatArray
    territory_id: npt.NDArray[np.object_]
    rep_id: npt.NDArray[np.object_]
    tree: shapely.STRtree
    grid: CellGrid
    near: npt.NDArray[np.bool_]  # per cell (+1 trailing False for off-grid): any box touches

    def __len__(self) -> int:
        return len(self.account_id)

    def __repr__(self) -> str:
        return f"AccountIndex({len(self)} accounts, grid {self.grid.nx}x{self.grid.ny})"

    @classmethod
    def build(cls, frame: gpd.GeoDataFrame) -> AccountIndex:
        """Build from a frame shaped like :func:`geo.loader.load_accounts` returns."""
        frame = frame.sort_values("account_id", kind="stable")
        n = len(frame)

        def col(name: str, default: object = None) -> npt.NDArray[np.object_]:
            if name not in frame.columns:
                return np.full(n, default, dtype=object)
            return np.array([None if v is None or v != v else v for v in frame[name]],
                            dtype=object)

        lon = np.ascontiguousarray(frame.geometry.x.to_numpy(dtype=np.float64))
        lat = np.ascontiguousarray(frame.geometry.y.to_numpy(dtype=np.float64))
        radius = (frame["radius_m"].to_numpy(dtype=np.float64) if "radius_m" in frame.columns
                  else np.full(n, 100.0))
        xmin, ymin, xmax, ymax = degree_box(lon, lat, radius)
        tree = shapely.STRtree(shapely.box(xmin, ymin, xmax, ymax))
        if n:
            # Cells about the size of a typical geofence: a few cells per account.
            size = float(np.median(np.maximum(xmax - xmin, ymax - ymin)))
            bounds = (xmin.min(), ymin.min(), xmax.max(), ymax.max())
            area = (bounds[2] - bounds[0]) * (bounds[3] - bounds[1])
            target = int(np.clip(area / (size * size), 1 << 10, 1 << 22))
        else:
            bounds, target = (0.0, 0.0, 1.0, 1.0), 1
        grid = CellGrid.covering(bounds, target)
        near = np.zeros(grid.n_cells + 1, dtype=bool)
        if n:
            grid.mark_boxes(near[:-1], xmin, ymin, xmax, ymax)
        arrays = dict(
            account_id=np.array([str(v) for v in frame["account_id"]], dtype=object),
            name=col("name"), kind=col("kind", "customer"), lon=lon, lat=lat,
            radius_m=np.ascontiguousarray(radius), territory_id=col("territory_id"),
            rep_id=col("rep_id"),
        )
        for arr in (*arrays.values(), near):
            arr.flags.writeable = False
        return cls(**arrays, tree=tree, grid=grid, near=near)

    def place(self, i: int) -> Place:
        """The account at position ``i`` as a :class:`Place`."""
        return Place(
            account_id=self.account_id[i], name=self.name[i], kind=self.kind[i],
            lon=float(self.lon[i]), lat=float(self.lat[i]), radius_m=float(self.radius_m[i]),
            territory_id=self.territory_id[i], rep_id=self.rep_id[i],
        )

    def match(self, x: FloatArray, y: FloatArray) -> tuple[IntArray, FloatArray]:
        """Nearest account whose geofence holds each point: (index or -1, metres or NaN)."""
        idx = np.full(len(x), -1, dtype=np.int32)
        dist = np.full(len(x), np.nan)
        if not len(self):
            return idx, dist
        cand = np.flatnonzero(self.near[self.grid.locate(x, y)])
        if not cand.size:
            return idx, dist
        q_pt, q_acc = self.tree.query(shapely.points(x[cand], y[cand]))
        pts = cand[q_pt]
        d = local_distance_m(x[pts], y[pts], self.lon[q_acc], self.lat[q_acc])
        inside = d <= self.radius_m[q_acc]
        pts, acc, d = pts[inside], q_acc[inside], d[inside]
        order = np.lexsort((acc, d, pts))
        pts, acc, d = pts[order], acc[order], d[order]
        first = np.r_[True, pts[1:] != pts[:-1]] if pts.size else np.zeros(0, dtype=bool)
        idx[pts[first]] = acc[first]
        dist[pts[first]] = d[first]
        return idx, dist
