"""The Faust application: topics, agents and web views, wired to processors/ and sinks/.

Thin glue. The hot path moves batches: a ``telemetry.raw`` message is one device upload (up
to 500 events), and the intake agent takes many messages at once, validates them, enriches them
with one vectorised lookup, stores them in ClickHouse, publishes per-rep batches on
``telemetry.enriched`` and dead letters on ``telemetry.deadletter`` -- and only then acks the
source messages, so offsets are committed only behind stored data (at-least-once; the sinks
are idempotent).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime as dt
import gc
import logging
import ssl
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import orjson
from clickhouse_connect.driver.client import Client

from processors.intake import Reject, TimeLimits
from processors.intake_columns import IntakeBatch
from schemas.columns import EventColumns
from schemas.derived import DeadLetter, DeadLetterReason, Enrichment
from schemas.topics import encode
from sinks.rows import DEADLETTER_COLUMN_NAMES, deadletter_rows
from sinks.writer import ClickHouseWriter
from streams.alerts import AlertStage, AlertStageDeps, assigned_territories
from streams.batch_consumer import (
    LOG_RESET_CHECK_S,
    BatchConsumer,
    ReadMarks,
    Suspect,
    confirm_log_resets,
    fetched_ends,
    record_probe,
    suspect_assigned,
    verify_suspects,
)
from streams.broker import make_consumer
from streams.enrich import Enricher, NullEnricher, encode_enriched_columns
from streams.geosets import GeoEnricher
from streams.metrics import Metrics
from streams.query import AnalystSql
from streams.sessions import SessionStage
from streams.settings import (
    ALERTS,
    DEADLETTER,
    DEVICES,
    ENRICHED,
    RAW,
    SEGMENTS,
    TRANSITIONS,
    WORKDAYS,
    Settings,
)
from streams.webserver import ConnectionGuard, harden

log = logging.getLogger(__name__)

#: Cyclic garbage collector thresholds of a worker process (Python's are 700, 10, 10).
WORKER_GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Collect less often in a worker. The sessions stage holds every event of the open
    rep-days as models (about ten tracked objects each, millions in all), and with
    Python's thresholds the collector re-scanned them so often that it took about half of
    the cost of decoding an enriched batch (docs/performance.md). Everything alive at
    start-up (modules, Faust, pandas) is frozen out of the scans. Nothing the worker
    allocates depends on a prompt cyclic collection: reference counting frees the rest."""
    gc.freeze()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)


def faust_broker_credentials(settings: Settings) -> Any:
    k = settings.kafka
    if k.security_protocol == "PLAINTEXT":
        return None
    ctx = ssl.create_default_context(cafile=str(k.ssl_cafile) if k.ssl_cafile else None)
    if k.security_protocol == "SSL":
        return ctx
    return faust.SASLCredentials(
        username=k.sasl_username or "",
        password=k.sasl_password.get_secret_value() if k.sasl_password else "",
        mechanism=k.sasl_mechanism or "PLAIN",
        ssl_context=ctx if k.security_protocol == "SASL_SSL" else None,
    )


def make_faust_app(settings: Settings, *, web_enabled: bool = True,
                   app_id: str = "geotel") -> faust.App:
    k = settings.kafka
    return faust.App(
        app_id,
        broker=[f"kafka://{s.strip()}" for s in settings.bootstrap_servers.split(",")],
        broker_credentials=faust_broker_credentials(settings),
        store="memory://",
        autodiscover=False,
        datadir=str((settings.data_dir / "faust").resolve()),
        topic_partitions=k.topic_partitions,
        topic_replication_factor=k.replication_factor,
        broker_rebalance_timeout=k.rebalance_timeout_s,
        broker_session_timeout=k.session_timeout_s,
        broker_heartbeat_interval=k.heartbeat_interval_s,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        # Uploads are ~26 KB: with Faust's 16 KiB default each was a batch of its own, one
        # in flight per partition, and queued uploads waited their turn (p99 ~750 ms).
        producer_max_batch_size=1024 * 1024,
        producer_max_request_size=8 * 1024 * 1024,
        consumer_max_fetch_size=8 * 1024 * 1024,
        web_enabled=web_enabled,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_application_options={"client_max_size": settings.ingest.max_body_bytes},
        stream_buffer_maxsize=4096,
        # One in-flight message per agent (faust-streaming issue 606): scale by partitions.
        agent_supervisor="mode.OneForOneSupervisor",
    )


