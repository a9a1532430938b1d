"""The rules stage: alert rules on the derived topics, published on ``field.alerts`` and
stored in the ``alerts`` table.

A consumer group of its own (``<kafka.group_id>-alerts``) reads ``field.workdays``,
``field.segments`` and ``field.transitions``; processors/alert_inputs.py assembles each
rep-day's derivation from the three, and once all parts of a new version are in hand the
rules of processors/alert_rules.py are evaluated on it. What the ledger has not published
yet is sent on ``field.alerts``, then written to ``alerts_all``; only then are the source
offsets committed (a message is committed once its rep-day was evaluated at its version).

Each ``(alert_id, state)`` is published once: the ledger of a rep-day this process has not
seen yet is rebuilt from the ``alerts`` table first, so a restart or a replay of the topics
(the embedded broker loses them when it stops, and the journal replays the uploads)
publishes nothing again. The one window is a crash after the send and before the store
write: the record is sent again after the restart (at-least-once; consumers drop a repeated
``(alert_id, state)``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from pydantic import ValidationError

import processors.alert_inputs as alert_inputs
from processors.alert_rules import AlertParams, AlertRecord
from schemas.records import RepDay
from schemas.topics import FieldSegmentsMessage, FieldTransitionsMessage, encode
from sinks.rows import ALERT_COLUMN_NAMES, alert_from_row, alert_rows
from sinks.writer import ClickHouseWriter
from streams.batch_consumer import LOG_RESET_CHECK_S, BatchConsumer, Probe, Record
from streams.broker import make_consumer
from streams.settings import SEGMENTS, TRANSITIONS, WORKDAYS, Settings

log = logging.getLogger(__name__)

#: Rep-days whose derivation and ledger the stage keeps in memory (older ones are
#: restored from the store when they come back).
MAX_REP_DAYS = 100_000

STORED_SQL = """
SELECT alert_id, state, rule, rep_id, local_date, at, detail FROM alerts
WHERE rep_id IN {reps} AND local_date IN {days}
"""


def alerts_group(settings: Settings) -> str:
    return f"{settings.kafka.group_id}-alerts"


def _sql_list(values: Iterable[str]) -> str:
    return "(" + ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
                          for v in values) + ")"


@dataclass(frozen=True)
class AlertStageDeps:
    """What the stage needs of its process (built in the worker's composition root)."""

    writer: ClickHouseWriter  # its own writer, sharing the client lock of the others
    reader: Any  # a clickhouse-connect client for the ledger's restore
    lock: threading.Lock  # serialises use of the (chDB) client
    write_executor: Executor  # the one thread that writes
    read_executor: Executor
    send: Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]  # (key, value) -> delivery
    assigned: Callable[[str], Iterable[str]]  # a rep's assigned territories now
    probe: Probe | None = None


