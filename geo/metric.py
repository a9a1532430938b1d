"""Metric distances between nearby lon/lat points on the WGS 84 ellipsoid.

Geofences are at most 5 km, so a local tangent plane is exact enough: east-west scale
from the prime-vertical radius ``N cos(lat)``, north-south from the meridional radius
``M``, both at the mean latitude of the pair. Against geodesic distances (pyproj.Geod) the
relative error is below 1e-6 at 5 km for latitudes within +-80 deg; a plain sphere would
be off by up to 0.56 % north-south, which is why the ellipsoid radii are used.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

WGS84_A = 6_378_137.0
WGS84_F = 1 / 298.257223563
WGS84_E2 = WGS84_F * (2 - WGS84_F)
#: Smallest meridional radius (at the equator); bounds degrees of latitude per metre.
M_MIN = WGS84_A * (1 - WGS84_E2)

FloatArray = npt.NDArray[np.float64]


def metres_per_degree(lat_deg: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(metres per degree of longitude, metres per degree of latitude) at ``lat_deg``.

    >>> mx, my = metres_per_degree(0.0)
    >>> round(float(mx)), round(float(my))
    (111319, 110574)
    """
    phi = np.radians(np.asarray(lat_deg, dtype=np.float64))
    w = 1.0 - WGS84_E2 * np.sin(phi) ** 2
    n = WGS84_A / np.sqrt(w)
    m = WGS84_A * (1.0 - WGS84_E2) / (w * np.sqrt(w))
    rad = np.pi / 180.0
    return n * np.cos(phi) * rad, m * rad


def local_distance_m(
    lon1: npt.ArrayLike, lat1: npt.ArrayLike, lon2: npt.ArrayLike, lat2: npt.ArrayLike
) -> FloatArray:
    """Distance in metres between nearby points (element-wise, broadcasting).

    Longitude differences wrap, so points either side of the antimeridian are near.

    >>> round(float(local_distance_m(13.0, 52.0, 13.0, 52.001)), 2)
    111.27
    """
    lat1 = np.asarray(lat1, dtype=np.float64)
    lat2 = np.asarray(lat2, dtype=np.float64)
    dlon = (np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64) + 180.0)
    dlon = dlon % 360.0 - 180.0
    mx, my = metres_per_degree((lat1 + lat2) * 0.5)
    return np.hypot(dlon * mx, (lat2 - lat1) * my)


def degree_box(
    lon: npt.ArrayLike, lat: npt.ArrayLike, radius_m: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """A lon/lat box (xmin, ymin, xmax, ymax) that surely holds every point within
    ``radius_m`` of (lon, lat) as measured by :func:`local_distance_m`.

    Conservative on both axes: the smallest meridional radius bounds the latitude extent,
    and the cosine is taken at the far edge of the latitude extent.
    """
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    r = np.asarray(radius_m, dtype=np.float64) * 1.0001  # margin for rounding
    dlat = np.degrees(r / M_MIN)
    far = np.radians(np.minimum(np.abs(lat) + dlat, 89.9))
    dlon = np.degrees(r / (WGS84_A * np.cos(far)))
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat
