"""Everything stored about one rep: export it, erase it (``geotel reps ...``).

* **export** reads every table that holds rows of the rep (``WHERE rep_id = REP``) through
  the running service's read-only SQL endpoint, or chDB directly when the service is
  stopped, page by page, and writes JSON lines (one object per row, with a ``"table"``
  key), followed by the rep's device records (never token hashes).
* **erase** deletes the rep's rows from every table with synchronous mutations (the parts
  are rewritten, so the data is gone, not just hidden), recomputes the territory rollup
  for the hours the rep contributed to, and revokes the rep's device tokens. The embedded
  chDB can be opened by one process only: while the service runs, erase goes through its
  admin endpoint (``POST /v1/admin/erase``, bearer ``privacy.admin_token``).

What this cannot reach (Kafka topics until their retention, the embedded device journal)
is listed in docs/privacy.md.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import IO, Any

import orjson
from pydantic import TypeAdapter, ValidationError

from schemas.errors import GeotelError
from schemas.events import Ident
from sinks.migrations import _TERRITORY_HOURLY_SELECT
from streams.auth import bearer_ok
from streams.devices import DeviceError, DeviceRecord, DeviceRegistry, revoke_records
from streams.privacy import MUTATION_SETTINGS, privacy_settings, sql_str
from streams.query import AnalystSql, QueryError
from streams.settings import Profile, Settings

_IDENT: TypeAdapter[str] = TypeAdapter(Ident)

#: Tables (and the one view) exported, with a total order for stable paging. The rollup
#: ``rep_last_position_agg`` holds aggregate states: its readable form is the view.
EXPORT_TABLES: tuple[tuple[str, str], ...] = (
    ("events_all", "toDate(ts), ts, event_id, received_at, geo_version"),
    ("deadletters", "at, source_topic, source_partition, source_offset, item_index"),
    ("rep_daily_all", "local_date, version"),
    ("segments_all", "local_date, version, start, segment_id"),
    ("transitions_all", "local_date, version, at, transition_id"),
    ("visit_forms", "started_at, event_id"),
    ("rep_last_position", "ts"),
    ("rep_territories_all", "geo_version, territory_id"),
    ("reps_all", "geo_version"),
    ("closed_rep_days", "local_date, closed_at"),
    ("alerts_all", "local_date, at, alert_id, state"),
)

#: Tables with a ``rep_id`` column that erase deletes from (a mutation of segments_current
#: does not reach visits_current, which its materialized view fills: both are listed).
ERASE_TABLES: tuple[str, ...] = ("events_all", "deadletters", "rep_daily_all", "segments_all",
                                 "segments_current", "visits_current", "transitions_all",
                                 "transitions_current", "visit_forms", "rep_last_position_agg",
                                 "closed_rep_days", "rep_territories_all", "reps_all",
                                 "alerts_all")

_KEYS_CHUNK = 500


class RepError(GeotelError, ValueError):
    """An export or erase that cannot be carried out."""


def check_rep_id(rep_id: str) -> str:
    try:
        return _IDENT.validate_python(rep_id)
    except ValidationError as exc:
        raise RepError(f"invalid rep id {rep_id!r}") from exc


# -- devices --------------------------------------------------------------------------------
def rep_devices(records: Iterable[DeviceRecord], rep_id: str) -> list[DeviceRecord]:
    """The rep's device records, one per token, folded as the registry folds them."""
    return [r for r in _folded(records) if r.rep_id == rep_id]


def _folded(records: Iterable[DeviceRecord]) -> list[DeviceRecord]:
    by_hash: dict[str, DeviceRecord] = {}
    for r in records:
        prev = by_hash.get(r.token_hash)
        if prev is None or not prev.revoked:
            by_hash[r.token_hash] = r
    return sorted(by_hash.values(), key=lambda r: (r.device_id, r.created_at))


