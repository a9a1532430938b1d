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


def fetched_ends(consumer: Any, tps: Sequence[Any]) -> dict[Any, int]:
    """The end of each partition as the consumer's last fetch reported it (the high
    watermark); partitions not fetched yet are left out.

    Not ``end_offsets``: the embedded broker (Tansu 0.6) answers ListOffsets with the base
    offset of the last record batch plus one, short of the end whenever that batch holds
    several records (a batch of 10 at offset 0: 1, not 10). Its fetch responses carry the
    true high watermark, and every consumer here fetches anyway. ``consumer`` is an
    aiokafka consumer or Faust's (both have ``highwater``)."""
    out: dict[Any, int] = {}
    for tp in tps:
        try:
            hw = consumer.highwater(TopicPartition(tp.topic, tp.partition))
        except Exception as exc:  # not assigned any more (a rebalance), or stopped
            log.debug("no high watermark for %s: %r", tp, exc)
            continue
        if hw is not None:
            out[tp] = hw
    return out


async def caught_up(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> bool:
    """Whether every partition of ``tps`` was fetched and read to its end
    (:func:`fetched_ends`)."""
    ends = fetched_ends(consumer, tps)
    if len(ends) < len(tps):
        return False
    for tp in tps:
        if await consumer.position(tp) < ends[tp]:
            return False
    return True


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
    epoch: int = 0  # the partition's log resets seen when it was read (stale acks are dropped)

    @property
    def message(self) -> Record:
        return self


Handler = Callable[[Sequence[Record]], Awaitable[None]]


#: What identifies a record read from a partition: ``(offset, timestamp in ms, value size)``.
Mark = tuple[int, int, int]
#: Reads the record at an offset of each partition (``{partition: offset}``, with one
#: group-less consumer of its own): its :data:`Mark`, or None when the log holds no record
#: there.
Probe = Callable[[Mapping[Any, int]], Awaitable[dict[Any, "Mark | None"]]]


def mark_of(offset: int, timestamp_ms: int | float | None, value: bytes | None) -> Mark:
    # (rounded: Faust's timestamps are seconds as floats, times 1000 here)
    return (offset, round(timestamp_ms or 0), len(value) if value is not None else -1)


class ReadMarks:
    """The last record read from each partition (its :data:`Mark`), so that a log which went
    backwards and grew again past the old position can be told from the log that was read:
    the record below the old position is a different one."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: dict[Any, Mark] = {}

    def note(self, tp: Any, offset: int, timestamp_ms: int | float | None,
             value: bytes | None) -> None:
        self.last[tp] = mark_of(offset, timestamp_ms, value)

    def note_batch(self, batch: Mapping[Any, Sequence[Any]]) -> None:
        """The last record of each partition of an aiokafka ``getmany`` result."""
        for tp, msgs in batch.items():
            if msgs:
                m = msgs[-1]
                self.last[tp] = mark_of(m.offset, m.timestamp, m.value)

    def below(self, tp: Any, position: int) -> Mark | None:
        """The mark of the record just below ``position``, if that is the last one read."""
        m = self.last.get(tp)
        return m if m is not None and m[0] == position - 1 else None


@dataclass(frozen=True, slots=True)
class Suspect:
    """A partition whose log ended below the consumer's position at a check."""
    position: int
    mark: Mark | None  # the record read just below ``position`` (None: not known here)
    seen_ms: int  # wall clock of the first sighting


@dataclass(slots=True)
class LogCheck:
    #: still behind, at the same position as at the previous check: ``tp -> (end, position)``
    confirmed: dict[Any, tuple[int, int]]
    #: suspects no longer behind (the log may have grown again past the old position): the
    #: record below the old position must be compared with the one read
    recheck: dict[Any, Suspect]
    #: the suspects to carry to the next check
    suspects: dict[Any, Suspect]


def confirm_log_resets(positions: Mapping[Any, int], ends: Mapping[Any, int | None],
                       suspects: Mapping[Any, Suspect], marks: ReadMarks | None = None,
                       now_ms: int | None = None) -> LogCheck:
    """Sort the partitions by whether their log went backwards.

    ``positions`` must be read before ``ends`` (the other order races with consumption). A
    partition is a suspect when its log ends below the consumer's position. It is confirmed
    when it is still behind at the same position at the next check (a lost log stalls the
    consumer: fetches return nothing). A suspect that is no longer behind goes to
    ``recheck``: a new log may have grown past the old position before the second check
    (traffic goes on after a broker restart), and only the record below the old position
    tells whether it is the one that was read (:func:`verify_suspects`). A partition that
    was not checked (no position or end) keeps its suspicion.


    >>> c = confirm_log_resets({"p": 13}, {"p": 12}, {}, now_ms=0)
    >>> c.confirmed, c.suspects
    ({}, {'p': Suspect(position=13, mark=None, seen_ms=0)})
    >>> confirm_log_resets({"p": 13}, {"p": 0}, c.suspects).confirmed
    {'p': (0, 13)}
    >>> confirm_log_resets({"p": 13}, {"p": 20}, c.suspects).recheck
    {'p': Suspect(position=13, mark=None, seen_ms=0)}
    """
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    confirmed: dict[Any, tuple[int, int]] = {}
    recheck: dict[Any, Suspect] = {}
    out: dict[Any, Suspect] = {}
    for tp, was in suspects.items():
        if tp not in positions or ends.get(tp) is None:
            out[tp] = was  # not checked this time
    for tp, pos in positions.items():
        end = ends.get(tp)
        if end is None:
            continue
        old = suspects.get(tp)
        if end < pos:
            if old is not None and old.position == pos:
                confirmed[tp] = (end, pos)
                out[tp] = old
                continue
            if old is not None:
                recheck[tp] = old
            out[tp] = Suspect(pos, marks.below(tp, pos) if marks is not None else None,
                              now_ms)
        elif old is not None:
            recheck[tp] = old
    return LogCheck(confirmed, recheck, out)


def suspect_assigned(positions: Mapping[Any, int], suspects: Mapping[Any, Suspect],
                     marks: ReadMarks, now_ms: int | None = None) -> dict[Any, Suspect]:
    """``suspects`` plus the partitions just (re)assigned at ``positions`` whose record
    just below the position is the last one read here.

    A (re)assigned partition starts at the group's committed offset, which can come from
    the old log (a commit of the old offsets that reached the restarted broker) while the
    new log already reaches past it: never seen behind its end, it would skip the new
    records below. As a suspect it is settled like any other (:func:`confirm_log_resets`,
    :func:`verify_suspects`): a healthy log holds the same record there.

    >>> m = ReadMarks(); m.note("p", 7, 1_000, b"x")
    >>> suspect_assigned({"p": 8, "q": 3}, {}, m, now_ms=5)
    {'p': Suspect(position=8, mark=(7, 1000, 1), seen_ms=5)}
    """
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    out = dict(suspects)
    for tp, pos in positions.items():
        mark = marks.below(tp, pos)
        if mark is not None and tp not in out:
            out[tp] = Suspect(pos, mark, now_ms)
    return out


async def verify_suspects(recheck: Mapping[Any, Suspect], probe: Probe | None
                          ) -> tuple[list[Any], dict[Any, Suspect]]:
    """Of the suspects whose log grew again past the old position: those whose log went
    backwards after all, and those to check again later (the broker did not answer).

    With the record read just below the old position known, the log went backwards when
    the record there now is another one (or none). Without it (the position came from a
    commit, or the records were read by another part of the process), when the record
    there was written after the end was first seen below the position. Without a probe,
    every recheck counts as a reset: reading a partition again is idempotent, skipping the
    new records is not."""
    resets: list[Any] = []
    ask = {tp: s.position - 1 for tp, s in recheck.items() if s.position > 0}
    if not ask:  # (at position 0 nothing can have been skipped)
        return [], {}
    if probe is None:
        return list(ask), {}
    try:
        got = await probe(ask)
    except Exception as exc:  # the broker may be away; try again at the next check
        log.debug("log reset check: cannot read %s: %r", ask, exc)
        return [], {tp: recheck[tp] for tp in ask}
    for tp in ask:
        s, now = recheck[tp], got.get(tp)
        if now is None or (now != s.mark if s.mark is not None else now[1] >= s.seen_ms):
            resets.append(tp)
    return resets, {}


def record_probe(factory: Callable[[], AIOKafkaConsumer], timeout_s: float = 5.0) -> Probe:
    """A :data:`Probe` reading with a fresh group-less consumer from ``factory``."""
    async def probe(offsets: Mapping[Any, int]) -> dict[Any, Mark | None]:
        keys = {TopicPartition(tp.topic, tp.partition): tp for tp in offsets}
        out: dict[Any, Mark | None] = {}
        consumer = factory()
        await consumer.start()
        try:
            consumer.assign(list(keys))
            for atp, tp in keys.items():
                consumer.seek(atp, offsets[tp])
            deadline = time.monotonic() + timeout_s
            while len(out) < len(keys):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer at {dict(offsets)}")
                got = await consumer.getmany(timeout_ms=max(1, int(left * 1000)))
                for atp, msgs in got.items():
                    tp = keys[atp]
                    if msgs and tp not in out:
                        m = msgs[0]
                        out[tp] = (mark_of(m.offset, m.timestamp, m.value)
                                   if m.offset == offsets[tp] else None)
                        consumer.pause(atp)
                for atp, tp in keys.items():  # a log that ends at or before the offset
                    end = consumer.highwater(atp)  # (of the fetch just answered)
                    if tp not in out and end is not None and end <= offsets[tp]:
                        out[tp] = None
                        consumer.pause(atp)
            return out
        finally:
            await consumer.stop()
    return probe


async def follow_log_resets(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition],
                            suspects: Mapping[TopicPartition, Suspect],
                            marks: ReadMarks | None = None, probe: Probe | None = None
                            ) -> tuple[list[TopicPartition], dict[TopicPartition, Suspect]]:
    """Seek every partition of ``tps`` whose log went backwards (see
    :func:`confirm_log_resets` and :func:`verify_suspects`) to the start of its log:
    ``(partitions sought, suspects now)``. Used by the intake consumer and by the tails of
    the device and geo-set topics (which must see the records published after the broker
    came back, at offsets below their old positions). Broker errors are logged and retried
    at the next check."""
    if not tps:
        return [], {}
    # Positions first, then the ends (the other order races with consumption).
    positions: dict[TopicPartition, int] = {}
    for tp in tps:
        try:
            positions[tp] = await consumer.position(tp)
        except Exception as exc:
            log.debug("log reset check: no position for %s: %r", tp, exc)
    # (a partition not fetched yet is not checked this time)
    ends: dict[TopicPartition, int | None] = {**fetched_ends(consumer, list(positions))}
    check = confirm_log_resets(positions, ends, suspects, marks)
    grown, later = await verify_suspects(check.recheck, probe)
    now = {**check.suspects, **later}
    resets = [*check.confirmed, *(tp for tp in grown if tp not in check.confirmed)]
    for tp in resets:
        now.pop(tp, None)
        await consumer.seek_to_beginning(tp)
        if tp in check.confirmed:
            end, pos = check.confirmed[tp]
            log.warning("%s/%d: the log ends at %d, below this consumer's position %d (the "
                        "broker lost its data): reading it again from the start",
                        tp.topic, tp.partition, end, pos)
        else:
            log.warning("%s/%d: the log went below this consumer's position %d and grew "
                        "again with other records (the broker lost its data): reading it "
                        "again from the start", tp.topic, tp.partition,
                        check.recheck[tp].position)
    return resets, now