def intake_group(settings: Settings) -> str:
    """The consumer group of the batch intake (Faust's own group uses Faust's assignor,
    which a plain consumer cannot join)."""
    return f"{settings.kafka.group_id}-intake"


class _IntakeGroup:
    """Prepared intake batches not yet stored: the validated, enriched events (one
    ``EventColumns`` per taken batch), dead letters, the source offset spans and the
    source events to ack once stored."""

    __slots__ = ("batches", "dead", "n_rows", "sources", "spans", "started", "stream",
                 "timer")

    def __init__(self, started: float, stream: Any) -> None:
        self.started = started
        self.stream = stream
        self.timer: asyncio.TimerHandle | None = None
        self.sources: list[Any] = []
        self.batches: list[EventColumns] = []
        self.n_rows = 0
        self.dead: list[tuple[DeadLetter, int]] = []
        self.spans: dict[tuple[str, int], tuple[int, int]] = {}

    def events(self) -> EventColumns:
        """The group's events as one batch."""
        self.batches = [EventColumns.concat(self.batches)]
        return self.batches[0]


async def _positions(consumer: Any, tps: Sequence[Any]) -> dict[Any, int]:
    """The Faust consumer's position in each of ``tps`` (those it cannot tell are left
    out, and checked at the next log reset check)."""
    positions: dict[Any, int] = {}
    for tp in tps:
        try:
            pos = await asyncio.wait_for(consumer.position(tp), LOG_RESET_CHECK_S)
        except Exception as exc:
            log.debug("log reset check: no position for %s: %r", tp, exc)
            continue
        if pos is not None:
            positions[tp] = pos
    return positions


