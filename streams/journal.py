"""The upload journal: an accepted upload is on local disk before its 202 (embedded profile).

The embedded broker keeps its log in memory, so without this a 202 would be as durable as
the broker process. Ingest appends each upload (the key and value it publishes to
``telemetry.raw``) to an append-only journal under ``data_dir/uploads`` and answers only
when the journal is fsynced AND the broker acknowledged the upload. ``geotel up`` replays
the journal into the new broker at start (:func:`replay`); replaying is harmless because
events carry their ids and the store folds duplicates.

On disk: segment files ``<seq>.seg`` of records framed as ``length (4) | crc32 (4) |
key length (4) | key | value`` (big-endian; the CRC covers what follows it). A record cut
by a crash (short or with a bad CRC) ends its segment: it was never fsynced, so never
answered 202. A segment is written once, by one process, and never reopened for writing.
``<seq>.acked`` beside a segment holds the end offset (last offset + 1) per partition of
its records in the current broker; the running ingest keeps the same in memory for the
segments it writes.

Group commit: appends that arrive while an fsync runs wait for the next one, so one fsync
(in a thread, off the event loop) covers a batch of uploads.

Trimming: a closed segment whose records the broker acknowledged can go once the intake
consumer group has committed past all their offsets (it commits only behind stored data)
AND the sessions stage has committed ``telemetry.enriched`` up to where that topic ended
at that moment (the enriched messages of those records were published before the intake
committed), so a broker lost later cannot take derived figures with it either.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from schemas.errors import GeotelError
from streams.settings import ENRICHED, RAW, Profile, Settings

log = logging.getLogger(__name__)

HEADER = struct.Struct(">II")  # body length, crc32 of the body
KEY_LEN = struct.Struct(">I")
SEGMENT_SUFFIX = ".seg"
ACKED_SUFFIX = ".acked"

Send = Callable[[bytes, bytes], Awaitable[Any]]
#: Committed offsets: (the intake's next offset per raw partition, the sessions stage's per
#: enriched partition or None without one, the enriched log ends); blocking, run in a thread.
Offsets = Callable[[], tuple[dict[int, int], dict[int, int] | None, dict[int, int]]]


class JournalError(GeotelError, OSError):
    """The upload journal cannot be written or opened."""


def frame(key: bytes, value: bytes) -> bytes:
    body = KEY_LEN.pack(len(key)) + key + value
    return HEADER.pack(len(body), zlib.crc32(body)) + body


def read_segment(path: Path) -> tuple[list[tuple[bytes, bytes]], int]:
    """The records of one segment, and the number of bytes after the last whole record
    (a torn tail, never acknowledged)."""
    data = path.read_bytes()
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos + HEADER.size <= len(data):
        length, crc = HEADER.unpack_from(data, pos)
        body = data[pos + HEADER.size:pos + HEADER.size + length]
        if len(body) < length or length < KEY_LEN.size or zlib.crc32(body) != crc:
            break
        (klen,) = KEY_LEN.unpack_from(body)
        if KEY_LEN.size + klen > length:
            break
        out.append((body[KEY_LEN.size:KEY_LEN.size + klen], body[KEY_LEN.size + klen:]))
        pos += HEADER.size + length
    return out, len(data) - pos


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_paths(directory: Path) -> list[Path]:
    return sorted(directory.glob("*" + SEGMENT_SUFFIX), key=lambda p: int(p.stem))


def write_acked(seg: Path, ends: dict[int, int]) -> None:
    side = seg.with_suffix(ACKED_SUFFIX)
    tmp = side.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"ends": {str(p): o for p, o in ends.items()}}))
    with tmp.open("rb+") as f:
        os.fsync(f.fileno())
    tmp.replace(side)
    _fsync_dir(seg.parent)


def read_acked(seg: Path) -> dict[int, int] | None:
    side = seg.with_suffix(ACKED_SUFFIX)
    try:
        doc = orjson.loads(side.read_bytes())
        return {int(p): int(o) for p, o in doc["ends"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_segment(seg: Path) -> None:
    for p in (seg, seg.with_suffix(ACKED_SUFFIX)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


@dataclass
class Segment:
    seq: int
    path: Path
    closed: bool = False
    size: int = 0
    opened_at: float = 0.0
    pending: int = 0  # records written, broker answer not yet in
    #: next offset after this segment's records, per raw partition; None: unknown (a
    #: segment of another process that was not replayed): never trimmed here
    ends: dict[int, int] | None = field(default_factory=dict)
    #: enriched log ends seen when the intake had committed past ``ends``
    enriched_ends: dict[int, int] | None = None


class UploadJournal:
    """Append-only, fsynced, group-committed journal of uploads; one process at a time."""

    def __init__(self, directory: Path, *, segment_bytes: int = 64 * 1024 * 1024,
                 segment_s: float = 30.0, fsync: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.segment_s = segment_s
        self.fsync = fsync
        self.clock = clock
        self.segments: dict[int, Segment] = {}
        self._active: Segment | None = None
        self._file: BinaryIO | None = None
        self._queue: list[tuple[bytes, asyncio.Future[Segment]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._lock_fd: int | None = None
        self.fsyncs = 0
        self.records = 0

    # -- opening ----------------------------------------------------------------------------
    def open(self) -> UploadJournal:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise JournalError(f"another process writes the upload journal in "
                               f"{self.directory}") from exc
        self._lock_fd = fd
        for path in segment_paths(self.directory):
            seq = int(path.stem)
            self.segments[seq] = Segment(seq, path, closed=True, size=path.stat().st_size,
                                         ends=read_acked(path))
        return self

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._executor.shutdown(wait=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- appending --------------------------------------------------------------------------
    async def append(self, key: bytes, value: bytes) -> Segment:
        """Durable when this returns: the record is written and fsynced."""
        fut: asyncio.Future[Segment] = asyncio.get_running_loop().create_future()
        self._queue.append((frame(key, value), fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        return await fut

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue, []
            seg = self._writable()
            try:
                await loop.run_in_executor(self._executor, self._write, self._file, seg,
                                           [rec for rec, _ in batch])
            except Exception as exc:
                # The segment may end in a torn record now: nothing more goes into it.
                log.error("upload journal write failed (%d uploads answered 503): %r",
                          len(batch), exc)
                self._close_active()
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(JournalError(f"journal write failed: {exc!r}"))
                continue
            seg.pending += len(batch)
            self.records += len(batch)
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(seg)

    def _writable(self) -> Segment:
        seg = self._active
        if seg is not None and (seg.size >= self.segment_bytes
                                or self.clock() - seg.opened_at >= self.segment_s):
            self._close_active()
            seg = None
        if seg is None:
            seq = max(self.segments, default=0) + 1
            path = self.directory / f"{seq:016d}{SEGMENT_SUFFIX}"
            self._file = path.open("xb")
            os.chmod(path, 0o600)
            seg = Segment(seq, path, opened_at=self.clock())
            self.segments[seq] = seg
            self._active = seg
        return seg

    def _close_active(self) -> None:
        if self._active is not None:
            self._active.closed = True
            self._active = None
        if self._file is not None:
            # closed in the journal thread, after any write still queued there
            self._executor.submit(self._file.close)
            self._file = None

    def _write(self, f: BinaryIO | None, seg: Segment, records: list[bytes]) -> None:
        if f is None:
            raise JournalError(f"journal segment {seg.path.name} is not open")
        data = b"".join(records)
        f.write(data)
        f.flush()
        if self.fsync:
            os.fsync(f.fileno())
            if seg.size == 0:
                _fsync_dir(self.directory)  # the new file's name is durable too
        seg.size += len(data)
        self.fsyncs += 1

    def close_idle(self) -> None:
        """Close the open segment once it is ``segment_s`` old, also without new uploads
        (so it can be trimmed); never while a write is under way."""
        seg = self._active
        if (seg is not None and seg.size and (self._flusher is None or self._flusher.done())
                and self.clock() - seg.opened_at >= self.segment_s):
            self._close_active()

    def settled(self, seg: Segment, partition: int | None, offset: int | None) -> None:
        """The broker's answer for one record of ``seg``: its partition and offset, or
        None (not acknowledged: the phone got a 503 and sends it again)."""
        seg.pending -= 1
        if partition is not None and offset is not None and seg.ends is not None:
            seg.ends[partition] = max(seg.ends.get(partition, 0), offset + 1)

    # -- trimming ---------------------------------------------------------------------------
    def trim(self, intake: dict[int, int], sessions: dict[int, int] | None,
             enriched_ends: dict[int, int]) -> list[int]:
        """Delete the closed segments that are stored; return their numbers.

        ``intake``: the intake group's committed offsets per raw partition; ``sessions``:
        the sessions group's per enriched partition (None: no sessions stage);
        ``enriched_ends``: the enriched topic's log ends now."""
        gone = []
        for seg in list(self.segments.values()):
            if not seg.closed or seg.pending or seg.ends is None:
                continue
            if seg.enriched_ends is None and all(intake.get(p, 0) >= end
                                                 for p, end in seg.ends.items()):
                seg.enriched_ends = dict(enriched_ends)
            if seg.enriched_ends is None:
                continue
            if sessions is not None and any(sessions.get(p, 0) < end
                                             for p, end in seg.enriched_ends.items()):
                continue
            remove_segment(seg.path)
            del self.segments[seg.seq]
            gone.append(seg.seq)
        return gone


