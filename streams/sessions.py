"""The sessions stage: per-rep session state over ``telemetry.enriched`` (key rep_id).

Glue around :class:`processors.RepSessionState`:

* uploads of a rep are added to its state without deriving; a dirty rep-day is derived as
  soon as the stage has read its input to the end (every assigned ``telemetry.enriched``
  partition taken up to the end offset its last fetch reported), and while input keeps
  coming at most every ``worker.derive_interval_s`` (many uploads, one derivation); both
  paced to a share of the time (streams/pacing.py), by the agent after a batch or by a
  timer;
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
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from aiokafka.partitioner import murmur2
from pydantic import TypeAdapter, ValidationError

import geo.timezones as timezones
from geo import GeoIndex
from processors import Place, RepDayUpdate, RepSessionState, SessionParams
from processors.transition_ledger import TransitionLedger
from processors.transitions import TransitionParams, derive_transitions_columns
from schemas.derived import DeadLetter, DeadLetterReason, EnrichedBatch, EnrichedEvent
from schemas.topics import FieldSegmentsMessage, FieldTransitionsMessage, encode
from sinks.rows import (
    DEADLETTER_COLUMN_NAMES,
    REP_DAILY_COLUMN_NAMES,
    SEGMENT_COLUMN_NAMES,
    SEGMENT_CURRENT_COLUMN_NAMES,
    TRANSITION_COLUMN_NAMES,
    TRANSITION_CURRENT_COLUMN_NAMES,
    deadletter_rows,
    model_rows,
    segment_current_rows,
    stored_event,
    transition_current_rows,
)
from sinks.writer import ClickHouseWriter
from streams.batch_consumer import fetched_ends
from streams.pacing import DerivePacer, caught_up
from streams.privacy import (
    closed_watermarks,
    day_bounds,
    delete_uncounted,
    event_time_windows,
    off_duty_windows,
    open_day_rows,
    redact_payload,
    redact_rep_days,
    redact_segments_for_topic,
    redact_transitions_for_topic,
    sweep_closed_days,
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

STORED_REPS_SQL = "SELECT DISTINCT rep_id FROM events_all"

# The ids each open day of rebuilt reps has in segments_current or transitions_current
# (tombstones dropped by FINAL; a week of local_date is a partition, so FINAL need not merge
# across them).
KNOWN_IDS_SQL = """
SELECT rep_id, local_date, groupArray({id}) AS ids
FROM {table} FINAL
WHERE rep_id IN {{reps}} AND local_date IN {{days}}
GROUP BY rep_id, local_date
SETTINGS do_not_merge_across_partitions_select_final = 1
"""
KNOWN_SEGMENTS_SQL = KNOWN_IDS_SQL.format(id="segment_id", table="segments_current")
KNOWN_TRANSITIONS_SQL = KNOWN_IDS_SQL.format(id="transition_id", table="transitions_current")


#: How often the timer looks for idle reps whose days can close, seconds.
IDLE_CHECK_INTERVAL_S = 5.0
#: A rep counts as idle (close_idle) after this many derivation intervals without new
#: events, and at least IDLE_AFTER_MIN_S.
IDLE_AFTER_INTERVALS = 20
IDLE_AFTER_MIN_S = 5.0
#: The first privacy sweep runs this long after the stage starts (then every
#: ``privacy.sweep_interval_s``).
SWEEP_FIRST_AFTER_S = 60.0


def _date(v: Any) -> dt.date:
    return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v))


def _sql_list(values: Sequence[str]) -> str:
    return "(" + ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
                          for v in values) + ")"


class SessionStage:
    def __init__(self, pipeline: Any, params: SessionParams, transition_params: TransitionParams,
                 *, derive_interval_s: float, max_cached_events: int,
                 derive_budget: float = 0.3, max_derive_interval_s: float = 300.0) -> None:
        self.p = pipeline
        self.params = params
        self.tparams = transition_params
        self.derive_interval_s = derive_interval_s
        # Derivation re-reads whole rep-days: under load it is paced to a share of the time.
        self.pacer = DerivePacer(derive_interval_s, budget=derive_budget,
                                 max_s=max_derive_interval_s)
        self.max_cached_events = max_cached_events
        self.states: OrderedDict[str, RepSessionState] = OrderedDict()  # LRU order
        self.rep_partition: dict[str, int] = {}
        self.last_derived: dict[str, float] = {}
        self.transition_ids = TransitionLedger()  # what transitions_current holds per open day
        self.pending: list[tuple[Any, set[str]]] = []  # (source event, reps in it)
        self.lock = asyncio.Lock()
        self.stream: Any = None
        self.writer = ClickHouseWriter(
            pipeline.clickhouse, retry_initial_s=pipeline.settings.worker.sink_retry_initial_s,
            retry_max_s=pipeline.settings.worker.sink_retry_max_s,
            fault_file=pipeline.settings.clickhouse.fault_file)
        self.writer.lock = pipeline.writer.lock  # one chDB client lock for all writers
        self.rebuilt_reps = 0
        # Cold start without the redundant reload (see _delivered_whole): the reps that had
        # stored events when the stage started (None: unknown, so every new rep is rebuilt),
        # the reps it has held since, and per partition whether the first message it read
        # since the partition was assigned (or reset) was the log's offset 0.
        self.stored_at_start: frozenset[str] | None = self._stored_reps()
        self.seen_reps: set[str] = set()
        self.from_start: dict[int, bool] = {}
        self.skipped_rebuilds = 0  # reps first seen whose stored events the topic delivers
        self.consumed_messages = 0  # telemetry.enriched messages taken (for /health)
        self.derivations = 0
        # idle reps' days (see close_idle): event-time progress per telemetry.enriched
        # partition, and when the idle check and the privacy sweep run next
        self.partition_clock: dict[int, dt.datetime] = {}
        self.idle_closed_days = 0
        self.swept_days = 0
        self._next_idle_check = 0.0
        self._next_sweep: float | None = None
        # Has the stage read all its input (set by tick)? Then the idle clock may use the
        # wall clock: no unread event waits behind it (docs/privacy.md, "Idle reps").
        self.input_read = False

    # -- the agent ------------------------------------------------------------------------
    async def run(self, stream: Any) -> None:
        self.stream = stream
        cfg = self.p.settings.worker
        # Load the compiled derivation kernels now (from their disk cache; compiled once
        # after an install), not in the first derivation. Imported here: numba takes a
        # second to import, and processes without this stage never need it.
        from processors import kernels

        await asyncio.get_running_loop().run_in_executor(None, kernels.warm_up)
        async for events in stream.noack_take(cfg.batch_max_messages, cfg.batch_within_s):
            await self.p.geo_ready()
            async with self.lock:
                try:
                    await self.add_batch(events)
                    self.consumed_messages += len(events)  # pending until derived
                    marks = self.p.read_marks  # for the log reset check (streams/app.py)
                    for event in events:
                        m = event.message
                        marks.note((m.topic, m.partition), m.offset, (m.timestamp or 0) * 1000,
                                   m.value)
                    await self.derive_due(force=False)
                except Exception as exc:
                    self.p.fatal = f"sessions: {type(exc).__name__}: {exc}"[:500]
                    log.critical("sessions agent failed; its batches stay uncommitted: %r", exc)
                    raise

    async def tick(self) -> None:
        """Timer: derive what waited for the interval when no new batch came; close the
        days of idle reps (:meth:`close_idle`); now and then sweep closed rep-days that were
        never redacted (:meth:`sweep`)."""
        if self.stream is None or self.lock.locked():
            return
        async with self.lock:
            await self.derive_due(force=False)
            mono = time.monotonic()
            if mono >= self._next_idle_check:
                self._next_idle_check = mono + IDLE_CHECK_INTERVAL_S
                self.input_read = await self.input_caught_up()
                await self.close_idle()
            await self._sweep_due(mono)

    async def add_batch(self, events: Sequence[Any]) -> None:
        by_rep: dict[str, list[Any]] = {}
        origin: dict[Any, Any] = {}  # event_id -> source message, for dead letters
        dead: list[tuple[DeadLetter, int]] = []
        now = dt.datetime.now(dt.UTC)
        if events:
            self.p.metrics.events_in.labels(topic=events[0].message.topic).inc(len(events))
        for event in events:
            msg = event.message
            self.from_start.setdefault(msg.partition, msg.offset == 0)
            reps: set[str] = set()
            try:
                # pydantic's Rust validation: a plain-Python decode of the same messages
                # with trusted construction measured twice as slow (docs/performance.md)
                batch = _BATCH.validate_json(event.value)
            except ValidationError as exc:
                dead.append((self._dead(msg, "invalid", f"not an enriched batch: {exc}"[:500],
                                        None, event.value, now), -1))
            else:
                other = next((e.rep_id for e in batch.events if e.rep_id != batch.rep_id), None)
                if other is not None:  # the state would refuse it (and fail the stage)
                    dead.append((self._dead(msg, "invalid", f"an event of rep {other} in the "
                                            f"batch of rep {batch.rep_id}"[:500], None,
                                            event.value, now), -1))
                else:
                    by_rep.setdefault(batch.rep_id, []).extend(batch.events)
                    for e in batch.events:
                        origin[e.event_id] = msg
                    reps.add(batch.rep_id)
                    self.rep_partition[batch.rep_id] = msg.partition
            self.pending.append((event, reps))
        unknown = [r for r in by_rep if r not in self.states]
        if unknown:
            whole = [r for r in unknown if self._delivered_whole(r)]
            for rep in whole:  # nothing stored the topic will not deliver: no reload
                self.states[rep] = self._new_state(rep, by_rep[rep])
            self.skipped_rebuilds += len(whole)
            rest = [r for r in unknown if r not in self.states]
            if rest:
                await self._rebuild(rest, by_rep)
            self.seen_reps.update(unknown)
        index = self.p.enricher.index if hasattr(self.p.enricher, "index") else None
        priv = self.p.settings.privacy
        uncounted: list[tuple[str, Any, dt.datetime, dt.datetime]] = []  # stored, never count
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
                # never counted, so never redacted with a day: coarsened now
                payload = redact_payload(ev.model_dump_json().encode(),
                                         priv.off_duty_positions,
                                         priv.coarsen_decimals) if ev else b""
                dead.append((self._dead(origin.get(rj.event_id), rj.reason.value, rj.detail,
                                        rj.rep_id, payload, now, event_id=rj.event_id), item))
                if ev is not None and ev.received_at is not None:
                    uncounted.append((rep, ev.event_id, ev.ts, ev.received_at))
            uncounted.extend((rep, e.event_id, e.ts, e.received_at) for e in out.superseded
                             if e.received_at is not None)
        if dead:
            await self._write_dead(dead)
        if uncounted:
            await asyncio.get_running_loop().run_in_executor(
                self.p.query_executor, functools.partial(
                    delete_uncounted, self.p.clickhouse, uncounted, self.writer.lock))

    # -- derivation -----------------------------------------------------------------------
    async def derive_due(self, force: bool) -> None:
        mono = time.monotonic()
        index = getattr(self.p.enricher, "index", None)
        priv = self.p.settings.privacy
        updates: list[RepDayUpdate] = []
        transitions: list[Any] = []
        retracted: list[tuple[str, dt.date, int, tuple[uuid.UUID, ...]]] = []
        closed: dict[str, tuple[str, list[dt.date]]] = {}
        watermarks: dict[str, dt.datetime] = {}
        interval = self.pacer.interval_for(await self.input_caught_up())
        busy_from = time.perf_counter()
        derived = self.derivations
        for rep, state in self.states.items():
            if not state.dirty:
                continue
            if not force and mono - self.last_derived.get(rep, 0.0) < interval:
                continue
            # Derive without closing: a day derived and closed in one call (a backlog of
            # several days) still needs its events for the transitions.
            out = state.derive(GeoPlaces(index, rep), close=False)
            self.last_derived[rep] = mono
            self.derivations += 1
            for u in out.updates:
                trs = derive_transitions_columns(rep, u.local_date,
                                                 state.pings_of(u.local_date), self.tparams,
                                                 version=u.version)
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
                gone = self.transition_ids.record(rep, u.local_date,
                                                  (t.transition_id for t in trs))
                if gone:
                    retracted.append((rep, u.local_date, u.version, gone))
            days = state.close_days()
            if days:
                self.transition_ids.keep(rep, state.open_days())
                closed[rep] = (str(state.tz), days)
                if state.watermark is not None:
                    watermarks[rep] = state.watermark
        if self.derivations > derived:
            self.pacer.record(time.perf_counter() - busy_from)
        if updates:
            await self._publish(updates, transitions, retracted)  # rows first, then redaction
        if closed:
            await self._redact(closed, watermarks)
        await self._ack_clean()
        self._evict()
        self.transition_ids.keep_reps(self.states)

    async def input_caught_up(self) -> bool:
        """Has the stage taken every message of its ``telemetry.enriched`` partitions up to
        the end offsets the consumer's last fetches reported (nothing more is waiting, not
        even in the consumer's buffers)? Where it has taken nothing since the partition was
        assigned, the consumer's position stands for what it read."""
        topic = self.p.enriched_topic_name
        try:
            consumer = self.p.app.consumer
            tps = [tp for tp in consumer.assignment() if tp.topic == topic]
        except Exception:
            return False
        ends = fetched_ends(consumer, tps)
        marks = self.p.read_marks.last
        next_offsets: dict[Any, int] = {}
        for tp in tps:
            mark = marks.get((tp.topic, tp.partition))
            if mark is not None:
                next_offsets[tp] = mark[0] + 1
            elif ends.get(tp, 1) > 0:
                try:
                    pos = await asyncio.wait_for(consumer.position(tp), 1.0)
                except Exception:
                    return False
                if pos is not None:
                    next_offsets[tp] = pos
            else:
                next_offsets[tp] = 0
        return caught_up(tps, ends, next_offsets)

    async def _redact(self, closed: dict[str, tuple[str, list[dt.date]]],
                      watermarks: dict[str, dt.datetime] | None = None) -> bool:
        """Closed rep-days: their stored off-duty positions lose precision (docs/privacy.md),
        and they are recorded in ``closed_rep_days`` (with the watermark that closed them).
        All of them in a few batched mutations. A failure is logged, never fatal: the sweep
        redacts the days later. Returns whether it succeeded."""
        loop = asyncio.get_running_loop()
        priv = self.p.settings.privacy
        try:
            # Not the ClickHouse executor: the intake's inserts queue there, and redaction
            # waits for its mutations (outside the writer lock) for seconds.
            await loop.run_in_executor(self.p.query_executor, functools.partial(
                redact_rep_days, self.p.clickhouse, closed, priv, lock=self.writer.lock,
                watermarks=watermarks))
        except Exception as exc:
            log.error("privacy redaction of %d closed rep-days failed (the sweep retries): "
                      "%r", sum(len(d) for _, d in closed.values()), exc)
            return False
        return True

    def late_cutoff(self, rep: str) -> dt.datetime | None:
        """Events of ``rep`` before this are ``too_late`` (the held state's watermark minus
        ``lateness_s``); None when the stage does not hold the rep. Ingest in this process
        refuses them (streams/ingest.py)."""
        state = self.states.get(rep)
        if state is None or state.watermark is None:
            return None
        return state.watermark - dt.timedelta(seconds=self.params.lateness_s)

    # -- idle reps and the privacy sweep ---------------------------------------------------
    def idle_clock(self, rep: str) -> dt.datetime | None:
        """The watermark an idle rep is given: the event-time progress of its
        telemetry.enriched partition (the newest watermark of any rep seen there) minus
        ``max_future_s``, the most a phone's clock may run ahead of the server and still
        count. ``None`` while nothing was seen on the partition.

        Event time while the stage is behind: a worker that lags behind its partition, or
        a consumer group replaying the topics, closes days only as far as the events it has
        read, so no day closes while events of the rep that could still be on time wait
        unread behind it. Once it has read everything (``input_read``), the worker's wall
        clock too, so the bound holds on partitions without traffic (after a restart, say):
        an upload arriving now is judged against the rep's watermark, which the same clock
        then moved."""
        part = self.rep_partition.get(rep)
        if part is None:
            part = self._partition_of(rep)
        clock = self.partition_clock.get(part) if part is not None else None
        if self.input_read:  # everything read: the wall clock bounds it too
            wall = dt.datetime.now(dt.UTC)
            clock = wall if clock is None else max(clock, wall)
        if clock is None:
            return None
        return clock - dt.timedelta(seconds=self.params.max_future_s)

    def _advance_partition_clocks(self) -> None:
        for rep, state in self.states.items():
            part, wm = self.rep_partition.get(rep), state.watermark
            if part is None or wm is None:
                continue
            cur = self.partition_clock.get(part)
            if cur is None or wm > cur:
                self.partition_clock[part] = wm

    async def close_idle(self) -> int:
        """Close the days of reps that stopped uploading.

        A rep-day closes when its local end is ``lateness_s`` behind the rep's watermark,
        which only the rep's own events move. A rep is idle when nothing of it was derived
        for ``IDLE_AFTER_INTERVALS`` derivation intervals (5 min by default), so a phone
        sending a backlog or a history in several uploads is not cut off between them.
        An idle rep's watermark is moved up to
        :meth:`idle_clock` when that closes one of its days (never otherwise: a higher
        watermark also rejects older late events); the closed days are redacted and
        recorded, and the emptied state is evicted (a rebuild restores its watermark from
        ``closed_rep_days``, so a closed day is never re-opened). Under the lateness rule
        the rep's events of those days would be ``too_late`` had it uploaded anything
        current, so none can still legitimately arrive. Returns the days closed."""
        self._advance_partition_clocks()
        late = dt.timedelta(seconds=self.params.lateness_s)
        closed: dict[str, tuple[str, list[dt.date]]] = {}
        watermarks: dict[str, dt.datetime] = {}
        mono = time.monotonic()
        quiet = max(IDLE_AFTER_MIN_S, IDLE_AFTER_INTERVALS * self.derive_interval_s)
        for rep, state in self.states.items():
            if state.dirty or state.is_empty:
                continue  # dirty: derive_due closes its days after deriving
            if mono - self.last_derived.get(rep, -math.inf) < quiet:
                continue  # uploaded lately (a backlog or history sent in parts)
            clock = self.idle_clock(rep)
            if clock is None or (state.watermark is not None and clock <= state.watermark):
                continue
            first = state.open_days()[0]
            if day_bounds(first, state.tz)[1] + late > clock:
                continue
            out = state.advance_watermark(clock)
            if out.closed:
                closed[rep] = (str(state.tz), list(out.closed))
                watermarks[rep] = clock
        if not closed:
            return 0
        n = sum(len(d) for _, d in closed.values())
        self.idle_closed_days += n
        log.info("closed %d rep-days of %d idle reps", n, len(closed))
        if await self._redact(closed, watermarks):
            pending = {r for _, reps in self.pending for r in reps}
            for rep in closed:
                if self.states[rep].is_empty and rep not in pending:
                    del self.states[rep]
                    self.last_derived.pop(rep, None)
        return n

    async def restore_watermarks(self, reps: Sequence[str]) -> None:
        """States created for ``reps`` (rebuilt) start at the newest watermark that closed
        one of their days, so stored events and late uploads of a closed day are
        ``too_late`` instead of re-opening it (days closed while the rep was idle)."""
        reader = self.p.reader
        if reader is None or not reps:
            return

        def query() -> dict[str, dt.datetime]:
            with self.p.writer.lock:
                return closed_watermarks(reader, list(reps))

        marks = await asyncio.get_running_loop().run_in_executor(self.p.query_executor, query)
        for rep, wm in marks.items():
            if rep in self.states:
                self.states[rep].advance_watermark(wm)

    def _partition_of(self, rep: str) -> int | None:
        """The telemetry.enriched partition of a rep key (the producer's default murmur2
        partitioner), or None when the partition count is unknown."""
        try:
            n = self.p.app.consumer.topic_partitions(self.p.enriched_topic_name)
        except Exception:
            n = None
        n = n or self.p.settings.kafka.topic_partitions
        return (murmur2(rep.encode()) & 0x7FFFFFFF) % n if n else None

    def _owned(self) -> set[int]:
        try:
            return {tp.partition for tp in self.p.app.consumer.assignment()
                    if tp.topic == self.p.enriched_topic_name}
        except Exception:
            return set()

    async def _sweep_due(self, mono: float) -> None:
        priv = self.p.settings.privacy
        if priv.sweep_interval_s <= 0 or priv.off_duty_positions == "keep":
            return
        if self._next_sweep is None:  # the first one a minute after start
            self._next_sweep = mono + min(SWEEP_FIRST_AFTER_S, priv.sweep_interval_s)
        if mono < self._next_sweep:
            return
        self._next_sweep = mono + priv.sweep_interval_s
        await self.sweep()

    async def sweep(self) -> int:
        """Redact closed rep-days that were never redacted (:func:`sweep_closed_days`): days
        that closed while no worker ran, or whose redaction failed. Only reps of this
        worker's partitions, judged by their stored watermark or :meth:`idle_clock`; reps
        whose open days this stage holds are left to it. Returns the days redacted."""
        owned = self._owned()
        if not owned:
            return 0

        def skip(rep: str) -> bool:
            state = self.states.get(rep)
            if state is not None and not state.is_empty:
                return True
            return self.rep_partition.get(rep, self._partition_of(rep)) not in owned

        loop = asyncio.get_running_loop()
        try:
            days, _ = await loop.run_in_executor(self.p.query_executor, functools.partial(
                sweep_closed_days, self.p.clickhouse, self.p.settings.privacy,
                self.params.lateness_s, clock=self.idle_clock, skip=skip,
                lock=self.writer.lock))
        except Exception as exc:
            log.error("privacy sweep failed (retried at the next one): %r", exc)
            return 0
        self.swept_days += days
        return days

    async def _publish(self, updates: list[RepDayUpdate], transitions: list[Any],
                       retracted: Sequence[tuple[str, dt.date, int, Sequence[uuid.UUID]]] = (),
                       ) -> None:
        w = self.writer
        w.add_batch("rep_daily_all", REP_DAILY_COLUMN_NAMES,
                    model_rows([u.summary for u in updates], REP_DAILY_COLUMN_NAMES), {})
        segs = [s for u in updates for s in u.segments]
        if segs:  # every derivation, for audit
            w.add_batch("segments_all", SEGMENT_COLUMN_NAMES,
                        model_rows(segs, SEGMENT_COLUMN_NAMES), {})
        current = segment_current_rows(updates)  # what the segments and visits views read
        if current:
            w.add_batch("segments_current", SEGMENT_CURRENT_COLUMN_NAMES, current, {})
        if transitions:  # every derivation, for audit
            w.add_batch("transitions_all", TRANSITION_COLUMN_NAMES,
                        model_rows(transitions, TRANSITION_COLUMN_NAMES), {})
        current_trs = transition_current_rows(transitions, retracted)  # the transitions view
        if current_trs:
            w.add_batch("transitions_current", TRANSITION_CURRENT_COLUMN_NAMES, current_trs, {})
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
            sends.append(await self.p.workdays_topic.send(key=key, value=encode(u.summary)))
            segs_msg = FieldSegmentsMessage(rep_id=u.rep_id, local_date=u.local_date,
                                            version=u.version, segments=list(u.segments),
                                            retracted=list(u.retracted))
            sends.append(await self.p.segments_topic.send(key=key, value=encode(segs_msg)))
            trs_msg = FieldTransitionsMessage(
                rep_id=u.rep_id, local_date=u.local_date, version=u.version,
                transitions=by_day.get((u.rep_id, u.local_date), []))
            sends.append(await self.p.transitions_topic.send(key=key, value=encode(trs_msg)))
        await asyncio.gather(*sends)
        out = self.p.metrics.events_out
        for topic in (self.p.workdays_topic, self.p.segments_topic, self.p.transitions_topic):
            out.labels(topic=topic.get_topic_name()).inc(len(updates))

    async def _ack_clean(self) -> None:
        # The dirty reps once per call, not per waiting message: this runs after every
        # batch, and in a backlog thousands of messages wait for their reps' derivation.
        dirty = {r for r, st in self.states.items() if st.dirty}
        keep: list[tuple[Any, set[str]]] = []
        for event, reps in self.pending:
            if not reps.isdisjoint(dirty):
                keep.append((event, reps))
            else:
                await self.stream.ack(event)
        self.pending = keep

    # -- the cache ------------------------------------------------------------------------
    def _new_state(self, rep: str, events: Sequence[Any] = ()) -> RepSessionState:
        # Roster, territory, home, else the rep's first position: never UTC by default.
        index = getattr(self.p.enricher, "index", None)
        return RepSessionState(rep, timezones.rep_zone(index, rep, events), self.params)

    def _stored_reps(self) -> frozenset[str] | None:
        """The reps with stored events, read when the stage starts (before this worker's
        intake stores anything); None when the store cannot say."""
        reader = self.p.reader
        if reader is None:
            return None
        try:
            with self.p.writer.lock:
                rows = reader.query(STORED_REPS_SQL).result_rows
        except Exception as exc:  # the stage then rebuilds every rep it does not hold
            log.warning("cannot list the reps with stored events: %r", exc)
            return None
        return frozenset(str(r[0]) for r in rows)

    def _log_reset_seen(self) -> bool:
        intake = getattr(self.p, "intake", None)
        return bool(getattr(self.p, "log_resets", 0) or getattr(intake, "log_resets", 0))

    def _delivered_whole(self, rep: str) -> bool:
        """Will the topic deliver every stored event of ``rep``, a rep this stage does not
        hold? Then rebuilding it from the store would only load events that arrive again
        (on a cold start with a backlog, everything the intake has stored ahead of this
        stage), so its state starts empty instead.

        True only when all of these hold: the rep had no stored events when the stage
        started and the stage has never held it (so every stored event of it was stored,
        and published on ``telemetry.enriched``, while this process ran); the first
        message the stage read from the rep's partition since it was assigned was offset
        0 (the stage reads the partition's whole log: no committed offset, and no
        truncation by retention); and no consumer of this process saw a log go backwards
        (an in-memory broker that restarted loses what was published before: then every
        rep is rebuilt, as after any restart). A worker restarted mid-day finds the rep's
        events in the store and rebuilds it."""
        if self.stored_at_start is None or rep in self.stored_at_start:
            return False
        if rep in self.seen_reps or self._log_reset_seen():
            return False
        part = self.rep_partition.get(rep)
        return part is not None and self.from_start.get(part, False)

    async def _rebuild(self, reps: list[str],
                       new: dict[str, list[Any]] | None = None) -> None:
        """Load the open days of reps this worker does not hold from the stored events."""
        reader = self.p.reader
        for rep in reps:
            self.states[rep] = self._new_state(rep, (new or {}).get(rep, ()))
        await self.restore_watermarks(reps)  # closed days stay closed (close_idle)
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
            await self._seed_known_ids([r for r in chunk if r in by_rep])

    async def _seed_known_ids(self, reps: list[str]) -> None:
        """Rebuilt states learn the segment and transition ids stored for their open days,
        so their first derivation tombstones the ids that vanished (the lost state knew
        them)."""
        days = sorted({d.isoformat() for r in reps for d in self.states[r].open_days()})
        if not reps or not days or self.p.reader is None:
            return
        reader = self.p.reader
        where = {"reps": _sql_list(reps), "days": _sql_list(days)}

        def query() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            with self.p.writer.lock:
                return (list(reader.query(KNOWN_SEGMENTS_SQL.format(**where)).result_rows),
                        list(reader.query(KNOWN_TRANSITIONS_SQL.format(**where)).result_rows))

        segs, trs = await asyncio.get_running_loop().run_in_executor(self.p.query_executor,
                                                                     query)
        for rep, day, ids in segs:
            self.states[rep].seed_segment_ids(_date(day), (uuid.UUID(str(i)) for i in ids))
        stored: dict[str, dict[dt.date, list[uuid.UUID]]] = {r: {} for r in reps}
        for rep, day, ids in trs:
            stored[rep][_date(day)] = [uuid.UUID(str(i)) for i in ids]
        for rep, by_day in stored.items():
            self.transition_ids.seed(rep, by_day)

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
        for part in partitions:  # read again from where it resumes, not from the start
            self.from_start.pop(part, None)
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
            key=d.rep_id.encode() if d.rep_id else None, value=encode(d)) for d, _ in dead]
        await asyncio.gather(*sends)
        self.p.metrics.events_out.labels(
            topic=self.p.deadletter_topic.get_topic_name()).inc(len(dead))
