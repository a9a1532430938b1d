"""Places a rep can be at: customer accounts, offices, the rep's home.

The derivation asks a :class:`PlaceLookup` (a Protocol) which place, if any, covers a batch
of positions. The geo package adapts its index to it; :class:`InMemoryPlaces` is a small
brute-force implementation for tests and single-rep tools. A lookup handed to a rep-day
holds the shared accounts and offices plus that rep's own home.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from processors.geodesy import haversine_m

PlaceKind = Literal["customer", "office", "home"]
WORK_PLACE_KINDS = frozenset({"customer", "office"})
OFFICE_HOME_KINDS = frozenset({"office", "home"})


@dataclass(frozen=True, slots=True)
class Place:
    """A geofence: a point and a radius. ``account_id`` is the place's id (for any kind)."""

    account_id: str
    lon: float
    lat: float
    radius_m: float | None = None
    kind: PlaceKind = "customer"


class PlaceLookup(Protocol):
    """What the session derivation needs from a place index."""

    def nearest(
        self, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float64], npt.NDArray[np.object_]]:
        """Per position: (place id or None, distance in metres or nan, kind or None).

        Only a place whose geofence (radius) contains the position counts; of several,
        the nearest.
        """
        ...

    def place(self, account_id: str) -> Place | None:
        """The place with this id, or None when unknown."""
        ...


class InMemoryPlaces:
    """Brute-force :class:`PlaceLookup` over a list of places (tests, small tools).

    >>> pl = InMemoryPlaces([Place("acc-1", 13.40, 52.52, 80.0)])
    >>> ids, dist, kinds = pl.nearest(np.array([13.4001, 13.5]), np.array([52.52, 52.52]))
    >>> ids.tolist(), kinds.tolist()
    (['acc-1', None], ['customer', None])
    """

    def __init__(self, places: Iterable[Place], default_radius_m: float = 100.0) -> None:
        self._places = list(places)
        self._by_id = {p.account_id: p for p in self._places}
        self._lon = np.array([p.lon for p in self._places], dtype=np.float64)
        self._lat = np.array([p.lat for p in self._places], dtype=np.float64)
        self._radius = np.array(
            [p.radius_m if p.radius_m is not None else default_radius_m for p in self._places],
            dtype=np.float64,
        )
        self._ids = np.array([p.account_id for p in self._places], dtype=object)
        self._kinds = np.array([p.kind for p in self._places], dtype=object)

    def nearest(
        self, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float64], npt.NDArray[np.object_]]:
        lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        n = len(lon)
        ids = np.full(n, None, dtype=object)
        dist = np.full(n, np.nan)
        kinds = np.full(n, None, dtype=object)
        if n == 0 or not self._places:
            return ids, dist, kinds
        d = haversine_m(lon[:, None], lat[:, None], self._lon[None, :], self._lat[None, :])
        d = np.where(d <= self._radius[None, :], d, np.inf)
        best = np.argmin(d, axis=1)
        best_d = d[np.arange(n), best]
        hit = np.isfinite(best_d)
        ids[hit] = self._ids[best[hit]]
        kinds[hit] = self._kinds[best[hit]]
        dist[hit] = best_d[hit]
        return ids, dist, kinds

    def place(self, account_id: str) -> Place | None:
        return self._by_id.get(account_id)


class NoPlaces:
    """A lookup that knows no place (a rep-day derived without geo data)."""

    def nearest(
        self, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float64], npt.NDArray[np.object_]]:
        n = len(lon)
        return (np.full(n, None, dtype=object), np.full(n, np.nan),
                np.full(n, None, dtype=object))

    def place(self, account_id: str) -> Place | None:
        return None