class AlertStage:
    def __init__(self, settings: Settings, deps: AlertStageDeps,
                 params: AlertParams | None = None,
                 max_rep_days: int = MAX_REP_DAYS) -> None:
        self.settings = settings
        self.deps = deps
        self.params = params or settings.alerts
        self.inputs = alert_inputs.AlertInputs(max_rep_days)
        t = settings.topic
        self.topics = {t(WORKDAYS): WORKDAYS, t(SEGMENTS): SEGMENTS,
                       t(TRANSITIONS): TRANSITIONS}
        w = settings.worker
        # Range assignment: partition p of the three topics (same key, same partition count)
        # goes to the same member, so each member sees every part of its rep-days.
        self.consumer = BatchConsumer(
            lambda: make_consumer(settings, group_id=alerts_group(settings),
                                  partition_assignment_strategy=(RangePartitionAssignor,)),
            list(self.topics), self._handle, max_records=w.batch_max_messages,
            within_s=w.batch_within_s, autocommit=False, on_revoked=self._revoked,
            log_reset_check_s=LOG_RESET_CHECK_S, probe=deps.probe)
        # Source records in order per partition, with the rep-day and version they carry:
        # acked from the front as their rep-days are evaluated.
        self.pending: dict[TopicPartition, collections.deque[
            tuple[Record, alert_inputs.Key | None, int]]] = {}
        self.consumed = 0
        self.published = 0
        self.invalid = 0
        self.restored_days = 0

    async def run(self) -> None:
        await self.consumer.run()

    async def stop(self) -> None:
        await self.consumer.stop()

    def _revoked(self, partitions: set[int]) -> None:
        # Unacked records of revoked partitions are read again by their new owner. The
        # rep-days this member still waits on stay; the others are forgotten, since another
        # member may publish for them now (restored from the store if they come back).
        for tp in [tp for tp in self.pending if tp.partition in partitions]:
            del self.pending[tp]
        keep = {key for q in self.pending.values() for _, key, _ in q if key is not None}
        self.inputs.forget_except(keep)

    def _decode(self, r: Record) -> tuple[alert_inputs.Key, int]:
        topic = self.topics[r.topic]
        value = r.value or b""
        if topic == WORKDAYS:
            day = RepDay.model_validate_json(value)
            return self.inputs.add_workday(day), day.version
        if topic == SEGMENTS:
            s = FieldSegmentsMessage.model_validate_json(value)
            return (self.inputs.add_segments(s.rep_id, s.local_date, s.version, s.segments),
                    s.version)
        m = FieldTransitionsMessage.model_validate_json(value)
        return (self.inputs.add_transitions(m.rep_id, m.local_date, m.version, m.transitions),
                m.version)

    async def _handle(self, records: Sequence[Record]) -> None:
        keys: list[alert_inputs.Key] = []
        for r in records:
            self.consumed += 1
            key: alert_inputs.Key | None
            try:
                key, version = self._decode(r)
                keys.append(key)
            except (ValidationError, ValueError) as exc:
                # Not a record of the contract (schemas/topics.py): nothing to evaluate.
                self.invalid += 1
                key, version = None, 0
                log.error("%s/%d@%d is not a valid %s message, skipped: %s", r.topic,
                          r.partition, r.offset, self.topics.get(r.topic), exc)
            tp = TopicPartition(r.topic, r.partition)
            self.pending.setdefault(tp, collections.deque()).append((r, key, version))
        due = self.inputs.due(keys)
        await self._restore(self.inputs.needs_restore(due))
        out: list[AlertRecord] = []
        for key in due:
            out += self.inputs.evaluate(key, self.deps.assigned(key[0]), self.params)
        if out:
            await self._publish(out, records)
        await self._ack_settled()

    async def _restore(self, keys: list[alert_inputs.Key]) -> None:
        if not keys:
            return
        sql = STORED_SQL.format(reps=_sql_list(sorted({k[0] for k in keys})),
                                days=_sql_list(sorted({k[1].isoformat() for k in keys})))
        reader, lock = self.deps.reader, self.deps.lock

        def query() -> list[dict[str, Any]]:
            with lock:
                res = reader.query(sql)
            return [dict(zip(res.column_names, row, strict=True)) for row in res.result_rows]

        rows = await asyncio.get_running_loop().run_in_executor(self.deps.read_executor, query)
        by_key: dict[alert_inputs.Key, list[AlertRecord]] = {k: [] for k in keys}
        for row in rows:
            rec = alert_from_row(row)
            got = by_key.get((rec.rep_id, rec.local_date))
            if got is not None:
                got.append(rec)
        for key, recs in by_key.items():
            self.inputs.restore(key, recs)
        self.restored_days += len(keys)

    async def _publish(self, out: list[AlertRecord], records: Sequence[Record]) -> None:
        deliveries = [await self.deps.send(r.rep_id.encode(), encode(r)) for r in out]
        await asyncio.gather(*deliveries)
        self.published += len(out)
        spans: dict[Any, tuple[int, int]] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            lo, hi = spans.get(tp, (r.offset, r.offset))
            spans[tp] = (min(lo, r.offset), max(hi, r.offset))
        w = self.deps.writer
        w.add_batch("alerts_all", ALERT_COLUMN_NAMES, alert_rows(out), spans)
        await asyncio.get_running_loop().run_in_executor(self.deps.write_executor, w.flush)

    async def _ack_settled(self) -> None:
        for q in self.pending.values():
            while q:
                r, key, version = q[0]
                if key is not None and not self.inputs.settled(key, version):
                    break
                q.popleft()
                await self.consumer.ack(r)

    def health(self) -> dict[str, Any]:
        waiting = sum(len(q) for q in self.pending.values())
        return {"consumed_messages": self.consumed, "evaluations": self.inputs.evaluations,
                "published": self.published, "invalid_messages": self.invalid,
                "rep_days": len(self.inputs.days), "restored_rep_days": self.restored_days,
                "waiting_messages": waiting}


def assigned_territories(index: Any, rep_id: str) -> tuple[str, ...]:
    """A rep's territories in the geo index in use (none without an index)."""
    if index is None:
        return ()
    return tuple(index.rep_profile(rep_id).territory_ids)

