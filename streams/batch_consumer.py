"""A consumer that hands a topic to its handler in batches and commits only what is done.

Faust streams pay their bookkeeping (an Event, a ref-counted ack, the conductor) per message,
which caps a plain agent near 17k messages/s here; raw ``getmany`` reads several hundred
thousand. An upload on ``telemetry.raw`` holds about three events, so the intake reads the
topic with this consumer instead: aiokafka's batched fetch, one handler call per batch, and a
commit of the batch's offsets only after the handler returned (the handler returns once the
batch is stored). Delivery is at-least-once like the agents': a crash or a rebalance between
the write and the commit re-delivers the batch, and the sinks fold it.

The consumer has a group of its own (``<group_id>-intake``): Faust's group uses Faust's
partition assignor, which a plain aiokafka member cannot join.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)

#: Seconds between two checks for a log that went backwards (two checks confirm one).
LOG_RESET_CHECK_S = 2.0


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message, with the attributes the intake reads of a Faust event
    (``record.message.offset`` and ``record.value`` both work)."""

    topic: str
    partition: int
    offset: int
    timestamp: float | None  # seconds since the epoch (the broker's or the producer's)
    key: bytes | None
    value: bytes | None

    @property
    def message(self) -> Record:
        return self


Handler = Callable[[Sequence[Record]], Awaitable[None]]


def confirm_log_resets(positions: Mapping[Any, int], ends: Mapping[Any, int | None],
                       suspects: Mapping[Any, int]
                       ) -> tuple[dict[Any, tuple[int, int]], dict[Any, int]]:
    """Partitions whose log went backwards: ``(confirmed, suspects now)``.

    ``positions`` must be read before ``ends`` (the other order races with consumption). A
    partition is a suspect when its log ends below the consumer's position; it is confirmed
    (``partition -> (end, position)``) when it was a suspect at the previous check too, at
    the same position: a lost log also stalls the consumer (fetches return nothing).

    >>> confirm_log_resets({"p": 13}, {"p": 12}, {})
    ({}, {'p': 13})
    >>> confirm_log_resets({"p": 13}, {"p": 0}, {"p": 13})
    ({'p': (0, 13)}, {'p': 13})
    """
    behind = {tp: (end, pos) for tp, pos in positions.items()
              if (end := ends.get(tp)) is not None and end < pos}
    confirmed = {tp: ep for tp, ep in behind.items() if suspects.get(tp) == ep[1]}
    return confirmed, {tp: pos for tp, (_, pos) in behind.items()}


async def follow_log_resets(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition],
                            suspects: Mapping[TopicPartition, int]
                            ) -> tuple[list[TopicPartition], dict[TopicPartition, int]]:
    """Seek every partition of ``tps`` whose log went backwards (see
    :func:`confirm_log_resets`) to the start of its log: ``(partitions sought, suspects
    now)``. Used by the intake consumer and by the tails of the device and geo-set topics
    (which must see the records published after the broker came back, at offsets below
    their old positions). Broker errors are logged and retried at the next check."""
    if not tps:
        return [], {}
    # Positions first, then the end offsets (the other order races with consumption).
    positions: dict[TopicPartition, int] = {}
    for tp in tps:
        try:
            positions[tp] = await consumer.position(tp)
        except Exception as exc:
            log.debug("log reset check: no position for %s: %r", tp, exc)
    try:
        ends = await consumer.end_offsets(list(positions))
    except Exception as exc:  # the broker may be away; try again later
        log.debug("log reset check: %r", exc)
        return [], dict(suspects)
    confirmed, now = confirm_log_resets(positions, ends, suspects)
    for tp, (end, pos) in confirmed.items():
        now.pop(tp, None)
        await consumer.seek_to_beginning(tp)
        log.warning("%s/%d: the log ends at %d, below this consumer's position %d (the "
                    "broker lost its data): reading it again from the start",
                    tp.topic, tp.partition, end, pos)
    return list(confirmed), now


class LogResetWatch:
    """For a tail that reads whole logs with manually assigned partitions (the devices and
    geo-set topics): every :data:`LOG_RESET_CHECK_S`, :func:`follow_log_resets` on its
    partitions, so records published after an in-memory broker restart, below the old
    position, are still read. ``resets`` counts the partitions read again."""

    def __init__(self) -> None:
        self.resets = 0
        self._suspects: dict[TopicPartition, int] = {}
        self._next = time.monotonic() + LOG_RESET_CHECK_S

    async def check(self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> None:
        if time.monotonic() < self._next:
            return
        resets, self._suspects = await follow_log_resets(consumer, tps, self._suspects)
        self.resets += len(resets)
        self._next = time.monotonic() + LOG_RESET_CHECK_S


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Let the batch in hand finish, and commit what is acked, while the partitions are
        # still ours.
        await self.owner._idle.wait()
        consumer = self.owner.consumer
        if consumer is not None:
            await self.owner._commit_acked(consumer)
        for tp in revoked:
            self.owner._acked.pop(tp, None)
        if self.owner.on_revoked is not None:
            self.owner.on_revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("intake partitions assigned: %s",
                 sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))