class LogResetWatch:
    """For a tail that reads whole logs with manually assigned partitions (the devices and
    geo-set topics): every :data:`LOG_RESET_CHECK_S`, :func:`follow_log_resets` on its
    partitions, so records published after an in-memory broker restart, below the old
    position, are still read. ``resets`` counts the partitions read again."""

    def __init__(self, probe: Probe | None = None) -> None:
        self.resets = 0
        self.marks = ReadMarks()
        self.probe = probe
        self._suspects: dict[TopicPartition, Suspect] = {}
        self._next = time.monotonic() + LOG_RESET_CHECK_S

    async def check(self, consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition],
                    batch: Mapping[TopicPartition, Sequence[Any]] | None = None) -> None:
        """After each ``getmany``: note what ``batch`` read, and check when it is time."""
        if batch:
            self.marks.note_batch(batch)
        if time.monotonic() < self._next:
            return
        resets, self._suspects = await follow_log_resets(consumer, tps, self._suspects,
                                                         self.marks, self.probe)
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
        # They start at the group's committed offsets, which are checked against the
        # records read (suspect_assigned) before anything is read from them.
        owner, consumer = self.owner, self.owner.consumer
        if consumer is None:
            return
        positions: dict[TopicPartition, int] = {}
        for tp in assigned:
            try:
                committed = await consumer.committed(tp)
            except Exception as exc:  # checked as any partition at the next check
                log.debug("no committed offset for the assigned %s: %r", tp, exc)
                continue
            if committed is not None:
                positions[tp] = committed
        owner._log_suspects = suspect_assigned(positions, owner._log_suspects, owner.marks)


