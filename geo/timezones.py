"""The time zone of a position, offline (timezonefinder's packaged boundary data).

The last link of a rep's time-zone chain (roster entry, else territory, else home, else
the rep's first position): a rep that no roster or territory places still gets its local
days, never UTC by default. timezonefinder loads its data on first use (a few seconds of
CPU), so it is imported only when a rep needs it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Any, Protocol


class RepProfiles(Protocol):
    """What rep_zone needs of a territory index (geo.index.GeoIndex has it; not imported
    here: the index itself imports this module)."""

    def rep_profile(self, rep_id: str) -> Any: ...


@functools.cache
def _finder() -> Any:
    from timezonefinder import TimezoneFinder

    return TimezoneFinder()


def tz_at(lon: float, lat: float) -> str | None:
    """IANA zone at a position (``Etc/GMT±N`` at sea), None for an invalid position.

    >>> tz_at(116.40, 39.90), tz_at(13.40, 52.52)
    ('Asia/Shanghai', 'Europe/Berlin')
    """
    if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lat) > 90 or abs(lon) > 180:
        return None
    name = _finder().timezone_at(lng=float(lon), lat=float(lat))
    return None if name is None else str(name)


def first_position(events: Iterable[Any]) -> tuple[float, float] | None:
    """(lon, lat) of the earliest event (by ``ts``) with a position: a ping's own, or a
    check-in's ``position``; None when no event has one."""
    best: tuple[Any, float, float] | None = None
    for e in events:
        lon, lat = getattr(e, "lon", None), getattr(e, "lat", None)
        if lon is None or lat is None:
            pos = getattr(e, "position", None)
            if pos is None:
                continue
            lon, lat = pos.lon, pos.lat
        ts = getattr(e, "ts", None)
        if best is None or (ts is not None and best[0] is not None and ts < best[0]):
            best = (ts, float(lon), float(lat))
    return None if best is None else (best[1], best[2])


def rep_zone(index: RepProfiles | None, rep_id: str, events: Iterable[Any] = ()) -> str:
    """The zone a rep's days are derived in: the roster's, else the first territory's,
    else the one at the rep's home (:meth:`geo.GeoIndex.rep_profile`), else the one at
    the rep's earliest position in ``events``; "UTC" only when nothing places the rep.

    >>> rep_zone(None, "r1", [_P(116.40, 39.90)])
    'Asia/Shanghai'
    """
    if index is not None:
        profile = index.rep_profile(rep_id)
        if profile.tz_source != "none":
            return profile.tz
    pos = first_position(events)
    found = None if pos is None else tz_at(*pos)
    return found or "UTC"


class _P:  # a ping-like object for the doctest
    def __init__(self, lon: float, lat: float) -> None:
        self.lon, self.lat, self.ts = lon, lat, None
