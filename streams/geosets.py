"""Territory, account, place and rep sets: publish a version, tail the topics, swap the
index live.

`geotel territories load FILE` / `geotel accounts load FILE` / `geotel places load FILE`
validate the file locally (any format and CRS geo/ reads), normalise it to GeoJSON in
EPSG:4326 and publish it, gzip-compressed, as a new version on a compacted topic
(``geotel.territories`` / ``geotel.accounts`` / ``geotel.places``, key = the set name);
`geotel reps load roster.csv` publishes the rep roster (JSON) on ``geotel.reps``. Each set
is replaced only by a load of its own kind: loading accounts keeps the homes and offices
of the places set, and the index holds both (a place wins over an account of the same id).
Every worker tails the set topics, builds a new immutable GeoIndex in a thread and swaps it
in with one assignment: events in flight finish on the index they started with, the next
batch uses the new one, nothing stalls or is lost. Each event records the version used.

In the embedded profile the broker keeps topics in memory, so the latest published record of
each set is also kept under ``data_dir/geo/`` and re-published by ``geotel up``.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from aiokafka.structs import TopicPartition

from geo import (
    GeoIndex,
    LoadReport,
    RosterEntry,
    load_accounts,
    load_places,
    load_roster,
    load_territories,
)
from processors.intake import AnyEvent
from schemas.columns import EVENT_SCHEMA, EventColumns
from schemas.derived import Enrichment
from schemas.events import CheckIn, Ping
from streams.batch_consumer import LogResetWatch, caught_up, record_probe
from streams.broker import make_consumer
from streams.settings import ACCOUNTS, PLACES, REPS, TERRITORIES

log = logging.getLogger(__name__)

SETS = {"territories": TERRITORIES, "accounts": ACCOUNTS, "places": PLACES, "reps": REPS}
_NO_GEO = Enrichment()


def account_rows(index: GeoIndex) -> list[tuple[object, ...]]:
    """Rows of ``accounts_all`` for the index's customers and offices (not homes: a rep's
    home is private)."""
    acc = index.accounts
    out: list[tuple[object, ...]] = []
    for i in range(len(acc)):
        kind = str(acc.kind[i])
        if kind == "home":
            continue
        tid = acc.territory_id[i]
        region = None
        if tid is not None:
            try:
                region = index.territory_region(str(tid))
            except KeyError:
                region = None
        out.append((str(acc.account_id[i]), acc.name[i], kind,
                    None if tid is None else str(tid), region, float(acc.lon[i]),
                    float(acc.lat[i]), float(acc.radius_m[i]), index.version))
    return out


def rep_territory_rows(index: GeoIndex) -> list[tuple[object, ...]]:
    """Rows of ``rep_territories_all``: each rep a territory lists, with each of its
    territories (the rep profile's; nothing about homes)."""
    return [(rep, territory, index.version) for rep in index.rep_ids()
            for territory in index.rep_profile(rep).territory_ids]


class GeoEnricher:
    """Enrichment from one immutable GeoIndex; replace ``index`` to switch versions."""

    def __init__(self, index: GeoIndex | None = None) -> None:
        self.index = index

    @property
    def version(self) -> int:
        return self.index.version if self.index is not None else 0

    def enrich(self, events: Sequence[AnyEvent]) -> list[Enrichment]:
        index = self.index  # one read: the whole batch sees one version
        out = [_NO_GEO] * len(events)
        if index is None or not events:
            return out
        pos: list[int] = []
        lon: list[float] = []
        lat: list[float] = []
        reps: list[str] = []
        for i, ev in enumerate(events):
            if isinstance(ev, Ping):
                x, y = ev.lon, ev.lat
            elif isinstance(ev, CheckIn) and ev.position is not None:
                x, y = ev.position.lon, ev.position.lat
            else:
                continue
            pos.append(i)
            lon.append(x)
            lat.append(y)
            reps.append(ev.rep_id)
        if not pos:
            return out
        res = index.lookup(np.asarray(lon), np.asarray(lat), rep_ids=reps)
        build = Enrichment.model_construct
        for i, rec in zip(pos, res.records(), strict=True):
            out[i] = build(**rec)
        return out


    def enrich_columns(self, batch: EventColumns) -> EventColumns:
        """``batch`` with its enrichment columns (``schemas.columns.GEO_COLUMNS``) from one
        vectorised lookup of every event with a position (``lat`` not null); the others
        keep no enrichment (geo_version 0)."""
        index = self.index  # one read: the whole batch sees one version
        n = len(batch)
        if index is None or not n:
            return batch
        lat = batch.column("lat").to_numpy()
        pos = np.flatnonzero(~np.isnan(lat))
        if not pos.size:
            return batch
        lon = batch.column("lon").to_numpy()[pos]
        reps = batch.column("rep_id").to_numpy()[pos]
        res = index.lookup(lon, lat[pos], rep_ids=reps)
        version = np.zeros(n, dtype=np.uint32)
        version[pos] = index.version
        geo = {"geo_version": pa.array(version)}
        for name, values in (("territory_id", res.territory_id), ("region", res.region),
                             ("in_assigned_territory", res.in_assigned_territory),
                             ("geo_account_id", res.account_id)):
            col = np.full(n, None, dtype=object)
            col[pos] = values
            geo[name] = pa.array(col, type=EVENT_SCHEMA.field(name).type)
        dist = np.full(n, np.nan)
        dist[pos] = res.account_distance_m
        geo["geo_account_distance_m"] = pa.array(dist, from_pandas=True)  # NaN: null
        return batch.with_geo(geo)


def encode_set(kind: str, geojson: bytes, version: int, source: str) -> bytes:
    return orjson.dumps({"kind": kind, "version": version, "source": source,
                         "geojson_gz_b64": base64.b64encode(gzip.compress(geojson)).decode()})


def decode_set(value: bytes) -> tuple[str, int, bytes]:
    doc = orjson.loads(value)
    body = gzip.decompress(base64.b64decode(doc["geojson_gz_b64"]))
    return doc["kind"], int(doc["version"]), body


def prepare(kind: str, path: Path) -> tuple[bytes, LoadReport]:
    """Load and validate a file locally; return the body to publish (normalised GeoJSON in
    EPSG:4326; for the roster a JSON list of its entries) and the report. Raises
    GeoLoadError (with the report) when nothing usable is in it."""
    if kind == "reps":
        roster, report = load_roster(path)
        return orjson.dumps([e.as_dict() for e in roster.values()]), report
    loader = {"territories": load_territories, "accounts": load_accounts,
              "places": load_places}[kind]
    loaded = loader(path)
    frame = loaded.frame
    return frame.to_json(drop_id=True, to_wgs84=True).encode(), loaded.report


def journal_path(data_dir: Path, kind: str) -> Path:
    return data_dir / "geo" / f"{kind}.json"


def new_version() -> int:
    # Seconds since the epoch: increases across publishers without coordination (UInt32 in
    # ClickHouse until 2106); two loads in the same second are separated by +1 below.
    return int(time.time())


def build_index(sets: dict[str, tuple[int, bytes]]) -> GeoIndex | None:
    """The index of the latest sets: territories (required), accounts and places (one
    geofence set; a place replaces an account of the same id), the roster. Its version is
    the newest of the set versions, so any load gives a new index version."""
    if "territories" not in sets:
        return None
    tv, tjson = sets["territories"]
    terr = load_territories(orjson.loads(tjson)).frame
    frames = []
    version = tv
    for kind in ("accounts", "places"):
        if kind in sets:
            v, body = sets[kind]
            version = max(version, v)
            doc = orjson.loads(body)
            if not doc.get("features"):  # emptied (an erase removed its last entry)
                continue
            frames.append((load_accounts if kind == "accounts" else load_places)(doc).frame)
    acc = None
    if frames:
        acc = frames[0] if len(frames) == 1 else gpd.GeoDataFrame(
            pd.concat(frames[::-1], ignore_index=True).drop_duplicates("account_id"),
            crs="EPSG:4326")
    roster: dict[str, RosterEntry] = {}
    if "reps" in sets:
        rv, rbody = sets["reps"]
        entries = orjson.loads(rbody)
        if entries:  # an erase can empty the roster
            roster, _ = load_roster(entries)
        version = max(version, rv)
    return GeoIndex.build(terr, acc, version=version, roster=roster)


def roster_rows(index: GeoIndex) -> list[tuple[object, ...]]:
    """Rows of ``reps_all``: the roster of the index in use (name, team, manager, zone)."""
    return [(e.rep_id, e.name, e.team, e.manager, e.tz, index.version)
            for e in sorted(index.roster.values(), key=lambda e: e.rep_id)]


class GeoSetTail:
    """Tails the territory and account topics and swaps the enricher's index."""

    def __init__(self, pipeline: Any, enricher: GeoEnricher) -> None:
        self.pipeline = pipeline
        self.enricher = enricher
        self.sets: dict[str, tuple[int, bytes]] = {}
        self.loaded_version = 0
        self.loaded_sets: dict[str, int] = {}  # set versions in the index in use
        self.last_error: str | None = None
        self.log_reset = LogResetWatch()
        # Set once the sets published before this worker started are loaded (or there are
        # none): the agents wait for it, so a restarted worker never enriches or derives
        # with no index (no territories, no homes, UTC days) while the sets are loading.
        self.ready = asyncio.Event()

    async def _store_accounts(self, index: GeoIndex) -> None:
        """The customers and offices of the index in use go to ClickHouse ``accounts``
        (analysts join visits to their territories there), and each rep's assigned
        territories to ``rep_territories``. Retried like every sink write; every worker
        writes the same rows, which the tables fold."""
        client = getattr(self.pipeline, "clickhouse", None)
        writer = getattr(self.pipeline, "writer", None)
        if client is None or writer is None:
            return
        accounts, assigned = account_rows(index), rep_territory_rows(index)
        roster = roster_rows(index)
        if not accounts and not assigned and not roster:
            return
        from sinks.migrations import ACCOUNT_COLUMNS, REP_TERRITORY_COLUMNS, ROSTER_COLUMNS
        from sinks.writer import ClickHouseWriter

        w = ClickHouseWriter(client, retry_initial_s=writer.retry_initial_s,
                             retry_max_s=writer.retry_max_s, fault_file=writer.fault_file)
        w.lock = writer.lock
        # The version in the dedup token: every worker writes the same rows of a version.
        if accounts:
            w.add_batch("accounts_all", [n for n, _ in ACCOUNT_COLUMNS], accounts,
                        {("geo", 0): (index.version, index.version)})
        if assigned:
            w.add_batch("rep_territories_all", [n for n, _ in REP_TERRITORY_COLUMNS],
                        assigned, {("geo", 1): (index.version, index.version)})
        if roster:
            w.add_batch("reps_all", [n for n, _ in ROSTER_COLUMNS], roster,
                        {("geo", 2): (index.version, index.version)})
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.pipeline.ch_executor, w.flush)

    async def run(self) -> None:

        settings = self.pipeline.settings
        topics = [settings.topic(t) for t in SETS.values()]
        loop = asyncio.get_running_loop()
        self.log_reset.probe = record_probe(lambda: make_consumer(settings))
        while True:
            consumer = make_consumer(settings)
            try:
                await consumer.start()
                tps: list[TopicPartition] = []
                for t in topics:
                    parts = consumer.partitions_for_topic(t) or set()
                    tps.extend(TopicPartition(t, p) for p in parts)
                if not tps:
                    self.ready.set()  # nothing can have been published
                    await asyncio.sleep(1.0)
                    await consumer.stop()
                    continue
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                while True:
                    batch = await consumer.getmany(timeout_ms=500)
                    # A set published after an in-memory broker restart sits below the old
                    # position; without this it would never be loaded here.
                    await self.log_reset.check(consumer, tps, batch)
                    changed = False
                    for records in batch.values():
                        for r in records:
                            if r.value is None:
                                continue
                            try:
                                kind, version, body = decode_set(r.value)
                            except Exception as exc:
                                log.error("ignoring a malformed geo set record: %r", exc)
                                continue
                            if version >= self.sets.get(kind, (-1, b""))[0]:
                                self.sets[kind] = (version, body)
                                changed = True
                    if changed:
                        try:
                            snapshot = dict(self.sets)
                            index = await loop.run_in_executor(None, build_index, snapshot)
                        except Exception as exc:
                            self.last_error = f"{type(exc).__name__}: {exc}"
                            log.error("cannot build the geo index, keeping version %s: %s",
                                      self.enricher.version, exc)
                            continue
                        if index is not None:
                            self.enricher.index = index  # the atomic swap
                            self.loaded_version = index.version
                            self.loaded_sets = {k: v for k, (v, _) in snapshot.items()}
                            self.last_error = None
                            self.pipeline.metrics.index_version.set(index.version)
                            log.info("geo index version %s in use", index.version)
                            await self._store_accounts(index)
                    if not self.ready.is_set() and await caught_up(consumer, tps):
                        self.ready.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("geo set tail failed, retrying: %r", exc)
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()
