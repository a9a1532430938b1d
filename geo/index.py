"""The immutable, vectorised territory + account lookup index.

Build one :class:`GeoIndex` per territory-set/account-set version and share it between
threads; to change the data build a new one and swap the reference (a plain attribute
assignment is atomic). Nothing in an index changes after :meth:`GeoIndex.build`: arrays
are read-only and GEOS prepared geometries are created and warmed up during the build.

Territory lookup: the :mod:`geo.grid` cell grid answers points in cells no boundary
crosses; the rest go to the STRtree (bounding boxes) and an exact point-in-polygon test on
prepared polygons (:func:`geo.grid.exact_pairs`), and the primary
territory per point is the minimum :mod:`geo.overlap` rank among its matches, picked with
a sort, not a Python loop. Account lookup: see :mod:`geo.places`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from geo.errors import GeoError
from geo.fields import DEFAULT_TZ, parse_reps
from geo.grid import TerritoryGrid, build_territory_grid, exact_pairs
from geo.loader import Source, load_accounts, load_territories
from geo.overlap import geodesic_area_m2, primary_rank
from geo.places import AccountIndex, Place
from geo.report import LoadReport
from geo.roster import RosterEntry

ObjArray = npt.NDArray[np.object_]


class GeoIndexError(GeoError, ValueError):
    """Frames that cannot be indexed (duplicate or missing ids, no territories)."""


class AccountHit(NamedTuple):
    place: Place
    distance_m: float


_NO_ROSTER: Mapping[str, RosterEntry] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RepProfile:
    """What session logic needs about a rep: territories, local time zone, home."""

    rep_id: str
    territory_ids: tuple[str, ...]  # sorted
    #: The rep's time zone: the roster's, else the first territory's, else the zone at the
    #: rep's home; "UTC" only when none of them is known (``tz_source`` "none"), and then
    #: the caller should take the zone at the rep's position (:func:`geo.timezones.tz_at`).
    tz: str
    home: Place | None
    tz_source: str = "territory"  # roster / territory / home / none
    roster: RosterEntry | None = None


@dataclass(frozen=True, slots=True, eq=False)
class LookupResult:
    """Parallel arrays, one entry per looked-up point.

    ``territory_idx``/``account_idx`` index the index's arrays (-1: none). Object arrays
    hold None where there is no match; ``account_distance_m`` is NaN there.
    ``in_assigned_territory`` is True when ANY territory holding the point (not only the
    primary) is assigned to the point's rep, None when rep ids were not given, the rep id
    is None, or the point is outside every territory.
    """

    version: int
    territory_idx: npt.NDArray[np.int32]
    territory_id: ObjArray
    region: ObjArray
    in_assigned_territory: ObjArray
    account_idx: npt.NDArray[np.int32]
    account_id: ObjArray
    account_distance_m: npt.NDArray[np.float64]
    account_kind: ObjArray

    def __len__(self) -> int:
        return len(self.territory_idx)

    def records(self) -> list[dict[str, Any]]:
        """One plain dict per point, keys as in ``schemas.derived.Enrichment``."""
        dist = [None if d != d else d for d in self.account_distance_m.tolist()]
        return [
            {"territory_id": t, "region": r, "in_assigned_territory": a, "account_id": acc,
             "account_distance_m": d, "geo_version": self.version}
            for t, r, a, acc, d in zip(
                self.territory_id.tolist(), self.region.tolist(),
                self.in_assigned_territory.tolist(), self.account_id.tolist(), dist,
                strict=True,
            )
        ]


def _with_none(values: Sequence[Any]) -> ObjArray:
    """Object array with a trailing None, so index -1 reads as "no match"."""
    out = np.empty(len(values) + 1, dtype=object)
    out[:-1] = list(values)
    out[-1] = None
    out.flags.writeable = False
    return out


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class GeoIndex:
    """Territories and accounts of one data version, ready for batch lookups.

    Examples
    --------
    >>> import numpy as np
    >>> from shapely import box
    >>> t = gpd.GeoDataFrame({"territory_id": ["A", "B"], "assigned_reps": [("r1",), ()],
    ...                       "priority": [None, 1]},
    ...                      geometry=[box(0, 0, 2, 2), box(1, 1, 3, 3)], crs=4326)
    >>> idx = GeoIndex.build(t, version=7)
    >>> res = idx.lookup(np.array([0.5, 1.5, 9.0]), np.array([0.5, 1.5, 9.0]),
    ...                  rep_ids=["r1", "r1", "r1"])
    >>> res.territory_id.tolist(), res.in_assigned_territory.tolist()
    (['A', 'B', None], [True, True, None])
    >>> idx.territories_of(1.5, 1.5)
    ('B', 'A')
    """

    version: int
    territory_ids: ObjArray  # each with a trailing None (see _with_none)
    names: ObjArray
    regions: ObjArray
    tzs: ObjArray
    area_m2: npt.NDArray[np.float64]
    rank: npt.NDArray[np.int32]
    polygons: ObjArray
    tree: shapely.STRtree
    grid: TerritoryGrid
    accounts: AccountIndex
    account_ids: ObjArray  # accounts.account_id with a trailing None
    account_kinds: ObjArray
    _by_rank: npt.NDArray[np.int32]
    _territory_pos: Mapping[str, int]
    _account_pos: Mapping[str, int]
    _rep_territories: Mapping[str, tuple[int, ...]]
    _rep_home: Mapping[str, int]
    warnings: tuple[str, ...]
    roster: Mapping[str, RosterEntry] = dataclasses.field(default_factory=lambda: _NO_ROSTER)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        territories: gpd.GeoDataFrame,
        accounts: gpd.GeoDataFrame | None = None,
        *,
        version: int = 0,
        roster: Mapping[str, RosterEntry] | None = None,
    ) -> GeoIndex:
        """Build from frames shaped like :mod:`geo.loader` returns (EPSG:4326); ``roster``
        (:func:`geo.roster.load_roster`) gives reps their time zone, name, team, manager.

        Accounts without a ``territory_id`` get the primary territory they lie in.
        Inconsistencies between the two sets (unknown territory ids, homes of unknown
        reps) are kept in :attr:`warnings`.
        """
        if territories.crs is not None and not territories.crs.equals("EPSG:4326"):
            territories = territories.to_crs("EPSG:4326")
        n = len(territories)
        if n == 0:
            raise GeoIndexError("no territories to index")
        ids = [str(v) for v in territories["territory_id"]]
        if len(set(ids)) != n:
            raise GeoIndexError("territory_id values are not unique")

        def col(name: str, default: Any = None) -> list[Any]:
            if name not in territories.columns:
                return [default] * n
            return [default if v is None or v is pd.NA or v != v else v
                    for v in territories[name]]

        polygons = np.asarray(territories.geometry.array, dtype=object).copy()
        if shapely.is_missing(polygons).any() or shapely.is_empty(polygons).any():
            raise GeoIndexError("territories with null or empty geometry")
        priority = [None if p is None else int(p) for p in col("priority")]
        area = geodesic_area_m2(polygons)
        rank = primary_rank(ids, priority, area)
        tree = shapely.STRtree(polygons)
        shapely.prepare(polygons)
        # GEOS builds a prepared polygon's point locator lazily on first use; do it now
        # so concurrent readers never race on that first use.
        probe = shapely.point_on_surface(polygons)
        shapely.intersects_xy(polygons, shapely.get_x(probe), shapely.get_y(probe))
        grid = build_territory_grid(polygons, tree, rank)

        rep_sets: dict[str, list[int]] = {}
        for i in np.argsort(np.array(ids, dtype=object), kind="stable"):
            for rep in parse_reps(col("assigned_reps")[i]):
                rep_sets.setdefault(rep, []).append(int(i))
        warnings: list[str] = []
        pos = {t: i for i, t in enumerate(ids)}
        acc, acc_warnings = _build_accounts(accounts, pos, tree, rank, rep_sets)
        warnings += acc_warnings
        homes: dict[str, int] = {}
        for i in np.flatnonzero(acc.kind == "home"):
            homes.setdefault(acc.rep_id[i], int(i))  # accounts are sorted: lowest id wins

        by_rank = np.argsort(rank).astype(np.int32)
        for arr in (area, rank, polygons, by_rank):
            arr.flags.writeable = False
        return cls(
            version=version,
            territory_ids=_with_none(ids),
            names=_with_none(col("name")),
            regions=_with_none(col("region")),
            tzs=_with_none([t or DEFAULT_TZ for t in col("tz", DEFAULT_TZ)]),
            area_m2=area,
            rank=rank,
            polygons=polygons,
            tree=tree,
            grid=grid,
            accounts=acc,
            account_ids=_with_none(list(acc.account_id)),
            account_kinds=_with_none(list(acc.kind)),
            _by_rank=by_rank,
            _territory_pos=MappingProxyType(pos),
            _account_pos=MappingProxyType({a: i for i, a in enumerate(acc.account_id)}),
            _rep_territories=MappingProxyType({r: tuple(v) for r, v in rep_sets.items()}),
            _rep_home=MappingProxyType(homes),
            warnings=tuple(warnings),
            roster=MappingProxyType(dict(roster or {})),
        )

    def __repr__(self) -> str:
        return (f"GeoIndex(version={self.version}, {self.n_territories} territories, "
                f"{len(self.accounts)} accounts)")

    @property
    def n_territories(self) -> int:
        return len(self.polygons)

    # -- batch lookup -----------------------------------------------------------------------
    def lookup(
        self,
        lon: npt.ArrayLike,
        lat: npt.ArrayLike,
        rep_ids: Sequence[str | None] | str | None = None,
    ) -> LookupResult:
        """Territory, assignment and account of many points at once.

        Parameters
        ----------
        lon, lat : array-like of float
            Coordinates in EPSG:4326; NaN gives "no match".
        rep_ids : sequence of str, a single str, or None
            The rep of each point (a str applies to all), for ``in_assigned_territory``.
        """
        x = np.ascontiguousarray(lon, dtype=np.float64).reshape(-1)
        y = np.ascontiguousarray(lat, dtype=np.float64).reshape(-1)
        if x.shape != y.shape:
            raise ValueError(f"lon and lat differ in length ({x.size} != {y.size})")
        terr, pairs = self._territories(x, y, with_pairs=rep_ids is not None)
        assigned = np.full(x.size, None, dtype=object)
        if rep_ids is not None:
            assigned = self._assigned(terr, pairs, rep_ids)
        acc, dist = self.accounts.match(x, y)
        return LookupResult(
            version=self.version,
            territory_idx=terr,
            territory_id=self.territory_ids[terr],
            region=self.regions[terr],
            in_assigned_territory=assigned,
            account_idx=acc,
            account_id=self.account_ids[acc],
            account_distance_m=dist,
            account_kind=self.account_kinds[acc],
        )

    def _territories(
        self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], *, with_pairs: bool
    ) -> tuple[npt.NDArray[np.int32], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        """Primary territory per point, and optionally every (point, territory) match."""
        cls = self.grid.classify(x, y)
        terr = self.grid.class_primary[cls]
        exact = np.flatnonzero(cls < 0)
        e_pt, e_poly = exact_pairs(self.tree, self.polygons, x[exact], y[exact])
        if e_pt.size:
            n = self.n_territories
            key = np.sort(e_pt * n + self.rank[e_poly])
            pt = key // n
            first = np.r_[True, pt[1:] != pt[:-1]]
            terr[exact[pt[first]]] = self._by_rank[key[first] % n]
        if not with_pairs:
            return terr, (e_pt, e_poly)
        inner = np.flatnonzero(cls > 0)
        c = cls[inner]
        start = self.grid.class_ptr[c]
        count = self.grid.class_ptr[c + 1] - start
        total = int(count.sum())
        offset = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
        members = self.grid.class_members[np.repeat(start, count) + offset]
        pts = np.concatenate([np.repeat(inner, count), exact[e_pt]])
        return terr, (pts, np.concatenate([members, e_poly]))

    def _assigned(
        self,
        terr: npt.NDArray[np.int32],
        pairs: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
        rep_ids: Sequence[str | None] | str,
    ) -> ObjArray:
        n_pts = terr.size
        if isinstance(rep_ids, str):
            codes, uniques = np.zeros(n_pts, dtype=np.int64), [rep_ids]
        else:
            reps = np.asarray(rep_ids, dtype=object).reshape(-1)
            if reps.size != n_pts:
                raise ValueError(f"rep_ids has {reps.size} entries for {n_pts} points")
            codes, uniques = pd.factorize(reps, use_na_sentinel=True)
        n = self.n_territories
        allowed = np.array(
            [c * n + t for c, r in enumerate(uniques) for t in self._rep_territories.get(r, ())],
            dtype=np.int64,
        )
        pt, poly = pairs
        hit = np.zeros(n_pts, dtype=bool)
        pair_code = codes[pt]
        ok = np.isin(pair_code * n + poly, allowed) & (pair_code >= 0)
        hit[pt[ok]] = True
        out = np.full(n_pts, None, dtype=object)
        known = (terr >= 0) & (codes >= 0)
        out[known] = hit[known].tolist()
        return out

    # -- scalar conveniences ------------------------------------------------------------------
    def territories_of(self, lon: float, lat: float) -> tuple[str, ...]:
        """Every territory holding the point, primary first (the overlap rule's order)."""
        found = self.tree.query(shapely.Point(lon, lat), predicate="intersects")
        return tuple(self.territory_ids[i] for i in sorted(found, key=lambda i: self.rank[i]))

    def nearest_account(self, lon: float, lat: float) -> AccountHit | None:
        """The nearest account whose geofence holds the point, with its distance in metres."""
        idx, dist = self.accounts.match(np.array([lon], float), np.array([lat], float))
        if idx[0] < 0:
            return None
        return AccountHit(self.accounts.place(int(idx[0])), float(dist[0]))

    def territory_tz(self, territory_id: str) -> str:
        """IANA time zone of a territory; KeyError for an unknown id."""
        return str(self.tzs[self._territory_pos[territory_id]])

    def territory_region(self, territory_id: str) -> str | None:
        """Region (parent id) of a territory; KeyError for an unknown id."""
        region = self.regions[self._territory_pos[territory_id]]
        return None if region is None else str(region)

    def place(self, account_id: str) -> Place:
        """An account by id; KeyError for an unknown id."""
        return self.accounts.place(self._account_pos[account_id])

    def rep_profile(self, rep_id: str) -> RepProfile:
        """Territories (sorted by id), time zone and home of a rep.

        The time zone is the roster's, else the first territory's, else the one at the
        rep's home; a rep none of them places gets ``tz="UTC"`` with ``tz_source="none"``
        (the sessions stage then takes the zone at the rep's first position).
        """
        terrs = tuple(str(self.territory_ids[i]) for i in self._rep_territories.get(rep_id, ()))
        entry = self.roster.get(rep_id)
        pos = self._rep_home.get(rep_id)
        home = None if pos is None else self.accounts.place(pos)
        tz, source = DEFAULT_TZ, "none"
        if entry is not None and entry.tz:
            tz, source = entry.tz, "roster"
        elif terrs:
            tz, source = self.territory_tz(terrs[0]), "territory"
        elif home is not None:
            import geo.timezones as timezones

            found = timezones.tz_at(home.lon, home.lat)
            if found is not None:
                tz, source = found, "home"
        return RepProfile(rep_id, terrs, tz, home, source, entry)

    def rep_ids(self) -> tuple[str, ...]:
        """Every rep that a territory lists, sorted."""
        return tuple(sorted(self._rep_territories))

    def with_roster(self, roster: Mapping[str, RosterEntry]) -> GeoIndex:
        """The same index with another roster (the rest is shared, not rebuilt)."""
        return dataclasses.replace(self, roster=MappingProxyType(dict(roster)))


def _build_accounts(
    accounts: gpd.GeoDataFrame | None,
    territory_pos: Mapping[str, int],
    tree: shapely.STRtree,
    rank: npt.NDArray[np.int32],
    rep_sets: Mapping[str, list[int]],
) -> tuple[AccountIndex, list[str]]:
    """Account index with missing territory ids filled in, and consistency warnings."""
    warnings: list[str] = []
    if accounts is None:
        accounts = gpd.GeoDataFrame({"account_id": []}, geometry=[], crs="EPSG:4326")
    elif accounts.crs is not None and not accounts.crs.equals("EPSG:4326"):
        accounts = accounts.to_crs("EPSG:4326")
    accounts = accounts.copy()
    if "territory_id" not in accounts.columns:
        accounts["territory_id"] = None
    missing = accounts["territory_id"].isna().to_numpy()
    if missing.any():
        pt, poly = tree.query(accounts.geometry.array[missing], predicate="intersects")
        best: dict[int, int] = {}
        for p, t in zip(pt.tolist(), poly.tolist(), strict=True):
            if p not in best or rank[t] < rank[best[p]]:
                best[p] = t
        ids = list(territory_pos)
        filled = [ids[best[p]] if p in best else None for p in range(int(missing.sum()))]
        accounts.loc[missing, "territory_id"] = pd.Series(filled, dtype=object).to_numpy()
    unknown = sorted({str(t) for t in accounts["territory_id"].dropna()} - set(territory_pos))
    if unknown:
        warnings.append(f"accounts name unknown territories: {', '.join(unknown[:10])}")
    if "kind" in accounts.columns and "rep_id" in accounts.columns:
        homes = accounts[accounts["kind"] == "home"]["rep_id"].dropna().astype(str)
        stray = sorted(set(homes) - set(rep_sets))
        if stray:
            warnings.append(f"homes of reps no territory lists: {', '.join(stray[:10])}")
    return AccountIndex.build(accounts), warnings


def load_index(
    territories: Source,
    accounts: Source | None = None,
    *,
    version: int = 0,
    strict: bool = False,
) -> tuple[GeoIndex, list[LoadReport]]:
    """Load files (or mappings/frames) and build an index; returns the load reports too.

    >>> from pathlib import Path
    >>> idx, reports = load_index(Path("data/sample/territories.geojson"),
    ...                           Path("data/sample/accounts.geojson"), version=1)
    >>> idx.rep_profile("rep-0001").territory_ids, idx.rep_profile("rep-0001").tz
    (('T01',), 'Europe/Berlin')
    """
    t_frame, t_report = load_territories(territories, strict=strict)
    reports = [t_report]
    a_frame = None
    if accounts is not None:
        a_frame, a_report = load_accounts(accounts, strict=strict)
        reports.append(a_report)
    return GeoIndex.build(t_frame, a_frame, version=version), reports