class Pipeline:
    """Owns the Faust app, the ClickHouse writer and the enrichment index of one worker."""

    def __init__(
        self,
        settings: Settings,
        clickhouse: Client | None,
        *,
        enricher: Enricher | None = None,
        reader: Client | None = None,
        analyst: AnalystSql | None = None,
        run_agents: bool = True,
        web_enabled: bool = True,
    ) -> None:
        self.settings = settings
        # Ingest-only processes get their own group id, so they never join (and rebalance)
        # the workers' consumer group.
        self.app = make_faust_app(
            settings, web_enabled=web_enabled,
            app_id=settings.kafka.group_id if run_agents else f"{settings.kafka.group_id}-ingest")
        self.connections: ConnectionGuard | None = None
        if web_enabled:
            web = settings.web
            self.connections = harden(self.app, max_connections=web.max_connections,
                                      header_timeout_s=web.header_timeout_s,
                                      idle_timeout_s=web.idle_timeout_s)
        self.metrics = Metrics()
        # Without an explicit enricher, the worker follows the published territory and account
        # sets (streams/geosets.py); until one is published events pass unenriched.
        self.geo_enabled = enricher is None and run_agents
        self.enricher: Enricher = enricher or (GeoEnricher() if run_agents else NullEnricher())
        self.limits = TimeLimits(settings.ingest.max_clock_ahead_s,
                                 settings.ingest.max_event_age_s)
        # chDB is not safe to drive from several threads at once: one writer thread.
        self.ch_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.clickhouse = clickhouse
        # Analysts' queries get their own client: chDB keeps `readonly` on a client's session
        # once a query set it, which would turn the writer read-only.
        self.reader = reader
        self.query_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="query")
        # The SQL endpoint's own sessions and threads: a long analyst query holds neither
        # the writer nor the threads the map and the sessions stage read with.
        self.analyst = analyst
        self.analyst_executor = ThreadPoolExecutor(
            max_workers=settings.query.max_concurrent, thread_name_prefix="analyst")
        self.writer = (
            ClickHouseWriter(clickhouse, retry_initial_s=settings.worker.sink_retry_initial_s,
                             retry_max_s=settings.worker.sink_retry_max_s,
                             fault_file=settings.clickhouse.fault_file)
            if clickhouse is not None else None
        )
        t = settings.topic
        self.raw_topic = self.app.topic(t(RAW), key_type=bytes, value_type=bytes,
                                        key_serializer="raw", value_serializer="raw")
        self.enriched_topic = self.app.topic(t(ENRICHED), key_type=bytes, value_type=bytes,
                                             key_serializer="raw", value_serializer="raw")
        self.deadletter_topic = self.app.topic(t(DEADLETTER), key_type=bytes, value_type=bytes,
                                               key_serializer="raw", value_serializer="raw")
        self.devices_topic_name = t(DEVICES)
        self.enriched_topic_name = t(ENRICHED)
        self.segments_topic = self._bytes_topic(t(SEGMENTS))
        self.workdays_topic = self._bytes_topic(t(WORKDAYS))
        self.transitions_topic = self._bytes_topic(t(TRANSITIONS))
        self.alerts_topic = self._bytes_topic(t(ALERTS))
        self.sessions: SessionStage | None = None
        self.alerts: AlertStage | None = None
        self.fatal: str | None = None
        self.log_resets = 0  # partitions read again after their log went backwards
        self._log_suspects: dict[Any, Suspect] = {}  # partitions seen behind their log
        self.read_marks = ReadMarks()  # the last enriched record the sessions stage read
        self._probe = record_probe(lambda: make_consumer(settings))
        if run_agents:
            if self.writer is None:
                raise ValueError("a worker needs a ClickHouse client")
            self.intake: BatchConsumer | None = None
            if settings.worker.intake_consumer == "batch":
                w = settings.worker
                self.intake = BatchConsumer(
                    lambda: make_consumer(settings, group_id=intake_group(settings)),
                    t(RAW), self._intake_batch, max_records=w.batch_max_messages,
                    within_s=w.batch_within_s, autocommit=False,
                    log_reset_check_s=LOG_RESET_CHECK_S, probe=self._probe)
                self.app.task(self._run_intake)
            else:
                self.app.agent(self.raw_topic, name="geotel.intake")(self._intake_agent)
            if settings.worker.sessions_enabled:
                self._add_sessions()
            if settings.worker.alerts_enabled:
                self._add_alerts()
            tune_gc()
            self.app.timer(5.0)(self._update_lag)
            self.app.timer(LOG_RESET_CHECK_S)(self._check_log_reset)

    async def _check_log_reset(self) -> None:
        """Timer: follow a partition whose log went backwards.

        When the embedded (in-memory) broker restarts, its topics are created again empty
        and offsets start from 0, but this consumer keeps its fetch positions from the old
        broker. Tansu answers a fetch beyond a partition's end with no records (not
        OFFSET_OUT_OF_RANGE), so ``auto_offset_reset`` never fires and the messages of the
        new log below the old position would never be read. So: an assigned partition
        whose end offset is below the consumer's position is read again from the start of
        its log, as Kafka's ``auto_offset_reset=earliest`` would. What was read from the
        old log is stored already (sinks are idempotent), and Faust's bookkeeping of the
        old offsets (acked, committed, read) is dropped with it; the sessions stage forgets
        the partition's reps, which it rebuilds from ClickHouse. A Kafka cluster only
        shows this after an unclean leader election, where the same applies.
        """
        consumer = self.app.consumer
        try:
            tps = list(consumer.assignment())
        except Exception:
            return
        if not tps:
            return
        # Positions first, then the end offsets: read the other way round, messages
        # consumed in between would put the position past an end offset that was already
        # out of date.
        positions = await _positions(consumer, tps)
        # The ends the last fetches reported (streams/batch_consumer.py fetched_ends: the
        # embedded broker's ListOffsets, which ``highwaters`` asks, is short of the end).
        ends: dict[Any, int | None] = {**fetched_ends(consumer, list(positions))}
        check = confirm_log_resets(positions, ends, self._log_suspects, self.read_marks)
        grown, later = await verify_suspects(check.recheck, self._probe)
        self._log_suspects = {**check.suspects, **later}
        behind: list[tuple[Any, int | None, int]] = [
            (tp, end, pos) for tp, (end, pos) in check.confirmed.items()]
        behind += [(tp, None, check.recheck[tp].position) for tp in grown
                   if tp not in check.confirmed]
        if not behind:
            return
        try:
            starts = await consumer.earliest_offsets(*(tp for tp, _, _ in behind))
        except Exception:
            starts = {}
        for tp, end, pos in behind:
            self._log_suspects.pop(tp, None)
            start = int(starts.get(tp) or 0)
            for book in ("_acked", "_acked_index", "_gap", "_committed_offset",
                         "_read_offset"):
                getattr(consumer, book, {}).pop(tp, None)
            await consumer.seek(tp, start)
            self.log_resets += 1
            log.warning("%s/%d: the log %s, below this consumer's position %d (the broker "
                        "lost its data, e.g. an in-memory broker restarted): reading it "
                        "again from offset %d", tp.topic, tp.partition,
                        f"ends at {end}" if end is not None else
                        "went back and grew again with other records", pos, start)
        if self.sessions is not None:
            self.sessions.drop_partitions({tp.partition for tp, _, _ in behind
                                           if tp.topic == self.enriched_topic_name})

    async def _update_lag(self) -> None:
        """Consumer lag per assigned partition: log end offset minus committed offset
        (Faust commits the next offset to read)."""
        gauge = self.metrics.consumer_lag
        intake = getattr(self, "intake", None)
        if intake is not None:
            try:
                for tp, lag in (await intake.lag()).items():
                    gauge.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
            except Exception as exc:  # the broker may be away; lag is best effort
                log.debug("cannot read the intake's lag: %r", exc)
        consumer = self.app.consumer
        tps = list(consumer.assignment())
        if not tps:
            return
        ends = fetched_ends(consumer, tps)
        committed = getattr(consumer, "_committed_offset", {})
        read = getattr(consumer, "_read_offset", {})
        for tp in tps:
            done = committed.get(tp)
            if done is None:
                r = read.get(tp)
                done = r + 1 if r is not None else 0
            end = ends.get(tp)
            if end is not None:
                gauge.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, end - done))

    def _bytes_topic(self, name: str) -> Any:
        return self.app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw")

    def _add_sessions(self) -> None:
        w = self.settings.worker
        stage = self.sessions = SessionStage(
            self, self.settings.sessions, self.settings.transitions,
            derive_interval_s=w.derive_interval_s, max_cached_events=w.max_cached_events,
            derive_budget=w.derive_budget, max_derive_interval_s=w.max_derive_interval_s)
        self.app.agent(self.enriched_topic, name="geotel.sessions")(stage.run)
        self.app.timer(max(0.5, min(w.derive_interval_s, 2.0)))(stage.tick)

        @self.app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _revoked(sender: Any, revoked: Any, **kw: Any) -> None:
            stage.drop_partitions({tp.partition for tp in revoked
                                   if tp.topic == self.enriched_topic_name})

        @self.app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def _assigned(sender: Any, assigned: Any, **kw: Any) -> None:
            # Still paused: their positions are the group's commits, checked against the
            # records read (a commit from a log the broker lost would skip the new log's).
            # (one this worker never read has nothing to compare)
            positions = await _positions(self.app.consumer, [
                tp for tp in assigned
                if tp.topic == self.enriched_topic_name and tp in self.read_marks.last])
            self._log_suspects = suspect_assigned(positions, self._log_suspects,
                                                  self.read_marks)

    def _add_alerts(self) -> None:
        if self.writer is None or self.clickhouse is None:
            raise ValueError("the rules stage needs a ClickHouse client")
        s = self.settings
        writer = ClickHouseWriter(self.clickhouse, retry_initial_s=s.worker.sink_retry_initial_s,
                                  retry_max_s=s.worker.sink_retry_max_s,
                                  fault_file=s.clickhouse.fault_file)
        writer.lock = self.writer.lock  # one chDB client lock for all writers
        topic = self.alerts_topic

        async def send(key: bytes, value: bytes) -> Any:
            return await topic.send(key=key, value=value)

        self.alerts = AlertStage(s, AlertStageDeps(
            writer=writer, reader=self.reader or self.clickhouse, lock=self.writer.lock,
            write_executor=self.ch_executor, read_executor=self.query_executor, send=send,
            assigned=lambda rep: assigned_territories(getattr(self.enricher, "index", None),
                                                      rep),
            probe=self._probe))
        self.app.task(self._run_alerts)

    async def _run_alerts(self) -> None:
        if self.alerts is None:
            raise RuntimeError("the rules stage was not set up")
        await self.geo_ready()  # rules on the territories in use, not on none
        try:
            await self.alerts.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.fatal is None:
                self.fatal = f"alerts: {type(exc).__name__}: {exc}"[:500]
                log.critical("rules stage failed; its batch stays uncommitted: %r", exc)
            raise

    async def geo_ready(self) -> None:
        """Wait until the territory/account sets published so far are loaded."""
        tail = getattr(self, "geo_tail", None)
        if tail is not None and not tail.ready.is_set():
            log.info("waiting for the territory and account sets to load")
            await tail.ready.wait()

    # -- state for /health and /metrics -----------------------------------------------------
    def health(self) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        status = "ok"
        if self.writer is not None:
            st = self.writer.stats
            writers = self._writers()
            failing = [w for w in writers if w.degraded]
            parts["sink"] = {"status": "degraded" if failing else "ok",
                             "rows": st.rows, "batches": st.batches,
                             "failures": sum(w.stats.failures for w in writers),
                             "last_error": next((w.stats.last_error for w in failing), None)}
            if failing:
                status = "degraded"
        if self.fatal is not None:
            parts["fatal"] = self.fatal
            status = "down"
        geo_tail = getattr(self, "geo_tail", None)
        if geo_tail is not None:
            parts["geo"] = {"version": geo_tail.loaded_version, "ready": geo_tail.ready.is_set(),
                            "sets": dict(sorted(geo_tail.loaded_sets.items())),
                            "last_error": geo_tail.last_error}
            if not geo_tail.ready.is_set():
                status = "starting" if status == "ok" else status
        tail = getattr(self, "registry_tail", None)
        if tail is not None:
            parts["devices"] = {"status": "ok" if tail.caught_up else "loading",
                                "tokens": len(tail.registry)}
            if not tail.caught_up:
                status = "starting" if status == "ok" else status
        try:
            tps = set(self.app.consumer.assignment())
            if getattr(self, "intake", None) is not None:
                tps |= self.intake.assignment()  # type: ignore[union-attr]
            assigned = sorted(f"{tp.topic}/{tp.partition}" for tp in tps)
        except Exception:
            assigned = []
        parts["consumer"] = {"assigned": assigned}
        if self.sessions is not None:
            stage = self.sessions
            states = list(stage.states.values())
            parts["sessions"] = {"reps": len(states), "derivations": stage.derivations,
                                 "rebuilt_reps": stage.rebuilt_reps,
                                 "skipped_rebuilds": stage.skipped_rebuilds,
                                 "consumed_messages": stage.consumed_messages,
                                 "pending_messages": len(stage.pending),
                                 "dirty_reps": sum(1 for rs in states if rs.dirty),
                                 "derive_interval_s": round(stage.pacer.interval_s, 1),
                                 "derive_duty": round(stage.pacer.duty, 3),
                                 "cached_events": sum(rs.event_count() for rs in states)}
        if self.alerts is not None:
            parts["alerts"] = self.alerts.health()
        return {"status": status, "components": parts}

    def _writers(self) -> list[ClickHouseWriter]:
        """The intake's writer and the sessions stage's, which share the chDB client."""
        assert self.writer is not None
        return ([self.writer] + ([self.sessions.writer] if self.sessions else [])
                + ([self.alerts.deps.writer] if self.alerts else []))

    def refresh_gauges(self) -> None:
        if self.writer is not None:
            self.metrics.sink_degraded.set(1 if any(w.degraded for w in self._writers()) else 0)

    # -- intake ---------------------------------------------------------------------------
    # Taken batches are prepared (validated, enriched, turned into rows) on the event loop
    # and accumulated into a group; a group is stored (one insert per table, in the writer
    # thread) and published when it holds ``flush_rows`` rows or is ``flush_interval_s``
    # old, while the next group is prepared. Groups are stored in order, and the source
    # messages of a group are acked only after its insert and its enriched-topic and
    # dead-letter sends completed, so offsets are never committed past unwritten data.
    async def _intake_agent(self, stream: faust.StreamT) -> None:
        cfg = self.settings.worker
        # noack_take: we ack after the batch is stored (take() would ack on failure too).
        batches = stream.noack_take(  # type: ignore[attr-defined]
            cfg.batch_max_messages, cfg.batch_within_s)
        self._group = None
        self._inflight = collections.deque()
        try:
            async for events in batches:
                await self._intake_step(events, stream)
        finally:
            self._drop_group()

    async def _run_intake(self) -> None:
        """The intake on the batch consumer (``worker.intake_consumer = "batch"``)."""
        assert self.intake is not None
        self._group = None
        self._inflight = collections.deque()
        try:
            await self.intake.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)
            raise
        finally:
            self._drop_group()

    async def _intake_batch(self, records: Sequence[Any]) -> None:
        await self._intake_step(records, self.intake)

    async def _intake_step(self, events: Sequence[Any], acker: Any) -> None:
        """Prepare one taken batch into the current group; store the group when it is big
        or old enough. ``acker.ack(source)`` is called for each source once it is stored."""
        cfg = self.settings.worker
        loop = asyncio.get_running_loop()
        await self.geo_ready()
        self._raise_if_flush_failed()
        group = self._group
        if group is None:
            group = self._group = _IntakeGroup(loop.time(), acker)
            group.timer = loop.call_later(cfg.flush_interval_s, self._flush_due, group)
        try:
            self._prepare(events, group)
        except Exception as exc:
            self._fail(exc)
            raise
        if (group.n_rows >= cfg.flush_rows
                or loop.time() - group.started >= cfg.flush_interval_s):
            self._launch_flush()
        # At most one group stored while the next one waits behind it: holding the intake
        # here is the backpressure (a sink outage stops it).
        while len(self._inflight) > 1:
            await asyncio.wait({self._inflight[0]})
            self._raise_if_flush_failed()

    def _drop_group(self) -> None:
        if self._group is not None and self._group.timer is not None:
            self._group.timer.cancel()
        self._group = None

    _group: _IntakeGroup | None = None  # the group being prepared
    _inflight: collections.deque[asyncio.Task[None]]  # flushes started, oldest first

    def _fail(self, exc: BaseException) -> None:
        # Nothing of this batch is acked; say so loudly (/health "down", 503) so an
        # orchestrator restarts the process rather than keeping a stalled worker.
        if self.fatal is None:
            self.fatal = f"intake: {type(exc).__name__}: {exc}"[:500]
            log.critical("intake agent failed; the batch stays uncommitted: %r", exc)

    def _raise_if_flush_failed(self) -> None:
        q = self._inflight
        while q and q[0].done():
            task = q.popleft()
            exc = None if task.cancelled() else task.exception()
            if task.cancelled() or exc is not None:
                raise exc or asyncio.CancelledError()

    def _flush_due(self, group: _IntakeGroup) -> None:
        """Timer: a group that stopped growing is stored ``flush_interval_s`` after it
        started, however few rows it holds."""
        if self._group is group:
            self._launch_flush()

    def _launch_flush(self) -> asyncio.Task[None] | None:
        group, self._group = self._group, None
        if group is None:
            return None
        if group.timer is not None:
            group.timer.cancel()
        prev = self._inflight[-1] if self._inflight else None
        task = asyncio.get_running_loop().create_task(self._flush_group(group, prev))
        self._inflight.append(task)
        return task

    def _prepare(self, events: Sequence[faust.EventT], group: _IntakeGroup) -> None:
        """Validate and enrich one taken batch into ``group`` (CPU only, no I/O)."""
        batch = IntakeBatch(self.limits)
        now = dt.datetime.now(dt.UTC)
        spans = group.spans
        for event in events:
            msg = event.message
            tp = (msg.topic, msg.partition)
            # The broker timestamp stands in for received_at when a producer other than the
            # ingest endpoint wrote the message: replaying the topic derives the same result.
            fallback = (dt.datetime.fromtimestamp(msg.timestamp, dt.UTC)
                        if msg.timestamp else now)
            batch.add(event.value, fallback)  # type: ignore[arg-type]
            span = spans.get(tp)
            spans[tp] = ((msg.offset, msg.offset) if span is None
                         else (min(span[0], msg.offset), max(span[1], msg.offset)))
        decoded, rejects = batch.build()
        for m, rj in rejects:
            source = events[m]
            group.dead.append((self._deadletter(rj, source.message, source.value,  # type: ignore[arg-type]
                                                now), rj.index))
        if events:
            self.metrics.events_in.labels(topic=events[0].message.topic).inc(
                len(decoded) + len(rejects))
        # One lookup per taken batch: the whole batch sees one index version.
        columns = self.enricher.enrich_columns(decoded)
        group.batches.append(columns)
        group.n_rows += len(columns)
        group.sources.extend(events)

    async def _flush_group(self, group: _IntakeGroup,
                           prev: asyncio.Task[None] | None) -> None:
        """Store and publish one group after the one before it, then ack its sources."""
        try:
            if prev is not None:
                await asyncio.wait({prev})
                if prev.cancelled() or prev.exception() is not None:
                    raise RuntimeError("an earlier intake batch failed; not acking this one")
            await self._store_and_publish(group)
            if group.stream is not None:
                for ev in group.sources:
                    await group.stream.ack(ev)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)
            raise

    async def _store_and_publish(self, group: _IntakeGroup) -> None:
        assert self.writer is not None
        loop = asyncio.get_running_loop()
        events = group.events()  # one batch, before the writer thread reads it
        stored = loop.run_in_executor(self.ch_executor, self._store_group, group)
        try:
            sends = []
            for key, value in encode_enriched_columns(events):
                sends.append(await self.enriched_topic.send(key=key, value=value))
            for d, _ in group.dead:
                self.metrics.deadletters.labels(reason=d.reason.value).inc()
                dl_key = d.rep_id.encode() if d.rep_id else None
                sends.append(await self.deadletter_topic.send(key=dl_key, value=encode(d)))
            if sends:
                await asyncio.gather(*sends)
        finally:
            await stored  # never leave the writer thread working on a group we gave up
        self.metrics.events_out.labels(
            topic=self.enriched_topic.get_topic_name()).inc(group.n_rows)
        if group.dead:
            self.metrics.events_out.labels(
                topic=self.deadletter_topic.get_topic_name()).inc(len(group.dead))

    def _store_group(self, group: _IntakeGroup) -> int:
        """In the writer thread (the only user of ``self.writer``): one insert per table."""
        assert self.writer is not None
        started = time.monotonic()
        if group.n_rows:
            self.writer.add_arrow("events_all", group.events().store_table(), group.spans)
        if group.dead:
            self.writer.add_batch("deadletters", DEADLETTER_COLUMN_NAMES,
                                  deadletter_rows(group.dead), group.spans)
        written = self.writer.flush()
        self.metrics.sink_batch_seconds.observe(time.monotonic() - started)
        self.metrics.sink_batch_rows.observe(written)
        return written

    def _deadletter(self, rj: Reject, msg: Any, value: bytes | None,
                    now: dt.datetime) -> DeadLetter:
        payload_b64 = None
        if rj.index >= 0 and rj.item is not None:
            try:
                payload = orjson.dumps(rj.item, default=str).decode()
            except TypeError:
                payload = repr(rj.item)
        else:
            raw = value or b""
            payload = raw.decode("utf-8", "replace")
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                payload_b64 = base64.b64encode(raw).decode()
        reason = (DeadLetterReason(rj.reason) if rj.reason in DeadLetterReason.__members__
                  else DeadLetterReason.invalid)
        event_id = None
        if rj.event_id:
            try:
                event_id = uuid.UUID(rj.event_id)
            except ValueError:
                event_id = None
        return DeadLetter(reason=reason, detail=rj.detail, source_topic=msg.topic,
                          source_partition=msg.partition, source_offset=msg.offset,
                          event_id=event_id, rep_id=rj.rep_id, payload=payload,
                          payload_b64=payload_b64, at=now)


__all__ = ["Enrichment", "Pipeline", "make_faust_app"]
