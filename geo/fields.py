"""Attribute parsing shared by the territory and account loaders.

Every parser takes one raw attribute value as a reader delivered it (str, int, float, NaN,
None, numpy scalars, lists) and returns the canonical value or raises ``ValueError`` with a
message fit for a report line. Readers differ: Shapefile has no lists and no nulls in
numeric fields, GeoPackage has no lists, CSV delivers strings only.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

DEFAULT_TZ = "UTC"
DEFAULT_RADIUS_M = 100.0
MAX_RADIUS_M = 5000.0
KINDS = ("customer", "office", "home")
DEFAULT_KIND = "customer"

_INT_RE = re.compile(r"[+-]?\d+")


def is_missing(value: Any) -> bool:
    """True for None, NaN, pandas NA/NaT and blank strings.

    >>> [is_missing(v) for v in (None, float("nan"), "  ", 0, "x")]
    [True, True, True, False, False]
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def parse_id(value: Any) -> str | None:
    """An identifier as text; integral floats lose their ``.0`` (Shapefile stores ids as reals).

    >>> parse_id(7.0), parse_id(" T01 "), parse_id(float("nan"))
    ('7', 'T01', None)
    """
    if is_missing(value):
        return None
    integral_float = isinstance(value, float | np.floating) and float(value).is_integer()
    if integral_float or isinstance(value, np.integer):
        value = int(value)
    return str(value).strip() or None


def parse_text(value: Any) -> str | None:
    """Free text (names, regions): stripped, None when blank."""
    return parse_id(value)


def parse_reps(value: Any) -> tuple[str, ...]:
    """Rep ids from a list, a JSON list string or a comma-separated string.

    A Python list literal (``"['a', 'b']"``, as geopandas writes a list column to a
    GeoPackage) is accepted too.

    Duplicates and blanks are dropped, order is kept.

    >>> parse_reps('["rep-1", "rep-2"]'), parse_reps("rep-1, rep-2,,rep-1"), parse_reps(None)
    (('rep-1', 'rep-2'), ('rep-1', 'rep-2'), ())
    """
    if isinstance(value, list | tuple | np.ndarray):
        items = list(value)
    elif is_missing(value):
        return ()
    elif isinstance(value, str):
        text = value.strip()
        items = _list_literal(text) if text.startswith("[") else text.split(",")
    else:
        raise ValueError(f"assigned_reps must be a list or a string, got {type(value).__name__}")
    out: dict[str, None] = {}
    for item in items:
        if isinstance(item, dict | list):
            raise ValueError(f"assigned_reps holds a non-scalar item {item!r}")
        rep = parse_id(item)
        if rep is not None:
            out[rep] = None
    return tuple(out)


def _list_literal(text: str) -> list[Any]:
    """A JSON list, or a Python list literal (what str(list) leaves in a GeoPackage)."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        try:
            items = ast.literal_eval(text)  # literals only: never evaluates code
        except (ValueError, SyntaxError):
            raise ValueError(f"assigned_reps is not a valid JSON list: {exc}") from None
    if not isinstance(items, list):
        raise ValueError("assigned_reps JSON is not a list")
    return items


def parse_tz(value: Any) -> tuple[str, bool]:
    """An IANA time zone name, validated; ``(name, defaulted)``.

    >>> parse_tz("Europe/Berlin"), parse_tz(None)
    (('Europe/Berlin', False), ('UTC', True))
    """
    if is_missing(value):
        return DEFAULT_TZ, True
    name = str(value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name, False


def parse_priority(value: Any) -> int | None:
    """An optional integer priority; a fractional or non-numeric value is an error.

    >>> parse_priority("3"), parse_priority(2.0), parse_priority(None)
    (3, 2, None)
    """
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"priority must be an integer, got {value!r}")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value.strip())
    raise ValueError(f"priority must be an integer, got {value!r}")


def parse_kind(value: Any) -> str:
    """Account kind, one of :data:`KINDS`; missing means ``customer``."""
    if is_missing(value):
        return DEFAULT_KIND
    kind = str(value).strip().lower()
    if kind not in KINDS:
        raise ValueError(f"kind {value!r} is not one of {', '.join(KINDS)}")
    return kind


def parse_radius(value: Any) -> float:
    """Geofence radius in metres, default 100, must be in (0, 5000].

    >>> parse_radius(None), parse_radius("150")
    (100.0, 150.0)
    """
    if is_missing(value):
        return DEFAULT_RADIUS_M
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"radius_m must be a number, got {value!r}")
    try:
        radius = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"radius_m must be a number, got {value!r}") from None
    if not (math.isfinite(radius) and 0 < radius <= MAX_RADIUS_M):
        raise ValueError(f"radius_m {value!r} is outside (0, {MAX_RADIUS_M:g}]")
    return radius