def revocations(records: Iterable[DeviceRecord], rep_id: str) -> list[DeviceRecord]:
    """Revocation records for every active token of the rep's devices."""
    reg = DeviceRegistry()
    reg.apply_all(records)
    out: list[DeviceRecord] = []
    for device in sorted(d for d, r in reg.devices().items() if r == rep_id):
        out += [r for r in revoke_records(reg, device) if r.rep_id == rep_id]
    return out


def device_line(r: DeviceRecord) -> dict[str, Any]:
    return {"table": "devices", "device_id": r.device_id, "rep_id": r.rep_id,
            "created_at": r.created_at.isoformat(), "revoked": r.revoked}


# -- export ---------------------------------------------------------------------------------
SqlRunner = Callable[[str], bytes]  # one read-only query -> JSON lines


def export_rep(run: SqlRunner, rep_id: str, out: IO[bytes], *, page_rows: int,
               devices: Iterable[DeviceRecord] = (),
               places: Iterable[dict[str, Any]] = ()) -> dict[str, int]:
    """Write every stored row of the rep to ``out`` as JSON lines; return rows per table."""
    rep = sql_str(check_rep_id(rep_id))
    counts: dict[str, int] = {}
    for table, order in EXPORT_TABLES:
        n, offset = 0, 0
        while True:
            body = run(f"SELECT * FROM {table} WHERE rep_id = {rep} ORDER BY {order} "
                       f"LIMIT {page_rows} OFFSET {offset}")
            lines = [ln for ln in body.splitlines() if ln.strip()]
            for ln in lines:
                out.write(orjson.dumps({"table": table, **orjson.loads(ln)}) + b"\n")
            n += len(lines)
            if len(lines) < page_rows:
                break
            offset += page_rows
        counts[table] = n
    devs = [r for r in devices if r.rep_id == rep_id]
    for r in devs:
        out.write(orjson.dumps(device_line(r)) + b"\n")
    counts["devices"] = len(devs)
    homes = list(places)
    for p in homes:
        out.write(orjson.dumps({"table": "places", **p}) + b"\n")
    counts["places"] = len(homes)
    return counts


# -- places and roster (the rep's home and name in the published sets) ---------------------
#: The published sets that can hold a rep's own entries: homes and offices with a rep_id (in
#: the account set of older loads, or the place set) and the rep's roster entry.
REP_SETS = ("accounts", "places", "reps")


def geo_set(s: Settings, kind: str) -> bytes | None:
    """The latest record of a published set (``accounts``, ``places``, ``reps``...): its
    journal in the embedded profile, else the last record of its topic."""
    from streams.geosets import SETS, journal_path

    if s.profile is Profile.embedded:
        path = journal_path(s.data_dir, kind)
        return path.read_bytes() if path.exists() else None
    from kafka import KafkaConsumer

    from streams.broker import admin_kwargs

    consumer = KafkaConsumer(s.topic(SETS[kind]), auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000,
                             **admin_kwargs(s))  # type: ignore[arg-type]
    try:
        last = None
        for m in consumer:
            if m.value:
                last = m.value
        return last
    finally:
        consumer.close()


def _split(kind: str, body: bytes, rep_id: str) -> tuple[list[Any], list[Any], Any]:
    """(the rep's entries, the others, the document) of a set body: GeoJSON features, or
    the roster's list of entries."""
    doc = orjson.loads(body)
    items = doc if kind == "reps" else (doc.get("features") or [])

    def mine(item: Any) -> bool:
        props = item if kind == "reps" else (item.get("properties") or {})
        return bool(props.get("rep_id") == rep_id)

    return [i for i in items if mine(i)], [i for i in items if not mine(i)], doc


