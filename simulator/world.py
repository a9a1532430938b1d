"""The simulated world: territories, accounts and the reps' homes, read from GeoJSON.

Read with plain :mod:`json` on purpose: the simulator must run (and generate test data)
without the geo stack, and must not share code paths with the system it is used to check.
Coordinates are expected in EPSG:4326 (lon, lat), as GeoJSON requires.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Metres per degree of latitude (good enough for simulation at city scale).
M_PER_DEG_LAT = 111_320.0

TERRITORIES_FILE = "territories.geojson"
ACCOUNTS_FILE = "accounts.geojson"

Ring = list[tuple[float, float]]  # (lon, lat) vertices
PolygonRings = list[Ring]  # exterior first, then holes


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    name: str
    kind: str  # customer / office / home
    lat: float
    lon: float
    radius_m: float
    territory_id: str | None
    rep_id: str | None = None


@dataclass(frozen=True, slots=True)
class Territory:
    territory_id: str
    name: str
    region: str
    tz: str
    assigned_reps: tuple[str, ...]
    polygons: tuple[tuple[Ring, ...], ...]  # a MultiPolygon: each polygon is (exterior, *holes)

    def contains(self, lat: float, lon: float) -> bool:
        return any(_in_polygon(lon, lat, poly) for poly in self.polygons)

    def centroid(self) -> tuple[float, float]:
        """(lat, lon) mean of the exterior vertices: a cheap interior-ish point."""
        pts = [p for poly in self.polygons for p in poly[0]]
        return (sum(p[1] for p in pts) / len(pts), sum(p[0] for p in pts) / len(pts))


@dataclass(frozen=True, slots=True)
class Rep:
    rep_id: str
    territory_id: str
    tz: str
    home: Account


@dataclass(frozen=True)
class World:
    territories: dict[str, Territory]
    accounts: dict[str, Account]
    reps: dict[str, Rep]

    def customers(self) -> list[Account]:
        return [a for a in self.accounts.values() if a.kind == "customer"]

    def offices(self) -> list[Account]:
        return [a for a in self.accounts.values() if a.kind == "office"]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance: accurate to well under 1% over a territory, and fast."""
    kx = M_PER_DEG_LAT * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot((lon2 - lon1) * kx, (lat2 - lat1) * M_PER_DEG_LAT)


def offset_point(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
    kx = M_PER_DEG_LAT * math.cos(math.radians(lat))
    return lat + north_m / M_PER_DEG_LAT, lon + east_m / kx


def _in_ring(x: float, y: float, ring: Ring) -> bool:
    inside = False
    n = len(ring)
    j = n - 1
    for i in range(n):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def _in_polygon(x: float, y: float, poly: tuple[Ring, ...]) -> bool:
    return _in_ring(x, y, poly[0]) and not any(_in_ring(x, y, hole) for hole in poly[1:])


def _polygons(geometry: dict[str, Any]) -> tuple[tuple[Ring, ...], ...]:
    kind = geometry["type"]
    coords = geometry["coordinates"]
    polys = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else None
    if polys is None:
        raise ValueError(f"territory geometry must be a (Multi)Polygon, got {kind}")
    return tuple(
        tuple([(float(p[0]), float(p[1])) for p in ring] for ring in poly) for poly in polys
    )


def _features(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return list(doc.get("features", []))


def load_world(world_dir: Path) -> World:
    """Load ``territories.geojson`` and ``accounts.geojson`` from ``world_dir``.

    Reps are the union of every territory's ``assigned_reps``. A rep without a ``home``
    account gets a synthetic home near the territory centre (deterministic per rep id), so a
    world file without homes still simulates.
    """
    territories: dict[str, Territory] = {}
    for f in _features(Path(world_dir) / TERRITORIES_FILE):
        p = f["properties"]
        t = Territory(
            territory_id=str(p["territory_id"]),
            name=str(p.get("name", p["territory_id"])),
            region=str(p.get("region", "")),
            tz=str(p.get("tz", "UTC")),
            assigned_reps=tuple(str(r) for r in p.get("assigned_reps") or ()),
            polygons=_polygons(f["geometry"]),
        )
        territories[t.territory_id] = t

    accounts: dict[str, Account] = {}
    for f in _features(Path(world_dir) / ACCOUNTS_FILE):
        p = f["properties"]
        lon, lat = f["geometry"]["coordinates"][:2]
        a = Account(
            account_id=str(p["account_id"]),
            name=str(p.get("name", p["account_id"])),
            kind=str(p.get("kind", "customer")),
            lat=float(lat),
            lon=float(lon),
            radius_m=float(p.get("radius_m") or 75.0),
            territory_id=p.get("territory_id"),
            rep_id=p.get("rep_id"),
        )
        accounts[a.account_id] = a

    homes = {a.rep_id: a for a in accounts.values() if a.kind == "home" and a.rep_id}
    reps: dict[str, Rep] = {}
    for t in territories.values():
        for rep_id in t.assigned_reps:
            home = homes.get(rep_id) or _synthetic_home(rep_id, t)
            reps[rep_id] = Rep(rep_id=rep_id, territory_id=t.territory_id, tz=t.tz, home=home)
    return World(territories=territories, accounts=accounts, reps=dict(sorted(reps.items())))


def _synthetic_home(rep_id: str, territory: Territory) -> Account:
    rng = random.Random(f"home:{rep_id}")
    lat, lon = territory.centroid()
    lat, lon = offset_point(lat, lon, rng.uniform(-3000, 3000), rng.uniform(-3000, 3000))
    return Account(
        account_id=f"home-{rep_id}", name=f"Home of {rep_id}", kind="home", lat=lat, lon=lon,
        radius_m=50.0, territory_id=territory.territory_id, rep_id=rep_id,
    )


def pick_reps(world: World, n: int, seed: int) -> list[Rep]:
    """``n`` reps spread over territories (round robin), in a seed-stable order.

    Spreading matters for small demos: 10 reps should cover 10 territories, not one.
    """
    if n <= 0:
        return []
    rng = random.Random(f"pick:{seed}")
    by_territory: dict[str, list[Rep]] = {}
    for rep in world.reps.values():
        by_territory.setdefault(rep.territory_id, []).append(rep)
    queues = [by_territory[t] for t in sorted(by_territory)]
    rng.shuffle(queues)
    for q in queues:
        rng.shuffle(q)
    picked: list[Rep] = []
    depth = 0
    while len(picked) < n and any(depth < len(q) for q in queues):
        picked.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return sorted(picked[:n], key=lambda r: r.rep_id)
