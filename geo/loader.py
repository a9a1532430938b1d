"""Load territories (polygons) and accounts/places (points) into validated GeoDataFrames.

Sources: a GeoJSON, GeoPackage or Shapefile path (read with pyogrio), a CSV path with
lat/lon columns (accounts only), a GeoJSON FeatureCollection mapping, or a GeoDataFrame.
Everything is reprojected to EPSG:4326. Each load returns ``Loaded(frame, report)``: the
clean frame and a :class:`~geo.report.LoadReport` saying what was repaired, rejected and
why. Per-feature problems never raise and never vanish silently; an unusable source raises
:class:`~geo.errors.GeoLoadError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely

import geo.fields as fields
from geo.errors import GeoLoadError
from geo.geometry import Checked, check_point, check_polygonal
from geo.report import Issue, LoadReport

Source: TypeAlias = "str | os.PathLike[str] | Mapping[str, Any] | gpd.GeoDataFrame"

TERRITORY_COLUMNS = ("territory_id", "name", "region", "assigned_reps", "tz", "priority")
ACCOUNT_COLUMNS = ("account_id", "name", "kind", "radius_m", "territory_id", "rep_id")
# Shapefile truncates field names to 10 characters; accept those spellings too.
_ALIASES = {"territory_": "territory_id", "assigned_r": "assigned_reps"}
_LAT_NAMES = ("lat", "latitude", "y")
_LON_NAMES = ("lon", "lng", "long", "longitude", "x")


class Loaded(NamedTuple):
    """A load's result; unpacks as ``frame, report = load_territories(path)``."""

    frame: gpd.GeoDataFrame
    report: LoadReport


def load_territories(source: Source, *, layer: str | None = None, strict: bool = False) -> Loaded:
    """Load territory polygons.

    Columns of the returned frame: ``territory_id`` (str, unique), ``name``, ``region``
    (str or None), ``assigned_reps`` (tuple of str), ``tz`` (IANA name), ``priority``
    (nullable Int64) and ``geometry`` (Polygon/MultiPolygon in EPSG:4326).

    Parameters
    ----------
    source : path, GeoJSON mapping or GeoDataFrame
    layer : str, optional
        Layer of a multi-layer GeoPackage; required when the file has several.
    strict : bool
        Raise :class:`GeoLoadError` if any feature is rejected.

    Examples
    --------
    >>> fc = {"type": "FeatureCollection", "features": [{"type": "Feature",
    ...       "properties": {"territory_id": "T1", "assigned_reps": "r1, r2"},
    ...       "geometry": {"type": "Polygon",
    ...                    "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]}
    >>> frame, report = load_territories(fc)
    >>> frame.loc[0, "assigned_reps"], frame.loc[0, "tz"], report.warnings
    (('r1', 'r2'), 'UTC', ['1 territories have no tz; defaulted to UTC: T1'])
    """
    gdf, report = _read(source, layer=layer, kind="territories", allow_csv=False)
    _require(gdf, "territory_id", report)
    rows: list[dict[str, Any]] = []
    no_tz: list[str] = []

    def parse(row: Mapping[str, Any], ref: str) -> dict[str, Any]:
        tz, defaulted = fields.parse_tz(row.get("tz"))
        if defaulted:
            no_tz.append(ref)
        return {
            "name": fields.parse_text(row.get("name")),
            "region": fields.parse_text(row.get("region")),
            "assigned_reps": fields.parse_reps(row.get("assigned_reps")),
            "tz": tz,
            "priority": fields.parse_priority(row.get("priority")),
        }

    _validate(gdf, report, "territory_id", check_polygonal, parse, rows)
    if no_tz:
        report.warnings.append(
            f"{len(no_tz)} territories have no tz; defaulted to {fields.DEFAULT_TZ}: "
            + ", ".join(no_tz[:10]) + (" ..." if len(no_tz) > 10 else "")
        )
    frame = _frame(rows, TERRITORY_COLUMNS)
    frame["priority"] = frame["priority"].astype("Int64")
    return _finish(frame, report, strict)