def rep_places(value: bytes | None, rep_id: str) -> list[dict[str, Any]]:
    """The rep's own entries in a set record: a place's properties and position, or its
    roster entry."""
    if not value:
        return []
    from streams.geosets import decode_set

    kind, _, body = decode_set(value)
    out = []
    for f in _split(kind, body, rep_id)[0]:
        if kind == "reps":
            out.append({"set": kind, **f})
            continue
        coords = (f.get("geometry") or {}).get("coordinates") or [None, None]
        out.append({"set": kind, **(f.get("properties") or {}), "lon": coords[0],
                    "lat": coords[1]})
    return out


def all_rep_places(s: Settings, rep_id: str) -> list[dict[str, Any]]:
    """The rep's entries in every set of REP_SETS (for export)."""
    return [p for kind in REP_SETS for p in rep_places(geo_set(s, kind), rep_id)]


def remove_rep_places(s: Settings, rep_id: str) -> int:
    """Publish a new version of each set of REP_SETS that holds entries of the rep, without
    them; return how many entries were removed (0: nothing published)."""
    from streams.geosets import decode_set, encode_set, new_version
    from streams.publish import save_geoset

    removed = 0
    for kind in REP_SETS:
        value = geo_set(s, kind)
        if not value:
            continue
        _, version, body = decode_set(value)
        mine, kept, doc = _split(kind, body, rep_id)
        if not mine:
            continue
        if kind == "reps":
            doc = kept
        else:
            doc["features"] = kept
        source = orjson.loads(value).get("source", "")
        save_geoset(s, kind, encode_set(kind, orjson.dumps(doc),
                                        max(new_version(), version + 1),
                                        f"{source} without the entries of {rep_id}"))
        removed += len(mine)
    return removed


def device_records(s: Settings) -> list[DeviceRecord]:
    """Every device record: the journal in the embedded profile, else the devices topic
    (records without a valid signature are left out)."""
    from streams.publish import journal

    if s.profile is Profile.embedded:
        return journal(s).read()
    from kafka import KafkaConsumer

    from streams.broker import admin_kwargs
    from streams.devices import decode, device_key
    from streams.settings import DEVICES

    consumer = KafkaConsumer(s.topic(DEVICES), auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000,
                             **admin_kwargs(s))  # type: ignore[arg-type]
    key = device_key(s)
    recs = []
    try:
        for m in consumer:
            if m.value:
                try:
                    recs.append(decode(m.value, key))
                except DeviceError:
                    continue  # not written by geotel
    finally:
        consumer.close()
    return recs


def revoke_rep(s: Settings, rep_id: str, records: Iterable[DeviceRecord]
               ) -> list[DeviceRecord]:
    """Revoke every active token of the rep's devices (journal and topic); return the
    revocation records."""
    from streams.publish import save_devices

    recs = revocations(records, rep_id)
    if recs:
        save_devices(s, recs)
    return recs


