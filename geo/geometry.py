"""Per-feature geometry checks: keep, repair (with a reason) or reject (with a reason)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

_POLYGONAL = ("Polygon", "MultiPolygon")


class Checked(NamedTuple):
    """A geometry after checking: ``geom`` is None exactly when ``rejected`` is set."""

    geom: BaseGeometry | None
    repaired: str | None = None
    rejected: str | None = None


def _polygonal_parts(geom: BaseGeometry) -> list[BaseGeometry]:
    """Polygons inside any (nested) collection; lines and points are dropped."""
    out: list[BaseGeometry] = []
    for part in shapely.get_parts(geom):
        kind = part.geom_type
        if kind == "Polygon":
            out.append(part)
        elif kind in ("MultiPolygon", "GeometryCollection"):
            out.extend(_polygonal_parts(part))
    return out


def _lonlat_ok(geom: BaseGeometry) -> bool:
    xy = shapely.get_coordinates(geom)
    return bool(
        np.isfinite(xy).all()
        and (np.abs(xy[:, 0]) <= 180.0).all()
        and (np.abs(xy[:, 1]) <= 90.0).all()
    )


def check_polygonal(geom: BaseGeometry | None) -> Checked:
    """Validate a territory geometry (already in EPSG:4326).

    Invalid polygons are repaired with :func:`shapely.make_valid`, keeping polygonal parts
    only (a bow-tie becomes two triangles); GeometryCollections keep their polygonal parts.
    Z is dropped: lookups are 2D.

    Examples
    --------
    >>> from shapely import Polygon, Point
    >>> bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    >>> c = check_polygonal(bowtie)
    >>> c.geom.geom_type, c.repaired
    ('MultiPolygon', 'Self-intersection[0.5 0.5]; repaired with make_valid')
    >>> check_polygonal(Point(0, 0)).rejected
    'geometry type Point is not polygonal'
    """
    if geom is None:
        return Checked(None, rejected="null geometry")
    if geom.is_empty:
        return Checked(None, rejected="empty geometry")
    kind = geom.geom_type
    repaired: list[str] = []
    if kind == "GeometryCollection":
        parts = _polygonal_parts(geom)
        if not parts:
            return Checked(None, rejected="GeometryCollection has no polygonal part")
        geom = shapely.multipolygons(parts) if len(parts) > 1 else parts[0]
        repaired.append("kept the polygonal parts of a GeometryCollection")
    elif kind not in _POLYGONAL:
        return Checked(None, rejected=f"geometry type {kind} is not polygonal")
    if shapely.has_z(geom):
        geom = shapely.force_2d(geom)
    if not _lonlat_ok(geom):
        return Checked(None, rejected="coordinates outside longitude/latitude range")
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        parts = _polygonal_parts(shapely.make_valid(geom))
        fixed = shapely.union_all(parts) if parts else None
        if fixed is None or fixed.is_empty or fixed.area <= 0.0:
            return Checked(None, rejected=f"invalid geometry ({reason}) has no area after repair")
        geom = fixed
        repaired.append(f"{reason}; repaired with make_valid")
    if geom.area <= 0.0:
        return Checked(None, rejected="geometry has zero area")
    return Checked(geom, repaired="; ".join(repaired) or None)


def check_point(geom: BaseGeometry | None) -> Checked:
    """Validate an account location (already in EPSG:4326): a Point or a one-point MultiPoint.

    >>> from shapely import Point, LineString
    >>> check_point(Point(13.4, 52.5)).geom.wkt
    'POINT (13.4 52.5)'
    >>> check_point(LineString([(0, 0), (1, 1)])).rejected
    'geometry type LineString is not a point'
    """
    if geom is None:
        return Checked(None, rejected="null geometry (no coordinates)")
    if geom.is_empty:
        return Checked(None, rejected="empty geometry")
    kind = geom.geom_type
    repaired = None
    if kind == "MultiPoint":
        parts = shapely.get_parts(geom)
        if len(parts) != 1:
            return Checked(None, rejected=f"MultiPoint with {len(parts)} points is not a point")
        geom, repaired = parts[0], "one-point MultiPoint taken as a Point"
    elif kind != "Point":
        return Checked(None, rejected=f"geometry type {kind} is not a point")
    if shapely.has_z(geom):
        geom = shapely.force_2d(geom)
    if not _lonlat_ok(geom):
        return Checked(None, rejected="coordinates outside longitude/latitude range")
    return Checked(geom, repaired=repaired)
