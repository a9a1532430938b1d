"""Territories and accounts: loading, validation and the vectorised lookup index.

A pure library: no Kafka, no ClickHouse, no clock. Typical use::

    index, reports = load_index("territories.geojson", "accounts.geojson", version=3)
    result = index.lookup(lon_array, lat_array, rep_ids=rep_array)
    result.territory_id, result.account_id, result.in_assigned_territory
"""

from __future__ import annotations

from geo.errors import GeoError, GeoLoadError
from geo.index import AccountHit, GeoIndex, GeoIndexError, LookupResult, RepProfile, load_index
from geo.loader import Loaded, load_accounts, load_places, load_territories
from geo.overlap import primary_rank
from geo.places import Place
from geo.report import Issue, LoadReport
from geo.roster import RosterEntry, load_roster

__all__ = [
    "AccountHit",
    "GeoError",
    "GeoIndex",
    "GeoIndexError",
    "GeoLoadError",
    "Issue",
    "LoadReport",
    "Loaded",
    "LookupResult",
    "Place",
    "RepProfile",
    "RosterEntry",
    "load_accounts",
    "load_index",
    "load_places",
    "load_roster",
    "load_territories",
    "primary_rank",
]
