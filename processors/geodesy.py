"""Great-circle distances (haversine, spherical Earth) on numpy arrays and scalars.

At the scales of a work day (metres to hundreds of kilometres) the spherical error is below
0.5%, well under GPS noise; no projection is needed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

EARTH_RADIUS_M = 6_371_008.8

FloatArray = npt.NDArray[np.float64]


def haversine_m(
    lon1: FloatArray | float, lat1: FloatArray | float,
    lon2: FloatArray | float, lat2: FloatArray | float,
) -> FloatArray:
    """Distance in metres between points, element-wise (broadcasting).

    >>> round(float(haversine_m(13.4, 52.52, 13.41, 52.52)))
    677
    """
    lo1, la1, lo2, la2 = (np.radians(np.asarray(v, dtype=np.float64))
                          for v in (lon1, lat1, lon2, lat2))
    a = (np.sin((la2 - la1) / 2.0) ** 2
         + np.cos(la1) * np.cos(la2) * np.sin((lo2 - lo1) / 2.0) ** 2)
    return np.asarray(2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))


def step_distances_m(lon: FloatArray, lat: FloatArray) -> FloatArray:
    """Distances between consecutive points (length ``n - 1``)."""
    if len(lon) < 2:
        return np.zeros(0)
    return haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
