"""The sessions stage: per-rep session state over ``telemetry.enriched`` (key rep_id).

Glue around :class:`processors.RepSessionState`:

* uploads of a rep are added to its state without deriving; a dirty rep-day is derived at
  most every ``sessions.derive_interval_s`` (many uploads, one derivation), by the agent or
  by a timer when traffic stops;
* the derived records go to ClickHouse (``rep_daily``, ``segments``, ``transitions``) and to
  ``field.workdays``, ``field.segments``, ``field.transitions``; events the state refuses
  (``too_late``, ``in_future``) go to the dead-letter topic and table;
* a source message is acked only when every rep in it has been derived and written, so
  offsets are never committed past underived data;
* the in-memory state is a cache of ClickHouse: a rep the worker does not hold (after a
  restart, a rebalance, or eviction under the memory budget) is rebuilt from the stored
  ``events`` of its open days before its new events are added. Derivation is a function
  of the event set and the version is the set's size, so a rebuilt rep derives exactly
  what the lost state would have.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import TypeAdapter, ValidationError

from geo import GeoIndex
from processors import Place, RepDayUpdate, RepSessionState, SessionParams
from processors.transitions import TransitionParams, derive_transitions
from schemas.derived import DeadLetter, DeadLetterReason, EnrichedBatch, EnrichedEvent
from sinks.rows import (
    DEADLETTER_COLUMN_NAMES,
    REP_DAILY_COLUMN_NAMES,
    SEGMENT_COLUMN_NAMES,
    TRANSITION_COLUMN_NAMES,
    deadletter_rows,
    model_rows,
    stored_event,
)
from sinks.writer import ClickHouseWriter
from streams.privacy import (
    day_bounds,
    event_time_windows,
    off_duty_windows,
    open_day_rows,
    redact_closed_days,
    redact_segments_for_topic,
    redact_transitions_for_topic,
)

log = logging.getLogger(__name__)
_BATCH = TypeAdapter(EnrichedBatch)
_EVENTS: TypeAdapter[list[Any]] = TypeAdapter(list[EnrichedEvent])


class GeoPlaces:
    """:class:`processors.PlaceLookup` over the GeoIndex in use, for one rep: customers and
    offices are everyone's, a home only its own rep's."""

    def __init__(self, index: GeoIndex | None, rep_id: str) -> None:
        self.index = index
        self.rep_id = rep_id

    def nearest(self, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
                ) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float64],
                           npt.NDArray[np.object_]]:
        n = len(lon)
        if self.index is None or n == 0:
            return (np.full(n, None, dtype=object), np.full(n, np.nan),
                    np.full(n, None, dtype=object))
        res = self.index.lookup(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
        ids = res.account_id.copy()
        dist = res.account_distance_m.copy()
        kinds = res.account_kind.copy()
        for i in np.flatnonzero(kinds == "home"):
            if self.index.place(str(ids[i])).rep_id != self.rep_id:
                ids[i], dist[i], kinds[i] = None, np.nan, None
        return ids, dist, kinds

    def place(self, account_id: str) -> Place | None:
        if self.index is None:
            return None
        try:
            p = self.index.place(account_id)
        except KeyError:
            return None
        if p.kind == "home" and p.rep_id != self.rep_id:
            return None
        kind = p.kind if p.kind in ("customer", "office", "home") else "customer"
        return Place(p.account_id, p.lon, p.lat, p.radius_m, kind)  # type: ignore[arg-type]


REBUILD_SQL = """
WITH marks AS (
    SELECT rep_id, max(ts) AS wm FROM events_all WHERE rep_id IN {reps} GROUP BY rep_id
)
SELECT e.* FROM events AS e INNER JOIN marks AS m ON e.rep_id = m.rep_id
WHERE e.rep_id IN {reps}
  AND e.ts >= m.wm - INTERVAL {horizon_s} SECOND
  AND e.event_id NOT IN (SELECT assumeNotNull(event_id) FROM deadletters
                         WHERE reason IN ('too_late', 'in_future') AND event_id IS NOT NULL
                           AND rep_id IN {reps})
