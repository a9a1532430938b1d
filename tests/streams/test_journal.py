"""The upload journal on its own: framing, torn tails, group commit, trimming."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path

import pytest

from streams.journal import (
    JournaledSend,
    JournalError,
    UploadJournal,
    frame,
    read_acked,
    read_segment,
    segment_paths,
    write_acked,
)


def test_records_round_trip_and_a_torn_tail_is_ignored(tmp_path: Path) -> None:
    seg = tmp_path / "0000000000000001.seg"
    recs = [(b"dev-1", b'{"events":[1]}'), (b"", b""), (b"dev-2", b"x" * 70_000)]
    whole = b"".join(frame(k, v) for k, v in recs)
    seg.write_bytes(whole + frame(b"dev-3", b"cut short")[:-3])
    got, torn = read_segment(seg)
    assert got == recs
    assert torn == len(frame(b"dev-3", b"cut short")) - 3


def test_a_bad_checksum_ends_the_segment(tmp_path: Path) -> None:
    seg = tmp_path / "0000000000000001.seg"
    second = bytearray(frame(b"dev-2", b"two"))
    second[-1] ^= 0x01
    seg.write_bytes(frame(b"dev-1", b"one") + bytes(second) + frame(b"dev-3", b"three"))
    got, torn = read_segment(seg)
    assert got == [(b"dev-1", b"one")]
    assert torn == len(second) + len(frame(b"dev-3", b"three"))


def test_group_commit_one_fsync_covers_the_appends_that_waited(tmp_path: Path) -> None:
    journal = UploadJournal(tmp_path / "j").open()

    async def main() -> None:
        await asyncio.gather(*(journal.append(f"d{i % 7}".encode(), b"v" * i)
                               for i in range(300)))

    asyncio.run(main())
    journal.close()
    assert journal.records == 300
    assert 1 <= journal.fsyncs < 300  # batched: appends queued meanwhile share an fsync
    recs = [r for p in segment_paths(tmp_path / "j") for r in read_segment(p)[0]]
    assert sorted(recs) == sorted((f"d{i % 7}".encode(), b"v" * i) for i in range(300))


def test_one_writer_per_directory(tmp_path: Path) -> None:
    first = UploadJournal(tmp_path / "j").open()
    with pytest.raises(JournalError):
        UploadJournal(tmp_path / "j").open()
    first.close()
    UploadJournal(tmp_path / "j").open().close()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_segments_roll_and_go_only_once_stored_and_derived(tmp_path: Path) -> None:
    clock = Clock()
    journal = UploadJournal(tmp_path / "j", segment_s=10, clock=clock).open()

    async def upload(key: bytes, partition: int, offset: int) -> None:
        seg = await journal.append(key, b"{}")
        journal.settled(seg, partition, offset)

    async def main() -> None:
        await upload(b"a", 0, 0)
        await upload(b"b", 1, 4)
        clock.t = 11  # the next upload opens a second segment
        await upload(b"c", 0, 1)

    asyncio.run(main())
    first, second = sorted(journal.segments)
    assert journal.segments[first].closed and not journal.segments[second].closed
    assert journal.segments[first].ends == {0: 1, 1: 5}
    # the intake has not stored partition 1 far enough
    assert journal.trim({0: 1, 1: 4}, {0: 0}, {0: 9}) == []
    # stored; but the sessions stage has not read the enriched messages published until now
    assert journal.trim({0: 5, 1: 5}, {0: 0}, {0: 9}) == []
    assert journal.segments[first].enriched_ends == {0: 9}
    assert journal.trim({0: 5, 1: 5}, {0: 8}, {0: 12}) == []
    assert journal.trim({0: 5, 1: 5}, {0: 9}, {0: 12}) == [first]
    assert first not in journal.segments
    assert [p.name for p in segment_paths(tmp_path / "j")] == [f"{second:016d}.seg"]
    # the open segment stays whatever the offsets
    assert journal.trim({0: 99, 1: 99}, None, {}) == []
    # until it is old enough: then it closes without a new upload, and goes
    clock.t = 25
    journal.close_idle()
    assert journal.trim({0: 99, 1: 99}, None, {}) == [second]
    journal.close()


def test_a_record_the_broker_never_acknowledged_does_not_hold_its_segment(
        tmp_path: Path) -> None:
    clock = Clock()
    journal = UploadJournal(tmp_path / "j", segment_s=1, clock=clock).open()

    async def main() -> None:
        seg = await journal.append(b"a", b"{}")
        journal.settled(seg, None, None)  # answered 503: the phone sends it again
        clock.t = 2
        await journal.append(b"b", b"{}")

    asyncio.run(main())
    first = min(journal.segments)
    assert journal.trim({}, None, {}) == [first]
    journal.close()


def test_segments_of_another_process_are_kept_unless_replayed(tmp_path: Path) -> None:
    d = tmp_path / "j"
    d.mkdir()
    for seq in (1, 2):
        (d / f"{seq:016d}.seg").write_bytes(frame(b"k", b"v"))
    write_acked(d / f"{2:016d}.seg", {0: 3})
    assert read_acked(d / f"{2:016d}.seg") == {0: 3}
    journal = UploadJournal(d).open()
    assert journal.segments[1].ends is None and journal.segments[2].ends == {0: 3}
    assert journal.trim({0: 3}, None, {}) == [2]
    assert journal.trim({0: 99}, None, {}) == []
    assert [p.name for p in segment_paths(d)] == [f"{1:016d}.seg"]
    journal.close()


def test_journaled_send_answers_after_the_fsync_with_the_broker_future(tmp_path: Path) -> None:
    journal = UploadJournal(tmp_path / "j").open()

    async def main() -> tuple[object, int]:
        loop = asyncio.get_running_loop()
        acks: list[asyncio.Future[object]] = []

        async def send(key: bytes, value: bytes) -> asyncio.Future[object]:
            fut: asyncio.Future[object] = loop.create_future()
            acks.append(fut)
            return fut

        wrapped = JournaledSend(journal, send, None, trim_interval_s=5)
        fut = await wrapped(b"dev", b"{}")
        assert journal.records == 1  # on disk before the caller sees the broker's answer
        pending = sum(s.pending for s in journal.segments.values())
        acks[0].set_result(types.SimpleNamespace(partition=2, offset=41))
        await asyncio.sleep(0)
        return await fut, pending

    md, pending = asyncio.run(main())
    assert getattr(md, "offset", None) == 41
    assert pending == 1
    seg = next(iter(journal.segments.values()))
    assert seg.pending == 0 and seg.ends == {2: 42}
    journal.close()


@pytest.mark.integration
def test_replay_publishes_the_journal_to_a_new_broker_and_rejournals_it(tmp_path: Path) -> None:
    from kafka import KafkaConsumer

    from streams.broker import EmbeddedBroker, admin_kwargs, ensure_topics
    from streams.journal import replay
    from streams.settings import Settings
    from tests.conftest import free_port

    port = free_port()
    settings = Settings(_env_file=None, data_dir=tmp_path / "var",  # type: ignore[call-arg]
                        kafka={"embedded_port": port})
    d = tmp_path / "var" / "uploads" / "web-6066"  # a process's journal
    d.mkdir(parents=True)
    uploads = [(f"dev-{i % 3}".encode(), f'{{"events":[{i}]}}'.encode()) for i in range(40)]
    (d / f"{1:016d}.seg").write_bytes(b"".join(frame(k, v) for k, v in uploads[:25]))
    # the last segment ends in a record the crash cut short: never acknowledged
    (d / f"{2:016d}.seg").write_bytes(b"".join(frame(k, v) for k, v in uploads[25:])
                                     + frame(b"dev-x", b"torn")[:-2])
    broker = EmbeddedBroker(port, log_path=tmp_path / "tansu.log")
    broker.start()
    try:
        ensure_topics(settings)
        report = replay(settings)
        assert (report.uploads, report.segments, report.torn_bytes) == (40, 2,
                len(frame(b"dev-x", b"torn")) - 2)
        consumer = KafkaConsumer(settings.topic("telemetry.raw"), auto_offset_reset="earliest",
                                 consumer_timeout_ms=3000, **admin_kwargs(settings))
        got = sorted((r.key, r.value) for r in consumer)
        consumer.close()
        assert got == sorted(uploads)
    finally:
        broker.stop()
    segs = segment_paths(d)
    assert [p.stem for p in segs] == [f"{3:016d}"]
    assert read_segment(segs[0]) == (uploads, 0)
    ends = read_acked(segs[0])
    assert ends is not None and sum(ends.values()) == 40  # one partition offset per upload
