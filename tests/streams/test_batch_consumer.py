"""The intake's batch consumer against the real embedded broker: every message reaches the
handler, offsets are committed only after the handler returned, and a failed batch is read
again by the next consumer of the group."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import NewTopic

from streams.batch_consumer import BatchConsumer, Record
from streams.broker import EmbeddedBroker, ensure_topics, make_consumer
from streams.settings import Settings
from tests.conftest import free_port

TOPIC = "bc.test"


@pytest.fixture
def broker_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    broker = EmbeddedBroker(port, log_path=tmp_path / "tansu.log")
    broker.start()
    settings = Settings(data_dir=tmp_path / "var",  # type: ignore[call-arg]
                        kafka={"embedded_port": port, "topic_partitions": 2})
    try:
        yield settings
    finally:
        broker.stop()


async def _produce(settings: Settings, n: int) -> None:
    p = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await p.start()
    try:
        for i in range(n):
            await p.send(TOPIC, value=str(i).encode(), key=str(i % 7).encode())
        await p.flush()
    finally:
        await p.stop()


async def _consume(settings: Settings, expect: int, fail_after: int | None = None,
                   timeout_s: float = 60) -> tuple[list[Record], BatchConsumer]:
    seen: list[Record] = []
    done = asyncio.Event()

    async def handler(batch: list[Record]) -> None:
        if fail_after is not None and len(seen) + len(batch) > fail_after:
            raise RuntimeError("sink down")
        seen.extend(batch)
        if len(seen) >= expect:
            done.set()

    bc = BatchConsumer(lambda: make_consumer(settings, group_id="bc-group"), TOPIC, handler,
                       max_records=300, within_s=0.05)
    task = asyncio.create_task(bc.run())
    try:
        waiter = asyncio.create_task(done.wait())
        await asyncio.wait({task, waiter}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if task.done() and fail_after is None:
            task.result()
        waiter.cancel()
        if not task.done() and fail_after is None and expect:
            for _ in range(100):  # the last batch's commit follows its handler
                lag = await bc.lag()
                if lag and not any(lag.values()):
                    break
                await asyncio.sleep(0.1)
            bc.final_lag = lag  # type: ignore[attr-defined]
    finally:
        await bc.stop()
        if not task.done():
            await asyncio.wait_for(task, 10)
    return seen, bc


def test_every_message_once_then_committed(broker_settings: Settings) -> None:
    ensure_topics(broker_settings, extra=[NewTopic(TOPIC, 2, 1)])

    async def main() -> None:
        await _produce(broker_settings, 2000)
        seen, bc = await _consume(broker_settings, 2000)
        assert sorted(int(r.value or b"") for r in seen) == list(range(2000))
        assert {r.partition for r in seen} == {0, 1}
        assert all(r.message is r and r.timestamp for r in seen)
        # committed == end offset on both partitions once the handler returned
        assert len(bc.final_lag) == 2 and not any(bc.final_lag.values())  # type: ignore[attr-defined]
        assert bc.records == 2000 and bc.batches >= 2000 // 300

    asyncio.run(main())


def test_failed_batch_is_read_again(broker_settings: Settings) -> None:
    ensure_topics(broker_settings, extra=[NewTopic(TOPIC, 2, 1)])

    async def main() -> None:
        await _produce(broker_settings, 1000)
        first, _ = await _consume(broker_settings, 1000, fail_after=500)
        assert len(first) <= 500
        rest, _ = await _consume(broker_settings, 1000 - len(first))
        got = sorted(int(r.value or b"") for r in [*first, *rest])
        # nothing lost; what was handled before the failure may come again (at-least-once),
        # but nothing committed is read twice
        assert set(got) == set(range(1000))
        assert len(rest) == 1000 - len(first)

    asyncio.run(main())


def test_a_log_reset_is_confirmed_only_at_the_same_position_twice() -> None:
    from streams.batch_consumer import ReadMarks, Suspect, confirm_log_resets

    marks = ReadMarks()
    marks.note("p0", 12, 1_000, b"x" * 30)
    # consuming: the position passed an end offset read a moment earlier -> only a suspect,
    # with the record read just below its position
    c = confirm_log_resets({"p0": 13, "p1": 5}, {"p0": 12, "p1": 9}, {}, marks, now_ms=7)
    assert c.confirmed == {} and c.recheck == {}
    assert c.suspects == {"p0": Suspect(13, (12, 1_000, 30), 7)}
    # stalled behind a log that went backwards: confirmed
    c2 = confirm_log_resets({"p0": 13}, {"p0": 3}, c.suspects, marks)
    assert c2.confirmed == {"p0": (3, 13)}
    # it moved on since: a new suspect, and the old one is checked against what was read
    c3 = confirm_log_resets({"p0": 20}, {"p0": 19}, c.suspects, marks, now_ms=9)
    assert c3.confirmed == {} and c3.recheck == {"p0": c.suspects["p0"]}
    assert c3.suspects == {"p0": Suspect(20, None, 9)}  # offset 19 was not the last read
    # the log grew past the position before the second check: recheck, not forgotten
    c4 = confirm_log_resets({"p0": 13}, {"p0": 13}, c.suspects, marks)
    assert c4.confirmed == {} and c4.recheck == c.suspects and c4.suspects == {}
    # not checked this time (no end offset): the suspicion is kept
    assert confirm_log_resets({"p0": 13}, {}, c.suspects, marks).suspects == c.suspects


def test_a_log_that_grew_again_is_told_by_the_record_below_the_old_position() -> None:
    from streams.batch_consumer import Suspect, verify_suspects

    log_now = {("t", 0): (12, 1_000, 30),  # the record that was read: the same log
               ("t", 1): (12, 5_000, 30),  # another record at that offset: a new log
               ("t", 3): (4, 9_000, 10)}   # no mark: written after the sighting -> new

    async def probe(offsets):  # type: ignore[no-untyped-def]
        if ("t", 4) in offsets:
            raise ConnectionError("broker away")
        return {tp: log_now.get(tp) for tp in offsets}  # ("t", 2): no record there any more

    async def main() -> None:
        s = {("t", 0): Suspect(13, (12, 1_000, 30), 2_000),
             ("t", 1): Suspect(13, (12, 1_000, 30), 2_000),
             ("t", 2): Suspect(13, (12, 1_000, 30), 2_000),
             ("t", 3): Suspect(5, None, 8_000),
             ("t", 4): Suspect(5, None, 8_000)}
        resets, later = await verify_suspects({k: v for k, v in s.items() if k != ("t", 4)},
                                              probe)
        assert sorted(resets) == [("t", 1), ("t", 2), ("t", 3)] and later == {}
        # the broker did not answer: all of them again at the next check
        resets, later = await verify_suspects(s, probe)
        assert resets == [] and later == s
        # at position 0 nothing can have been skipped
        assert await verify_suspects({("t", 1): Suspect(0, None, 0)}, probe) == ([], {})
        # an older record at that offset and no mark: the same log (not read again)
        resets, _ = await verify_suspects({("t", 3): Suspect(5, None, 9_500)}, probe)
        assert resets == []
        # without a probe a recheck is a reset: reading again is idempotent, skipping is not
        resets, _ = await verify_suspects({("t", 0): s[("t", 0)]}, None)
        assert resets == [("t", 0)]

    asyncio.run(main())


def _one_partition_broker(tmp_path: Path) -> tuple[EmbeddedBroker, Settings]:
    """A started broker the test restarts itself (and must stop)."""
    port = free_port()
    broker = EmbeddedBroker(port, log_path=tmp_path / "tansu.log")
    broker.start()
    return broker, Settings(data_dir=tmp_path / "var",  # type: ignore[call-arg]
                            kafka={"embedded_port": port, "topic_partitions": 1})


def test_a_commit_from_the_lost_log_does_not_skip_the_new_one(tmp_path: Path) -> None:
    """The in-memory broker restarts empty; before the intake's group rejoins, the new log
    grows past the old position (10 records, was 8) and the group's committed offset on the
    new broker is the old log's 8 (a commit of the old offsets that reached it, as in CI's
    failed drill). The rejoined consumer starts at 8 and is never behind its log; the
    record below it is not the one read, so the partition is read again from its start."""
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka import TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata as KOM

    from streams.batch_consumer import record_probe

    broker, settings = _one_partition_broker(tmp_path)
    topic = [NewTopic(TOPIC, 1, 1)]

    def produce(values: list[str]) -> None:  # blocking: the consumer's loop waits meanwhile
        p = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        for v in values:
            p.send(TOPIC, value=v.encode())
        p.flush()
        p.close()

    async def main() -> None:
        seen: list[bytes] = []

        async def handler(batch: list[Record]) -> None:
            seen.extend(r.value or b"" for r in batch)

        bc = BatchConsumer(lambda: make_consumer(settings, group_id="bc-reset"), TOPIC,
                           handler, max_records=100, within_s=0.05, log_reset_check_s=0.3,
                           probe=record_probe(lambda: make_consumer(settings)))

        async def until(cond: Any, what: str, timeout_s: float = 40) -> None:
            deadline = time.monotonic() + timeout_s
            while not cond():
                if time.monotonic() > deadline or task.done():
                    raise AssertionError(f"timed out waiting until {what}; saw {seen}")
                await asyncio.sleep(0.05)

        ensure_topics(settings, extra=topic)
        task = asyncio.create_task(bc.run())
        try:
            produce([f"old-{i}" for i in range(8)])
            await until(lambda: len(seen) == 8 and bc._committed, "the old log is read")
            # all of this blocks the event loop: the consumer sees only the outcome
            broker.stop()
            broker.start()
            ensure_topics(settings, extra=topic)
            produce([f"new-{i}" for i in range(10)])
            admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
            answer = admin.alter_group_offsets("bc-reset", {KTP(TOPIC, 0): KOM(8, "", -1)})
            admin.close()
            assert all(e.errno == 0 for e in answer.values()), answer
            new = [f"new-{i}".encode() for i in range(10)]
            await until(lambda: set(new) <= set(seen), "every record of the new log is read")
            assert bc.log_resets == 1
        finally:
            await bc.stop()
            await asyncio.wait_for(task, 15)

    try:
        asyncio.run(main())
    finally:
        broker.stop()


def test_a_tail_whose_log_grows_past_its_old_position_reads_it_again(tmp_path: Path) -> None:
    """The same for a group-less tail (the devices and geo-set topics), where nothing but
    the check can notice: after the restart the new log grows from 2 records to 10, past the
    old position 8, between two checks. Without the record comparison new-0..new-7 were
    never read."""
    from aiokafka.structs import TopicPartition

    from streams.batch_consumer import LogResetWatch, record_probe

    broker, settings = _one_partition_broker(tmp_path)
    topic = [NewTopic(TOPIC, 1, 1)]
    tp = TopicPartition(TOPIC, 0)

    async def produce(values: list[str]) -> None:
        p = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        await p.start()
        try:
            for v in values:
                await p.send_and_wait(TOPIC, value=v.encode())
        finally:
            await p.stop()

    async def main() -> None:
        ensure_topics(settings, extra=topic)
        await produce([f"old-{i}" for i in range(8)])
        watch = LogResetWatch(record_probe(lambda: make_consumer(settings)))
        consumer = make_consumer(settings)
        await consumer.start()
        seen: list[bytes] = []

        async def poll_until(cond: Any, what: str, timeout_s: float = 30) -> None:
            deadline = time.monotonic() + timeout_s
            while not cond():
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting until {what}; saw {seen}")
                batch = await consumer.getmany(timeout_ms=200)
                watch._next = 0.0  # check at every poll
                await watch.check(consumer, [tp], batch)
                seen.extend(m.value for ms in batch.values() for m in ms)

        try:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            await poll_until(lambda: len(seen) == 8, "the old log is read")
            broker.stop()
            broker.start()
            ensure_topics(settings, extra=topic)
            await produce(["new-0", "new-1"])
            await poll_until(lambda: watch._suspects, "the log is seen below the position")
            await produce([f"new-{i}" for i in range(2, 10)])  # past the old position (8)
            new = [f"new-{i}".encode() for i in range(10)]
            await poll_until(lambda: set(new) <= set(seen), "every record of the new log is read")
            assert watch.resets == 1
        finally:
            await consumer.stop()

    try:
        asyncio.run(main())
    finally:
        broker.stop()


def test_log_ends_are_the_fetched_high_watermark_not_list_offsets(
        broker_settings: Settings) -> None:
    """Tansu 0.6 answers ListOffsets with the base offset of the last record batch plus one
    (1, not 10, for one batch of 10): the tails' "caught up", the log reset check, the lag
    and the tests' waits use the end a fetch reports instead."""
    from aiokafka.structs import TopicPartition
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    from streams.batch_consumer import caught_up, fetched_ends
    from streams.broker import log_end_offsets

    ensure_topics(broker_settings, extra=[NewTopic(TOPIC, 2, 1)])
    p = KafkaProducer(bootstrap_servers=broker_settings.bootstrap_servers, acks="all",
                      linger_ms=100)
    for i in range(10):  # one batch
        p.send(TOPIC, value=str(i).encode(), partition=0)
    p.flush()
    p.close()
    kc = KafkaConsumer(bootstrap_servers=broker_settings.bootstrap_servers)
    try:
        tps = [KTP(TOPIC, 0), KTP(TOPIC, 1)]
        listed = kc.end_offsets(tps)
        assert listed[tps[0]] <= 10  # 1 on Tansu 0.6 (10 on Kafka)
        assert log_end_offsets(kc, tps) == {tps[0]: 10, tps[1]: 0}
    finally:
        kc.close()

    async def main() -> None:
        c = make_consumer(broker_settings)
        await c.start()
        try:
            tps = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            assert not await caught_up(c, tps)  # nothing fetched yet
            got: list[int] = []
            for _ in range(50):
                batch = await c.getmany(timeout_ms=200)
                got += [m.offset for ms in batch.values() for m in ms]
                if await caught_up(c, tps):
                    break
            assert got == list(range(10))
            assert fetched_ends(c, tps) == {tps[0]: 10, tps[1]: 0}
        finally:
            await c.stop()

    asyncio.run(main())


def test_the_examples_in_the_docstrings_hold() -> None:
    import doctest

    import streams.batch_consumer as bcm

    result = doctest.testmod(bcm)
    assert result.attempted >= 6 and result.failed == 0, result