class JournaledSend:
    """Wraps the ingest's ``produce(key, value)``: the upload goes to the broker and to the
    journal at once; the returned future (the broker's answer) is awaited by the caller
    after the journal is fsynced, so a 202 means both. Trims the journal now and then."""

    def __init__(self, journal: UploadJournal, send: Send, offsets: Offsets | None,
                 trim_interval_s: float) -> None:
        self.journal, self.send, self.offsets = journal, send, offsets
        self.trim_interval_s = trim_interval_s
        self._trimmer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __call__(self, key: bytes, value: bytes) -> Any:
        # Shielded: a caller that gives up (produce timeout) must not leave a journaled
        # record without its broker answer, or its segment would never be trimmed.
        task = asyncio.ensure_future(self._produce(key, value))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._trimmer is None and self.offsets is not None:
            self._trimmer = asyncio.create_task(self._trim_loop())
        return await asyncio.shield(task)

    async def _produce(self, key: bytes, value: bytes) -> Any:
        fut = await self.send(key, value)  # queued to the producer; its answer comes later
        seg = await self.journal.append(key, value)

        def settle(f: asyncio.Future[Any]) -> None:
            md = None if f.cancelled() or f.exception() is not None else f.result()
            self.journal.settled(seg, getattr(md, "partition", None),
                                 getattr(md, "offset", None))

        fut.add_done_callback(settle)
        return fut

    async def _trim_loop(self) -> None:
        while True:
            await asyncio.sleep(self.trim_interval_s)
            self.journal.close_idle()
            try:
                await self.trim()
            except Exception as exc:  # never stops ingest; the journal only grows
                log.warning("upload journal: trim failed: %r", exc)

    async def trim(self) -> list[int]:
        if self.offsets is None:
            return []
        if not any(s.closed and not s.pending and s.ends is not None
                   for s in self.journal.segments.values()):
            return []
        try:
            intake, sessions, ends = await asyncio.get_running_loop().run_in_executor(
                None, self.offsets)
        except Exception as exc:
            log.warning("upload journal: committed offsets not available: %r", exc)
            return []
        gone = self.journal.trim(intake, sessions, ends)
        if gone:
            log.info("upload journal: %d stored segment(s) removed", len(gone))
        return gone


