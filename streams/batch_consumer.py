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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

log = logging.getLogger(__name__)


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


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Let the batch in hand finish and commit while the partitions are still ours.
        await self.owner._idle.wait()
        if self.owner.on_revoked is not None:
            self.owner.on_revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("intake partitions assigned: %s",
                 sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))


class BatchConsumer:
    def __init__(self, consumer_factory: Callable[[], AIOKafkaConsumer], topic: str,
                 handler: Handler, *, max_records: int, within_s: float,
                 on_revoked: Callable[[set[int]], None] | None = None) -> None:
        self._factory = consumer_factory
        self.topic = topic
        self.handler = handler
        self.max_records = max_records
        self.within_s = within_s
        self.on_revoked = on_revoked
        self.consumer: AIOKafkaConsumer | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self.batches = 0
        self.records = 0

    async def run(self) -> None:
        """Consume until :meth:`stop`; the handler's exceptions propagate (nothing of the
        failed batch is committed)."""
        consumer = self.consumer = self._factory()
        consumer.subscribe([self.topic], listener=_Listener(self))
        await consumer.start()
        try:
            while not self._stopping:
                batch = await self._take(consumer)
                if not batch:
                    continue
                self._idle.clear()
                try:
                    await self.handler(batch)
                    await self._commit(consumer, batch)
                finally:
                    self._idle.set()
        finally:
            self.consumer = None
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

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Sequence[Record]) -> None:
        nxt: dict[TopicPartition, int] = {}
        for r in batch:
            tp = TopicPartition(r.topic, r.partition)
            nxt[tp] = max(nxt.get(tp, 0), r.offset + 1)
        owned = consumer.assignment()
        offsets = {tp: OffsetAndMetadata(o, "") for tp, o in nxt.items() if tp in owned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on (a rebalance): the new owner re-reads from the last commit
            # and the idempotent sinks fold the repeat. Nothing is lost.
            log.warning("commit of %d partitions failed, the batch will be re-read: %r",
                        len(offsets), exc)
            return
        self.batches += 1
        self.records += len(batch)

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