class BatchConsumer:
    """With ``autocommit`` (the default) a batch is committed when the handler returned;
    without it the handler (or what it hands the batch to) calls :meth:`ack` for each
    record once it is stored, in order, and acked offsets are committed every
    ``commit_interval_s`` -- the way a Faust stream's acks work."""

    def __init__(self, consumer_factory: Callable[[], AIOKafkaConsumer], topic: str,
                 handler: Handler, *, max_records: int, within_s: float,
                 on_revoked: Callable[[set[int]], None] | None = None,
                 autocommit: bool = True, commit_interval_s: float = 1.0,
                 log_reset_check_s: float = LOG_RESET_CHECK_S) -> None:
        self._factory = consumer_factory
        self.topic = topic
        self.handler = handler
        self.max_records = max_records
        self.within_s = within_s
        self.on_revoked = on_revoked
        self.autocommit = autocommit
        self.commit_interval_s = commit_interval_s
        self.log_reset_check_s = log_reset_check_s
        self.consumer: AIOKafkaConsumer | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._acked: dict[TopicPartition, int] = {}  # next offset to commit
        self._committed: dict[TopicPartition, int] = {}
        self.batches = 0
        self.records = 0
        self.log_resets = 0
        self._log_suspects: dict[TopicPartition, int] = {}

    async def ack(self, record: Record) -> None:
        """``record`` is stored: its offset may be committed (acks come in order)."""
        tp = TopicPartition(record.topic, record.partition)
        if record.offset + 1 > self._acked.get(tp, -1):
            self._acked[tp] = record.offset + 1

    def assignment(self) -> set[TopicPartition]:
        consumer = self.consumer
        return set(consumer.assignment()) if consumer is not None else set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; the handler's exceptions propagate (nothing of the
        failed batch is committed)."""
        consumer = self.consumer = self._factory()
        consumer.subscribe([self.topic], listener=_Listener(self))
        await consumer.start()
        last_commit = last_check = time.monotonic()
        try:
            while not self._stopping:
                batch = await self._take(consumer)
                if batch:
                    self._idle.clear()
                    try:
                        await self.handler(batch)
                        if self.autocommit:
                            for r in batch:
                                await self.ack(r)
                    finally:
                        self._idle.set()
                    self.batches += 1
                    self.records += len(batch)
                now = time.monotonic()
                if self.autocommit or now - last_commit >= self.commit_interval_s:
                    await self._commit_acked(consumer)
                    last_commit = now
                if now - last_check >= self.log_reset_check_s:
                    await self._check_log_reset(consumer)
                    last_check = now
        finally:
            self.consumer = None
            try:
                await self._commit_acked(consumer)
            except Exception as exc:  # the broker may be gone; the batch is re-read
                log.debug("final commit failed: %r", exc)
            await consumer.stop()

    async def stop(self) -> None:
        self._stopping = True

    async def _take(self, consumer: AIOKafkaConsumer) -> list[Record]:
        """Up to ``max_records`` messages, waiting at most ``within_s`` for more once the
        first arrived (and up to 1 s for the first)."""
        out: list[Record] = []
        deadline: float | None = None
        while len(out) < self.max_records and not self._stopping:
            wait = 1.0 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                break
            got = await consumer.getmany(timeout_ms=max(1, int(wait * 1000)),
                                         max_records=self.max_records - len(out))
            for tp, msgs in got.items():
                out.extend(Record(tp.topic, tp.partition, m.offset,
                                  m.timestamp / 1000.0 if m.timestamp and m.timestamp > 0
                                  else None, m.key, m.value) for m in msgs)
            if not out:
                break
            if deadline is None:
                deadline = time.monotonic() + self.within_s
        return out

    async def _commit_acked(self, consumer: AIOKafkaConsumer) -> None:
        owned = consumer.assignment()
        offsets = {tp: OffsetAndMetadata(o, "") for tp, o in self._acked.items()
                   if tp in owned and self._committed.get(tp) != o}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on (a rebalance): the new owner re-reads from the last commit
            # and the idempotent sinks fold the repeat. Nothing is lost.
            log.warning("commit of %d partitions failed, their records will be re-read: %r",
                        len(offsets), exc)
            return
        for tp, om in offsets.items():
            self._committed[tp] = om.offset

    async def _check_log_reset(self, consumer: AIOKafkaConsumer) -> None:
        """A partition whose log ends below our position (an in-memory broker restarted and
        lost its topics; Tansu then answers fetches with nothing rather than
        OFFSET_OUT_OF_RANGE) is read again from the start of its log. What was read from
        the old log is stored already; the sinks fold any repeat."""
        confirmed, self._log_suspects = await follow_log_resets(
            consumer, list(consumer.assignment()), self._log_suspects)
        for tp in confirmed:
            self._acked.pop(tp, None)
            self._committed.pop(tp, None)
            self.log_resets += 1

    async def lag(self) -> dict[TopicPartition, int]:
        """End offset minus committed offset, per assigned partition."""
        consumer = self.consumer
        if consumer is None:
            return {}
        tps = list(consumer.assignment())
        if not tps:
            return {}
        ends = await consumer.end_offsets(tps)
        out = {}
        for tp in tps:
            done = await consumer.committed(tp)
            out[tp] = max(0, ends.get(tp, 0) - (done or 0))
        return out