class BatchConsumer:
    """With ``autocommit`` (the default) a batch is committed when the handler returned;
    without it the handler (or what it hands the batch to) calls :meth:`ack` for each
    record once it is stored, in order, and acked offsets are committed every
    ``commit_interval_s`` -- the way a Faust stream's acks work."""

    def __init__(self, consumer_factory: Callable[[], AIOKafkaConsumer],
                 topic: str | Sequence[str], handler: Handler, *, max_records: int, within_s: float,
                 on_revoked: Callable[[set[int]], None] | None = None,
                 autocommit: bool = True, commit_interval_s: float = 1.0,
                 log_reset_check_s: float = LOG_RESET_CHECK_S,
                 probe: Probe | None = None) -> None:
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
        self._log_suspects: dict[TopicPartition, Suspect] = {}
        self._epochs: dict[TopicPartition, int] = {}  # log resets per partition
        self.marks = ReadMarks()
        self.probe = probe  # group-less reads for the log reset check (verify_suspects)

    async def ack(self, record: Record) -> None:
        """``record`` is stored: its offset may be committed (acks come in order)."""
        tp = TopicPartition(record.topic, record.partition)
        if record.epoch != self._epochs.get(tp, 0):
            return  # read from a log that went backwards since: its offsets mean nothing now
        if record.offset + 1 > self._acked.get(tp, -1):
            self._acked[tp] = record.offset + 1

    def assignment(self) -> set[TopicPartition]:
        consumer = self.consumer
        return set(consumer.assignment()) if consumer is not None else set()

    async def run(self) -> None:
        """Consume until :meth:`stop`; the handler's exceptions propagate (nothing of the
        failed batch is committed)."""
        consumer = self.consumer = self._factory()
        topics = [self.topic] if isinstance(self.topic, str) else list(self.topic)
        consumer.subscribe(topics, listener=_Listener(self))
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
            self.marks.note_batch(got)
            for tp, msgs in got.items():
                epoch = self._epochs.get(tp, 0)
                out.extend(Record(tp.topic, tp.partition, m.offset,
                                  m.timestamp / 1000.0 if m.timestamp and m.timestamp > 0
                                  else None, m.key, m.value, epoch) for m in msgs)
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
        the old log is stored already; the sinks fold any repeat. Records of the old log
        still in flight are not acked any more (their offsets would skip the new log's)."""
        resets, self._log_suspects = await follow_log_resets(
            consumer, list(consumer.assignment()), self._log_suspects, self.marks, self.probe)
        for tp in resets:
            self._epochs[tp] = self._epochs.get(tp, 0) + 1
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
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        ends.update(fetched_ends(consumer, tps))  # where fetched: the true end
        out = {}
        for tp in tps:
            done = await consumer.committed(tp)
            out[tp] = max(0, ends.get(tp, 0) - (done or 0))
        return out