class ServiceOrStore:
    """Read-only queries through the running service, else on chDB opened once."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.client: Any = None

    def __call__(self, query: str) -> bytes:
        if self.client is None:
            try:
                return _post(self.s, "/v1/sql", {"sql": query, "format": "jsonl"},
                             self.s.query.token, self.s.query.max_execution_s + 10)
            except _NotRunning:
                self.client = _open_analyst(self.s)
        body, _ = self.client.run(query, "jsonl")
        return body

    @property
    def direct(self) -> bool:
        return self.client is not None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class _NotRunning(Exception):
    pass


def _base_url(s: Settings) -> str:
    host = "127.0.0.1" if s.web_host in ("0.0.0.0", "::") else s.web_host  # noqa: S104
    return f"http://{host}:{s.web_port}"


def _post(s: Settings, path: str, doc: dict[str, Any], token: Any, timeout_s: float) -> bytes:
    req = urllib.request.Request(  # noqa: S310 - our own service, http only
        _base_url(s) + path, data=orjson.dumps(doc),
        headers={"Content-Type": "application/json"}, method="POST")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token.get_secret_value()}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            err = orjson.loads(raw)
            code, detail = err.get("error", "failed"), err.get("detail", str(err))
        except orjson.JSONDecodeError:
            code, detail = "failed", f"HTTP {exc.code}: {raw[:200]!r}"
        raise QueryError(code, f"{path}: {detail}", exc.code) from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise _NotRunning(str(exc)) from exc


def _open_analyst(s: Settings) -> AnalystSql:
    """Analyst queries on the store opened here (the service is not running)."""
    from streams.storage import analyst_sql

    try:
        return analyst_sql(s, max_concurrent=1)
    except Exception as exc:
        raise RepError(f"the service is not answering on {_base_url(s)} and the store "
                       f"cannot be opened: {exc}") from exc


def _open_store(s: Settings) -> Any:
    from streams.storage import open_clickhouse

    try:
        return open_clickhouse(s, run_migrations=False)
    except Exception as exc:
        raise RepError(f"the service is not answering on {_base_url(s)} and the store "
                       f"cannot be opened: {exc}") from exc


# -- erase ----------------------------------------------------------------------------------
def _territory_rebuild_sql(keys: list[tuple[str, Any]]) -> tuple[str, str]:
    lits = ",".join(f"({sql_str(t)}, toDateTime('{h:%Y-%m-%d %H:%M:%S}', 'UTC'))"
                    for t, h in keys)
    delete = f"ALTER TABLE territory_hourly_agg DELETE WHERE (territory, hour) IN ({lits})"
    where = "WHERE territory_id IS NOT NULL"
    if where not in _TERRITORY_HOURLY_SELECT:  # the rollup's definition changed
        raise RepError("territory_hourly rollup definition not recognised")
    select = _TERRITORY_HOURLY_SELECT.replace(
        where, f"{where} AND (assumeNotNull(CAST(territory_id, 'Nullable(String)')), "
        f"toStartOfHour(ts)) IN ({lits})")
    return delete, f"INSERT INTO territory_hourly_agg\n{select}"


def erase_rep(client: Any, rep_id: str, *, lock: threading.Lock | None = None
              ) -> dict[str, int]:
    """Delete every row of the rep; return rows removed per table (blocking).

    ``territory_hourly_agg`` has no rep column (its reps are hashed into distinct-count
    states): the hours the rep contributed to are recomputed from the remaining events;
    its count is of the (territory, hour) rows recomputed.
    """
    rep = sql_str(check_rep_id(rep_id))
    with lock or nullcontext():
        counts = {t: int(client.query(f"SELECT count() FROM {t} WHERE rep_id = {rep}")
                         .result_rows[0][0]) for t in ERASE_TABLES}
        keys = [(str(t), h) for t, h in client.query(
            "SELECT DISTINCT assumeNotNull(CAST(territory_id, 'Nullable(String)')), "
            f"toStartOfHour(ts) FROM events_all WHERE rep_id = {rep} "
            "AND territory_id IS NOT NULL ORDER BY 1, 2").result_rows]
        for t in ERASE_TABLES:
            if counts[t]:
                client.command(f"ALTER TABLE {t} DELETE WHERE rep_id = {rep}",
                               settings=MUTATION_SETTINGS)
        for i in range(0, len(keys), _KEYS_CHUNK):
            delete, insert = _territory_rebuild_sql(keys[i:i + _KEYS_CHUNK])
            client.command(delete, settings=MUTATION_SETTINGS)
            client.command(insert, settings={"async_insert": 0})
    counts["territory_hourly_agg"] = len(keys)
    return counts


def erase_through_service(s: Settings, rep_id: str) -> dict[str, Any] | None:
    """Erase through the running worker's admin endpoint (tokens, rows, places: the report
    of :func:`erase_direct`); None when no service answers. Nothing is changed here when
    the service refuses."""
    token = privacy_settings(s).admin_token
    try:
        body = _post(s, "/v1/admin/erase", {"rep_id": rep_id}, token, 600)
    except _NotRunning:
        return None
    except QueryError as exc:
        hint = ""
        if exc.status == 404:
            hint = " (this worker has no admin endpoint)"
        elif exc.code == "admin_disabled":
            hint = (": the service owns the store; set GEOTEL_PRIVACY__ADMIN_TOKEN for the "
                    "service and this command, or stop the service")
        raise RepError(f"erase through the service failed: {exc}{hint}") from exc
    return dict(orjson.loads(body))


def erase_direct(s: Settings, rep_id: str) -> dict[str, Any]:
    """Erase with the service stopped (or on a ClickHouse server): revoke the rep's tokens,
    delete its rows, remove its places from the account set. The same report as the admin
    endpoint's."""
    report: dict[str, Any] = {"rep_id": rep_id}
    report["revoked_tokens"] = len(revoke_rep(s, rep_id, device_records(s)))
    try:
        client = _open_store(s)
        try:
            report["removed"] = erase_rep(client, rep_id)
        finally:
            client.close()
        report["removed_places"] = remove_rep_places(s, rep_id)
    except Exception as exc:  # say what was done before the failure
        raise RepError(f"erase of {rep_id} stopped part-way ({report['revoked_tokens']} "
                       f"device token(s) revoked; done: {sorted(report)}): {exc}") from exc
    return report


