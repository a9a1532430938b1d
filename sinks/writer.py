"""The batched, idempotent ClickHouse writer.

One contract (after quix-streams): ``add(table, row, tp, offset)`` buffers, ``flush()`` writes
every buffered table as one insert per table and returns only when all of them are stored.
The caller commits Kafka offsets only after ``flush()`` returned, so at-least-once delivery
never loses a row; each insert carries an ``insert_deduplication_token`` made of the source
(topic, partition, offset range) so a retried flush of the same batch is a no-op, and the
tables are ReplacingMergeTree on the record's stable id so a replay with other batch
boundaries folds too.

Failures are retried with capped exponential backoff for as long as it takes: holding the
batch is the backpressure (the agent stops taking, the consumer stops fetching). ``health``
says ``degraded`` while a write is failing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clickhouse_connect.driver.client import Client

from sinks.exceptions import SinkError

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


def _digest(rows: Sequence[Sequence[object]]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(len(rows).to_bytes(8, "little"))
    for r in rows:
        first = r[0]
        h.update(first.bytes if isinstance(first, uuid.UUID) else repr(first).encode())
    return h.hexdigest()


@dataclass
class _Pending:
    columns: Sequence[str]
    rows: list[Sequence[object]] = field(default_factory=list)
    ranges: dict[TopicPartition, list[int]] = field(default_factory=dict)

    def token(self, table: str) -> str:
        spans = ",".join(f"{t}/{p}/{lo}-{hi}" for (t, p), (lo, hi) in sorted(self.ranges.items()))
        # Offsets alone are not an identity: a topic that is recreated (or an in-memory broker
        # that restarted) reuses them, and ClickHouse would silently drop the new batch as a
        # retry. A digest of the rows' ids (first column) makes the token name this content.
        return f"{table}|{spans}|{_digest(self.rows)}"


@dataclass
class SinkStats:
    batches: int = 0
    rows: int = 0
    failures: int = 0
    last_error: str | None = None
    failing_since: float | None = None
    last_batch_s: float = 0.0
    last_batch_rows: int = 0


class ClickHouseWriter:
    """Buffer rows per table and write them idempotently. Not thread-safe: one owner thread."""

    def __init__(
        self,
        client: Client,
        *,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        should_stop: Callable[[], bool] = lambda: False,
        fault_file: Path | None = None,
    ) -> None:
        self.fault_file = fault_file
        self.client = client
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._sleep = sleep
        self._clock = clock
        self._should_stop = should_stop
        self._pending: dict[str, _Pending] = {}
        self.stats = SinkStats()
        self.lock = threading.Lock()  # serialises use of the (chDB) client with readers

    def add(self, table: str, columns: Sequence[str], row: Sequence[object],
            tp: TopicPartition, offset: int) -> None:
        self.add_many(table, columns, [row], tp, offset, offset)

    def add_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]],
                 tp: TopicPartition, first_offset: int, last_offset: int) -> None:
        self.add_batch(table, columns, rows, {tp: (first_offset, last_offset)})

    def add_batch(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]],
                  spans: dict[TopicPartition, tuple[int, int]]) -> None:
        """Rows that came from the given source offset ranges (one range per partition)."""
        pend = self._pending.get(table)
        if pend is None:
            pend = self._pending[table] = _Pending(columns)
        pend.rows.extend(rows)
        for tp, (lo, hi) in spans.items():
            span = pend.ranges.get(tp)
            if span is None:
                pend.ranges[tp] = [lo, hi]
            else:
                span[0], span[1] = min(span[0], lo), max(span[1], hi)

    @property
    def pending_rows(self) -> int:
        return sum(len(p.rows) for p in self._pending.values())

    def flush(self) -> int:
        """Write everything buffered; retry until stored. Returns the rows written."""
        written = 0
        for table in list(self._pending):
            pend = self._pending[table]
            if pend.rows:
                self._write_with_retry(table, pend)
                written += len(pend.rows)
            del self._pending[table]
        return written

    def _write_with_retry(self, table: str, pend: _Pending) -> None:
        delay = self.retry_initial_s
        token = pend.token(table)
        while True:
            started = self._clock()
            try:
                if self.fault_file is not None and self.fault_file.exists():
                    raise SinkError(f"injected outage ({self.fault_file} exists)")
                with self.lock:
                    self.client.insert(
                        table, pend.rows, column_names=list(pend.columns),
                        settings={"async_insert": 0, "insert_deduplicate": 1,
                                  "insert_deduplication_token": token},
                    )
            except Exception as exc:
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                if self.stats.failing_since is None:
                    self.stats.failing_since = started
                if self._should_stop():
                    raise
                log.warning("insert into %s failed (%s rows), retrying in %.1fs: %s",
                            table, len(pend.rows), delay, self.stats.last_error)
                self._sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            self.stats.batches += 1
            self.stats.rows += len(pend.rows)
            self.stats.last_batch_rows = len(pend.rows)
            self.stats.last_batch_s = self._clock() - started
            self.stats.failing_since = None
            self.stats.last_error = None
            return

    @property
    def degraded(self) -> bool:
        return self.stats.failing_since is not None