"""


def _sql_list(values: Sequence[str]) -> str:
    return "(" + ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
                          for v in values) + ")"


class SessionStage:
    def __init__(self, pipeline: Any, params: SessionParams, transition_params: TransitionParams,
                 *, derive_interval_s: float, max_cached_events: int) -> None:
        self.p = pipeline
        self.params = params
        self.tparams = transition_params
        self.derive_interval_s = derive_interval_s
        self.max_cached_events = max_cached_events
        self.states: OrderedDict[str, RepSessionState] = OrderedDict()  # LRU order
        self.rep_partition: dict[str, int] = {}
        self.last_derived: dict[str, float] = {}
        self.pending: list[tuple[Any, set[str]]] = []  # (source event, reps in it)
        self.lock = asyncio.Lock()
        self.stream: Any = None
        self.writer = ClickHouseWriter(
            pipeline.clickhouse, retry_initial_s=pipeline.settings.worker.sink_retry_initial_s,
            retry_max_s=pipeline.settings.worker.sink_retry_max_s,
            fault_file=pipeline.settings.clickhouse.fault_file)
        self.writer.lock = pipeline.writer.lock  # one chDB client lock for all writers
        self.rebuilt_reps = 0
        self.derivations = 0

    # -- the agent ------------------------------------------------------------------------
    async def run(self, stream: Any) -> None:
        self.stream = stream
        cfg = self.p.settings.worker
        async for events in stream.noack_take(cfg.batch_max_messages, cfg.batch_within_s):
            await self.p.geo_ready()
            async with self.lock:
                try:
                    await self.add_batch(events)
                    await self.derive_due(force=False)
                except Exception as exc:
                    self.p.fatal = f"sessions: {type(exc).__name__}: {exc}"[:500]
                    log.critical("sessions agent failed; its batches stay uncommitted: %r", exc)
                    raise

    async def tick(self) -> None:
        """Timer: derive what waited for the interval when no new batch came."""
        if self.stream is None or self.lock.locked():
            return
        async with self.lock:
            await self.derive_due(force=False)

    async def add_batch(self, events: Sequence[Any]) -> None:
        by_rep: dict[str, list[Any]] = {}
        origin: dict[Any, Any] = {}  # event_id -> source message, for dead letters
        dead: list[tuple[DeadLetter, int]] = []
        now = dt.datetime.now(dt.UTC)
        if events:
            self.p.metrics.events_in.labels(topic=events[0].message.topic).inc(len(events))
        for event in events:
            msg = event.message
            reps: set[str] = set()
            try:
                batch = _BATCH.validate_json(event.value)
            except ValidationError as exc:
                dead.append((self._dead(msg, "invalid", f"not an enriched batch: {exc}"[:500],
                                        None, event.value, now), -1))
            else:
                by_rep.setdefault(batch.rep_id, []).extend(batch.events)
                for e in batch.events:
                    origin[e.event_id] = msg
                reps.add(batch.rep_id)
                self.rep_partition[batch.rep_id] = msg.partition
            self.pending.append((event, reps))
        unknown = [r for r in by_rep if r not in self.states]
        if unknown:
            await self._rebuild(unknown)
        index = self.p.enricher.index if hasattr(self.p.enricher, "index") else None
        for rep, evs in by_rep.items():
            state = self.states[rep]
            self.states.move_to_end(rep)
            out = state.add(evs, places=GeoPlaces(index, rep), derive=False)
            if out.rejected:
                by_id = {e.event_id: e for e in evs}
            for rj in out.rejected:
                ev = by_id.get(rj.event_id)
                # The table keys dead letters by source position and item; an event id
                # folded to 31 bits tells the rejected events of one message apart.
                item = rj.event_id.int % (2**31 - 1)
                dead.append((self._dead(origin.get(rj.event_id), rj.reason.value, rj.detail,
                                        rj.rep_id,
                                        ev.model_dump_json().encode() if ev else b"", now,
                                        event_id=rj.event_id), item))
        if dead:
            await self._write_dead(dead)

    # -- derivation -----------------------------------------------------------------------
    async def derive_due(self, force: bool) -> None:
        mono = time.monotonic()
        index = getattr(self.p.enricher, "index", None)
        priv = self.p.settings.privacy
        updates: list[RepDayUpdate] = []
        transitions: list[Any] = []
        closed: dict[str, tuple[str, list[dt.date]]] = {}
        for rep, state in self.states.items():
            if not state.dirty:
                continue
            if not force and mono - self.last_derived.get(rep, 0.0) < self.derive_interval_s:
                continue
            # Derive without closing: a day derived and closed in one call (a backlog of
            # several days) still needs its events for the transitions.
            out = state.derive(GeoPlaces(index, rep), close=False)
            self.last_derived[rep] = mono
            self.derivations += 1
            for u in out.updates:
                trs = [t.model_copy(update={"version": u.version}) for t in derive_transitions(
                    rep, u.local_date, state.events_of(u.local_date), self.tparams)]
                if priv.off_duty_positions != "keep":
                    bounds = day_bounds(u.local_date, u.summary.tz)
                    w = off_duty_windows(u.summary, u.segments, bounds, priv.include_breaks)
                    ew = event_time_windows(u.summary, u.segments, bounds,
                                            priv.include_breaks)
                    u = u.model_copy(update={"segments": tuple(redact_segments_for_topic(
                        u.segments, w, priv.off_duty_positions, priv.coarsen_decimals))})
                    trs = redact_transitions_for_topic(trs, ew, priv.off_duty_positions,
                                                       priv.coarsen_decimals)
                updates.append(u)
                transitions.extend(trs)
            days = state.close_days()
            if days:
                closed[rep] = (str(state.tz), days)
        if updates:
            await self._publish(updates, transitions)  # final rows first, then redaction
        if closed and priv.off_duty_positions != "keep":
            await self._redact(closed)
        await self._ack_clean()
        self._evict()

    async def _redact(self, closed: dict[str, tuple[str, list[dt.date]]]) -> None:
        """Closed rep-days: their stored off-duty positions lose precision (docs/privacy.md).
        A failure is logged and retried at the next close of the rep, never fatal."""
        loop = asyncio.get_running_loop()
        priv = self.p.settings.privacy
        for rep, (tz, days) in closed.items():
            try:
                await loop.run_in_executor(self.p.ch_executor, functools.partial(
                    redact_closed_days, self.p.clickhouse, rep, tz, days, priv,
                    lock=self.writer.lock))
            except Exception as exc:
                log.error("privacy redaction of %s %s failed: %r", rep, days, exc)

    async def _publish(self, updates: list[RepDayUpdate], transitions: list[Any]) -> None:
        w = self.writer
        w.add_batch("rep_daily_all", REP_DAILY_COLUMN_NAMES,
                    model_rows([u.summary for u in updates], REP_DAILY_COLUMN_NAMES), {})
        segs = [s for u in updates for s in u.segments]
        if segs:
            w.add_batch("segments_all", SEGMENT_COLUMN_NAMES,
                        model_rows(segs, SEGMENT_COLUMN_NAMES), {})
        if transitions:
            w.add_batch("transitions_all", TRANSITION_COLUMN_NAMES,
                        model_rows(transitions, TRANSITION_COLUMN_NAMES), {})
        loop = asyncio.get_running_loop()
        started = loop.time()
        rows = w.pending_rows
        await loop.run_in_executor(self.p.ch_executor, w.flush)
        self.p.metrics.sink_batch_seconds.observe(loop.time() - started)
        self.p.metrics.sink_batch_rows.observe(rows)
        sends = []
        by_day: dict[tuple[str, dt.date], list[Any]] = {}
        for t in transitions:
            by_day.setdefault((t.rep_id, t.local_date), []).append(t)
        for u in updates:
            key = u.rep_id.encode()
            sends.append(await self.p.workdays_topic.send(
                key=key, value=u.summary.model_dump_json().encode()))
            body = {"rep_id": u.rep_id, "local_date": u.local_date.isoformat(),
                    "version": u.version,
                    "segments": [s.model_dump(mode="json") for s in u.segments],
                    "retracted": [str(r) for r in u.retracted]}
            sends.append(await self.p.segments_topic.send(key=key, value=orjson.dumps(body)))
            trs = by_day.get((u.rep_id, u.local_date), [])
            tbody = {"rep_id": u.rep_id, "local_date": u.local_date.isoformat(),
                     "version": u.version, "transitions": [t.model_dump(mode="json")
                                                           for t in trs]}
            sends.append(await self.p.transitions_topic.send(key=key, value=orjson.dumps(tbody)))
        await asyncio.gather(*sends)
        out = self.p.metrics.events_out
        for topic in (self.p.workdays_topic, self.p.segments_topic, self.p.transitions_topic):
            out.labels(topic=topic.get_topic_name()).inc(len(updates))

    async def _ack_clean(self) -> None:
        keep: list[tuple[Any, set[str]]] = []
        for event, reps in self.pending:
            if any(r in self.states and self.states[r].dirty for r in reps):
                keep.append((event, reps))
            else:
                await self.stream.ack(event)
        self.pending = keep

    # -- the cache ------------------------------------------------------------------------
    def _new_state(self, rep: str) -> RepSessionState:
        index = getattr(self.p.enricher, "index", None)
        tz = index.rep_profile(rep).tz if index is not None else "UTC"
        return RepSessionState(rep, tz, self.params)

    async def _rebuild(self, reps: list[str]) -> None:
        """Load the open days of reps this worker does not hold from the stored events."""
        reader = self.p.reader
        for rep in reps:
            self.states[rep] = self._new_state(rep)
        if reader is None:
            return
        horizon = int(self.params.lateness_s + 3 * 86400)
        loop = asyncio.get_running_loop()
        for i in range(0, len(reps), 500):
            chunk = reps[i:i + 500]
            sql = REBUILD_SQL.format(reps=_sql_list(chunk), horizon_s=horizon)

            def query(sql: str = sql) -> list[dict[str, Any]]:
                with self.p.writer.lock:
                    res = reader.query(sql)
                return [dict(zip(res.column_names, row, strict=True)) for row in res.result_rows]

            rows = await loop.run_in_executor(self.p.query_executor, query)
            if not rows:
                continue
            by_rep: dict[str, list[dict[str, Any]]] = {}
            for r in rows:
                by_rep.setdefault(r["rep_id"], []).append(stored_event(r))
            index = getattr(self.p.enricher, "index", None)
            for rep, evs in by_rep.items():
                # Closed days are final (and may be redacted): never re-derive them.
                evs = open_day_rows(evs, self.states[rep].tz, self.params.lateness_s)
                events = _EVENTS.validate_python(evs)
                self.states[rep].add(events, places=GeoPlaces(index, rep), derive=False)
                self.rebuilt_reps += 1

    def _evict(self) -> None:
        """Keep the cached events under the budget: drop least recently used clean reps
        (they are rebuilt from ClickHouse when they upload again)."""
        total = sum(s.event_count() for s in self.states.values())
        if total <= self.max_cached_events:
            return
        pending_reps = {r for _, reps in self.pending for r in reps}
        for rep in list(self.states):
            if total <= self.max_cached_events * 0.8:
                break
            st = self.states[rep]
            if st.dirty or rep in pending_reps:
                continue
            total -= st.event_count()
            del self.states[rep]
            self.last_derived.pop(rep, None)

    def drop_partitions(self, partitions: set[int]) -> None:
        """Partitions moved to another worker: forget their reps (and unacked messages),
        so a later reassignment rebuilds them from the store instead of a stale cache."""
        for rep in [r for r, p in self.rep_partition.items() if p in partitions]:
            self.states.pop(rep, None)
            self.rep_partition.pop(rep, None)
            self.last_derived.pop(rep, None)
        self.pending = [(e, r) for e, r in self.pending if e.message.partition not in partitions]

    # -- dead letters ---------------------------------------------------------------------
    def _dead(self, msg: Any, reason: str, detail: str, rep_id: str | None, payload: bytes,
              now: dt.datetime, event_id: Any = None) -> DeadLetter:
        return DeadLetter(reason=DeadLetterReason(reason), detail=detail,
                          source_topic=msg.topic if msg else self.p.enriched_topic_name,
                          source_partition=msg.partition if msg else -1,
                          source_offset=msg.offset if msg else -1,
                          event_id=event_id, rep_id=rep_id,
                          payload=payload.decode("utf-8", "replace"), at=now)

    async def _write_dead(self, dead: list[tuple[DeadLetter, int]]) -> None:
        for d, _ in dead:
            self.p.metrics.deadletters.labels(reason=d.reason.value).inc()
        self.writer.add_batch("deadletters", DEADLETTER_COLUMN_NAMES, deadletter_rows(dead), {})
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.p.ch_executor, self.writer.flush)
        sends = [await self.p.deadletter_topic.send(
            key=d.rep_id.encode() if d.rep_id else None, value=d.model_dump_json().encode())
            for d, _ in dead]
        await asyncio.gather(*sends)
        self.p.metrics.events_out.labels(
            topic=self.p.deadletter_topic.get_topic_name()).inc(len(dead))