def load_accounts(source: Source, *, layer: str | None = None, strict: bool = False) -> Loaded:
    """Load accounts and other places (offices, reps' homes) as points.

    Columns of the returned frame: ``account_id`` (str, unique), ``name``, ``kind``
    (customer/office/home), ``radius_m`` (float in (0, 5000]), ``territory_id`` and
    ``rep_id`` (str or None) and ``geometry`` (Point in EPSG:4326). A CSV source needs
    ``lat``/``lon`` columns (or latitude/longitude, lng, x/y) in EPSG:4326.

    Examples
    --------
    >>> fc = {"type": "FeatureCollection", "features": [{"type": "Feature",
    ...       "properties": {"account_id": "A1", "kind": "home"},
    ...       "geometry": {"type": "Point", "coordinates": [13.4, 52.5]}}]}
    >>> frame, report = load_accounts(fc)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    geo.errors.GeoLoadError: <GeoJSON mapping>: no usable accounts: 1 rejected (first: A1: ...)
    """
    gdf, report = _read(source, layer=layer, kind="accounts", allow_csv=True)
    _require(gdf, "account_id", report)
    rows: list[dict[str, Any]] = []

    def parse(row: Mapping[str, Any], ref: str) -> dict[str, Any]:
        kind = fields.parse_kind(row.get("kind"))
        rep_id = fields.parse_id(row.get("rep_id"))
        if kind == "home" and rep_id is None:
            raise ValueError("kind home needs a rep_id")
        return {
            "name": fields.parse_text(row.get("name")),
            "kind": kind,
            "radius_m": fields.parse_radius(row.get("radius_m")),
            "territory_id": fields.parse_id(row.get("territory_id")),
            "rep_id": rep_id,
        }

    _validate(gdf, report, "account_id", check_point, parse, rows)
    homes: dict[str, list[str]] = {}
    for r in rows:
        if r["kind"] == "home":
            homes.setdefault(r["rep_id"], []).append(r["account_id"])
    for rep, ids in sorted(homes.items()):
        if len(ids) > 1:
            report.warnings.append(
                f"rep {rep} has {len(ids)} homes ({', '.join(ids)}); the index uses "
                f"{min(ids)}"
            )
    frame = _frame(rows, ACCOUNT_COLUMNS)
    frame["radius_m"] = frame["radius_m"].astype("float64")
    return _finish(frame, report, strict)



def load_places(source: Source, *, layer: str | None = None, strict: bool = False) -> Loaded:
    """Load a set of places (reps' homes, offices) kept apart from the customer accounts.

    The same columns and rules as :func:`load_accounts`, with ``place_id`` accepted as the
    id column (``account_id`` too) and ``kind`` required (a place file that says nothing
    about its kinds is more likely a customer list given to the wrong command).

    >>> fc = {"type": "FeatureCollection", "features": [{"type": "Feature",
    ...       "properties": {"place_id": "H1", "kind": "home", "rep_id": "r1", "radius_m": 80},
    ...       "geometry": {"type": "Point", "coordinates": [13.4, 52.5]}}]}
    >>> frame, report = load_places(fc)
    >>> frame[["account_id", "kind", "rep_id", "radius_m"]].values.tolist()
    [['H1', 'home', 'r1', 80.0]]
    """
    gdf, report = _read(source, layer=layer, kind="places", allow_csv=True)
    if "account_id" not in gdf.columns and "place_id" in gdf.columns:
        gdf = gdf.rename(columns={"place_id": "account_id"})
    _require(gdf, "account_id", report)
    if "kind" not in gdf.columns:
        raise GeoLoadError(f"{report.source}: places need a kind column (home, office, "
                           f"customer)", report)
    loaded = load_accounts(gdf, strict=strict)
    loaded.report.source, loaded.report.kind = report.source, "places"
    loaded.report.source_crs = report.source_crs
    loaded.report.warnings[:0] = report.warnings
    return loaded

def _validate(
    gdf: gpd.GeoDataFrame,
    report: LoadReport,
    id_col: str,
    check_geom: Callable[[Any], Checked],
    parse: Callable[[Mapping[str, Any], str], dict[str, Any]],
    rows: list[dict[str, Any]],
) -> None:
    """Check every feature: id, geometry, attributes; append good rows, report the rest."""
    first_at: dict[str, int] = {}
    records = gdf.drop(columns=gdf.geometry.name).to_dict("records")
    for i, (attrs, geom) in enumerate(zip(records, gdf.geometry.array, strict=True)):
        fid = fields.parse_id(attrs.get(id_col))
        ref = fid if fid is not None else f"#{i}"
        if fid is None:
            report.rejected.append(Issue(ref, f"missing {id_col}"))
            continue
        if fid in first_at:
            report.rejected.append(
                Issue(ref, f"duplicate {id_col} (feature #{i}; first at #{first_at[fid]})")
            )
            continue
        checked = check_geom(geom)
        if checked.rejected:
            report.rejected.append(Issue(ref, checked.rejected))
            continue
        try:
            row = parse(attrs, ref)
        except ValueError as exc:
            report.rejected.append(Issue(ref, str(exc)))
            continue
        first_at[fid] = i
        if checked.repaired:
            report.repaired.append(Issue(ref, checked.repaired))
        rows.append({id_col: fid, **row, "geometry": checked.geom})


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> gpd.GeoDataFrame:
    data = {c: pd.Series([r[c] for r in rows], dtype=object) for c in columns}
    geoms = gpd.GeoSeries([r["geometry"] for r in rows], crs="EPSG:4326")
    return gpd.GeoDataFrame(data, geometry=geoms, crs="EPSG:4326")


def _finish(frame: gpd.GeoDataFrame, report: LoadReport, strict: bool) -> Loaded:
    report.loaded = len(frame)
    if report.loaded == 0:
        first = f" (first: {report.rejected[0].ref}: {report.rejected[0].reason})" if (
            report.rejected) else ""
        raise GeoLoadError(
            f"{report.source}: no usable {report.kind}: {len(report.rejected)} rejected{first}",
            report,
        )
    if strict and report.rejected:
        raise GeoLoadError(f"strict load failed:\n{report.summary()}", report)
    return Loaded(frame, report)