# -- composition ------------------------------------------------------------------------------
def enabled(settings: Settings) -> bool:
    mode = settings.ingest.journal
    return mode == "on" or (mode == "auto" and settings.profile is Profile.embedded)


def journals_root(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


def journal_dir(settings: Settings) -> Path:
    """This process's journal. One per web port: several ingest processes on one data dir
    (``geotel worker`` and ``geotel ingest`` side by side) each keep their own, and
    ``geotel up`` replays them all."""
    return journals_root(settings) / f"web-{settings.web_port}"


def _groups(settings: Settings) -> tuple[str, str | None]:
    """(the group that commits telemetry.raw behind stored data, the sessions stage's group
    on telemetry.enriched or None)."""
    base = settings.kafka.group_id
    intake = f"{base}-intake" if settings.worker.intake_consumer == "batch" else base
    return intake, base if settings.worker.sessions_enabled else None


def committed_offsets(settings: Settings) -> Offsets:
    """A blocking reader of the offsets :meth:`UploadJournal.trim` needs."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.broker import admin_kwargs, log_end_offsets

    intake_group, sessions_group = _groups(settings)
    raw, enriched = settings.topic(RAW), settings.topic(ENRICHED)

    def committed(group: str, topic: str) -> tuple[dict[int, int], Any, list[Any]]:
        c = KafkaConsumer(group_id=group, enable_auto_commit=False,
                          **admin_kwargs(settings))  # type: ignore[arg-type]
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        return {tp.partition: int(c.committed(tp) or 0) for tp in tps}, c, tps

    def read() -> tuple[dict[int, int], dict[int, int] | None, dict[int, int]]:
        intake, c1, _ = committed(intake_group, raw)
        c1.close()
        if sessions_group is None:
            return intake, None, {}
        sessions, c2, tps = committed(sessions_group, enriched)
        try:
            ends = {tp.partition: int(o) for tp, o in log_end_offsets(c2, tps).items()}
        finally:
            c2.close()
        return intake, sessions, ends

    return read


def for_ingest(settings: Settings, send: Send) -> Send:
    """``send`` journaled when the settings ask for it (see :func:`enabled`)."""
    if not enabled(settings):
        return send
    ing = settings.ingest
    journal = UploadJournal(journal_dir(settings), segment_bytes=ing.journal_segment_bytes,
                            segment_s=ing.journal_segment_s).open()
    unknown = sum(1 for s in journal.segments.values() if s.ends is None)
    if unknown:
        log.warning("upload journal: %d segment(s) not replayed into this broker are kept "
                    "for the next `geotel up`", unknown)
    return JournaledSend(journal, send, committed_offsets(settings),
                         ing.journal_trim_interval_s)


# -- replay at start ----------------------------------------------------------------------------
@dataclass
class Replayed:
    uploads: int = 0
    segments: int = 0
    torn_bytes: int = 0


def _records(paths: list[Path], report: Replayed) -> Iterator[tuple[bytes, bytes]]:
    for path in paths:
        recs, torn = read_segment(path)
        if torn:
            log.warning("upload journal %s: %d bytes after the last whole record ignored "
                        "(cut by a crash before its fsync, never acknowledged)", path.name, torn)
        report.torn_bytes += torn
        yield from recs


def replay(settings: Settings, timeout_s: float = 60.0) -> Replayed:
    """Publish every journaled upload to ``telemetry.raw`` of the (new) broker, re-journal
    them into one new segment per journal with their new offsets, and drop the old segments.

    Run by ``geotel up`` after creating the topics, before ingest starts. A crash part way
    leaves the old segments (and perhaps the new one) for the next start: replaying twice
    is harmless. A journal whose process still runs (its lock is held) is left to it."""
    total = Replayed()
    root = journals_root(settings)
    if not root.exists():
        return total
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            report = _replay_dir(settings, directory, timeout_s)
        except JournalError:
            log.info("upload journal %s belongs to a running process: left to it", directory)
            continue
        total.uploads += report.uploads
        total.segments += report.segments
        total.torn_bytes += report.torn_bytes
    return total


def _replay_dir(settings: Settings, directory: Path, timeout_s: float) -> Replayed:
    from kafka import KafkaProducer

    from streams.broker import MAX_MESSAGE_BYTES, admin_kwargs

    report = Replayed()
    journal = UploadJournal(directory).open()  # the lock: no ingest writes meanwhile
    try:
        old = segment_paths(directory)
        if not old:
            return report
        report.segments = len(old)
        seq = int(old[-1].stem) + 1
        new = directory / f"{seq:016d}{SEGMENT_SUFFIX}"
        ends: dict[int, int] = {}
        producer = KafkaProducer(acks="all", max_request_size=MAX_MESSAGE_BYTES,
                                 linger_ms=5, **admin_kwargs(settings))  # type: ignore[arg-type]
        topic = settings.topic(RAW)
        futures = []
        try:
            with new.open("xb") as f:
                os.chmod(new, 0o600)
                for key, value in _records(old, report):
                    f.write(frame(key, value))
                    futures.append(producer.send(topic, key=key, value=value))
                    report.uploads += 1
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(directory)
            # a long journal takes its time: 60 s plus 1 s per 5 MB
            producer.flush(timeout=timeout_s + new.stat().st_size / 5e6)
            for fut in futures:
                md = fut.get(timeout=timeout_s)
                ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
        finally:
            producer.close(timeout=timeout_s)
        for path in old:
            remove_segment(path)
        if report.uploads:
            write_acked(new, ends)
        else:
            remove_segment(new)
        _fsync_dir(directory)
        return report
    finally:
        journal.close()
