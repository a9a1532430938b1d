"""The overlap rule: which territory is primary when a point lies in several.

Rule, in order:

1. the highest ``priority`` wins (a territory without a priority ranks below any priority);
2. otherwise the smallest geodesic area wins (the more specific territory);
3. otherwise the smallest ``territory_id`` (plain string order) wins.

The rule is a total order over the territory set, computed once per index version as a
rank (0 = preferred), so picking the primary of many points is an integer ``min``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
import pyproj
from shapely.geometry.base import BaseGeometry

_GEOD = pyproj.Geod(ellps="WGS84")


def geodesic_area_m2(geoms: Iterable[BaseGeometry]) -> npt.NDArray[np.float64]:
    """Area in square metres on the WGS 84 ellipsoid of lon/lat polygons."""
    return np.array([abs(_GEOD.geometry_area_perimeter(g)[0]) for g in geoms], dtype=np.float64)


def primary_rank(
    territory_ids: Sequence[str],
    priority: Sequence[int | None],
    area_m2: npt.ArrayLike,
) -> npt.NDArray[np.int32]:
    """Rank of each territory under the overlap rule; 0 is the most preferred.

    Examples
    --------
    >>> primary_rank(["A", "B", "C", "D"], [None, 5, None, None], [10.0, 99.0, 3.0, 3.0])
    array([3, 0, 1, 2], dtype=int32)
    """
    n = len(territory_ids)
    prio = np.array([-np.inf if p is None else float(p) for p in priority], dtype=np.float64)
    area = np.asarray(area_m2, dtype=np.float64)
    id_order = np.empty(n, dtype=np.int64)
    id_order[np.argsort(np.asarray(territory_ids, dtype=object), kind="stable")] = np.arange(n)
    order = np.lexsort((id_order, area, -prio))  # last key is the primary sort key
    rank = np.empty(n, dtype=np.int32)
    rank[order] = np.arange(n, dtype=np.int32)
    return rank