def _require(gdf: gpd.GeoDataFrame, column: str, report: LoadReport) -> None:
    if column not in gdf.columns:
        found = ", ".join(c for c in gdf.columns if c != gdf.geometry.name) or "none"
        raise GeoLoadError(f"{report.source}: no {column} column (columns: {found})", report)


def _canonical_columns(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    geom = gdf.geometry.name
    names: dict[str, str] = {}
    for col in gdf.columns:
        if col == geom:
            continue
        low = str(col).strip().lower()
        names[col] = _ALIASES.get(low, low)
    return gdf.rename(columns=names)


def _read(
    source: Source, *, layer: str | None, kind: str, allow_csv: bool
) -> tuple[gpd.GeoDataFrame, LoadReport]:
    """Read any supported source into a GeoDataFrame in EPSG:4326 with canonical names."""
    if isinstance(source, gpd.GeoDataFrame):
        report = LoadReport(source="<GeoDataFrame>", kind=kind)
        gdf = source.copy()
    elif isinstance(source, Mapping):
        report = LoadReport(source="<GeoJSON mapping>", kind=kind)
        gdf = _from_mapping(source, report)
    else:
        path = Path(source)
        report = LoadReport(source=str(path), kind=kind)
        if not path.exists():
            raise GeoLoadError(f"{path}: no such file", report)
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            if not allow_csv:
                raise GeoLoadError(f"{path}: CSV holds points only; territories need polygons",
                                   report)
            gdf = _read_csv(path, report)
        else:
            gdf = _read_vector(path, layer, report)
    if gdf.crs is None:
        # Shapefiles without .prj and GeoPackage layers with an undefined SRS end up here.
        xy = shapely.get_coordinates(gdf.geometry.array)
        if len(xy) and ((abs(xy[:, 0]) > 180).any() or (abs(xy[:, 1]) > 90).any()):
            raise GeoLoadError(
                f"{report.source}: no CRS and the coordinates are not longitude/latitude; "
                "give the file a CRS (.prj / srs_id)", report)
        report.warnings.append("no CRS: assumed EPSG:4326 (longitude, latitude)")
        gdf = gdf.set_crs("EPSG:4326")
    else:
        report.source_crs = gdf.crs.to_string()
        if not gdf.crs.equals("EPSG:4326"):
            gdf = gdf.to_crs("EPSG:4326")
    return _canonical_columns(gdf), report


def _from_mapping(doc: Mapping[str, Any], report: LoadReport) -> gpd.GeoDataFrame:
    if doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise GeoLoadError(f"{report.source}: not a GeoJSON FeatureCollection", report)
    features = doc["features"]
    geoms = [shapely.geometry.shape(f["geometry"]) if f.get("geometry") else None
             for f in features]
    props = [dict(f.get("properties") or {}) for f in features]
    # RFC 7946 GeoJSON is always longitude/latitude on WGS 84; honour a legacy "crs" member.
    crs = (doc.get("crs") or {}).get("properties", {}).get("name") or "EPSG:4326"
    return gpd.GeoDataFrame(pd.DataFrame(props, index=range(len(features))),
                            geometry=gpd.GeoSeries(geoms), crs=crs)


def _read_vector(path: Path, layer: str | None, report: LoadReport) -> gpd.GeoDataFrame:
    try:
        layers = pyogrio.list_layers(path)
        if layer is None and len(layers) > 1:
            names = ", ".join(str(n) for n in layers[:, 0])
            raise GeoLoadError(f"{path}: several layers ({names}); pass layer=", report)
        return gpd.read_file(path, layer=layer, engine="pyogrio")
    except GeoLoadError:
        raise
    except Exception as exc:  # pyogrio/GDAL raise many types for unreadable input
        raise GeoLoadError(f"{path}: cannot read: {exc}", report) from exc


def _read_csv(path: Path, report: LoadReport) -> gpd.GeoDataFrame:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False,
                         sep="\t" if path.suffix.lower() == ".tsv" else ",")
    except Exception as exc:  # parser errors, encoding errors
        raise GeoLoadError(f"{path}: cannot read CSV: {exc}", report) from exc
    lower = {str(c).strip().lower(): c for c in df.columns}
    lat = next((lower[n] for n in _LAT_NAMES if n in lower), None)
    lon = next((lower[n] for n in _LON_NAMES if n in lower), None)
    if lat is None or lon is None:
        raise GeoLoadError(f"{path}: CSV needs lat and lon columns (found: "
                           f"{', '.join(map(str, df.columns))})", report)
    ys = pd.to_numeric(df[lat].str.strip(), errors="coerce")
    xs = pd.to_numeric(df[lon].str.strip(), errors="coerce")
    # A non-numeric coordinate becomes a null geometry, which is rejected with a reason.
    geoms = [shapely.Point(x, y) if pd.notna(x) and pd.notna(y) else None
             for x, y in zip(xs, ys, strict=True)]
    attrs = df.drop(columns=[lat, lon]).replace("", None)
    return gpd.GeoDataFrame(attrs, geometry=gpd.GeoSeries(geoms), crs="EPSG:4326")