# -- the worker's admin endpoint ------------------------------------------------------------
async def handle_admin_erase(pipeline: Any, authorization: str | None,
                             body: bytes) -> tuple[int, dict[str, Any]]:
    """POST /v1/admin/erase {"rep_id": ...}: (status, JSON body)."""
    token = privacy_settings(pipeline.settings).admin_token
    if token is None:
        return 403, {"error": "admin_disabled",
                     "detail": "no admin token is configured (privacy.admin_token)"}
    if not bearer_ok(authorization, [token]):
        return 401, {"error": "unauthorized"}
    try:
        rep_id = check_rep_id(orjson.loads(body)["rep_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, RepError) as exc:
        return 400, {"error": "bad_request", "detail": f'expected {{"rep_id": "..."}}: {exc}'}
    if pipeline.clickhouse is None or pipeline.writer is None:
        return 503, {"error": "no_store", "detail": "this process has no ClickHouse"}
    loop = asyncio.get_running_loop()
    s: Settings = pipeline.settings
    tail = getattr(pipeline, "registry_tail", None)
    report: dict[str, Any] = {"rep_id": rep_id}
    try:
        # First the tokens, so the rep's phones cannot upload what is being erased; applied
        # to this process's registry at once (the topic reaches other ingest processes).
        records = (tail.registry.records() if tail is not None else
                   await loop.run_in_executor(None, device_records, s))
        revoked = await loop.run_in_executor(None, revoke_rep, s, rep_id, records)
        if tail is not None:
            tail.registry.apply_all(revoked)
        report["revoked_tokens"] = len(revoked)
    except Exception as exc:
        return 500, {"error": "revoke_failed", "detail": str(exc)[:2000], **report}
    stage = getattr(pipeline, "sessions", None)
    # Forget the rep's cached session state first, under the stage's lock, so no
    # derivation in flight writes its rows back after the delete.
    async with stage.lock if stage is not None else nullcontext():
        if stage is not None:
            stage.states.pop(rep_id, None)
            stage.rep_partition.pop(rep_id, None)
            stage.last_derived.pop(rep_id, None)
        try:
            report["removed"] = await loop.run_in_executor(
                pipeline.ch_executor,
                lambda: erase_rep(pipeline.clickhouse, rep_id, lock=pipeline.writer.lock))
        except Exception as exc:
            return 500, {"error": "erase_failed", "detail": str(exc)[:2000], **report}
    try:
        report["removed_places"] = await loop.run_in_executor(None, remove_rep_places, s,
                                                              rep_id)
    except Exception as exc:
        return 500, {"error": "places_failed", "detail": str(exc)[:2000], **report}
    return 200, report

