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

import datetime as dt
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from sinks.exceptions import SinkError

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


def _digest(ids: Sequence[object]) -> str:
    """Digest of the rows' ids (their first column), in order."""
    h = hashlib.blake2b(digest_size=16)
    h.update(len(ids).to_bytes(8, "little"))
    if ids and all(type(x) is str for x in ids):
        h.update("\n".join(ids).encode())  # type: ignore[arg-type]
        return h.hexdigest()
    for first in ids:
        h.update(first.bytes if isinstance(first, uuid.UUID) else repr(first).encode())
    return h.hexdigest()


@dataclass
class _Pending:
    columns: Sequence[str]
    rows: list[Sequence[object]] = field(default_factory=list)
    ranges: dict[TopicPartition, list[int]] = field(default_factory=dict)
    # Column-oriented data (add_columns): one list per column; rows added to the same table
    # are appended to these at flush time.
    cols: list[list[object]] | None = None
    ticks: tuple[int, ...] = ()  # DateTime64(3) columns given as datetimes
    # Arrow data (add_arrow): tables of one schema, inserted as one Arrow table.
    arrow: list[pa.Table] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return (len(self.rows) + (len(self.cols[0]) if self.cols else 0)
                + sum(t.num_rows for t in self.arrow))

    def arrow_table(self) -> pa.Table:
        """The Arrow tables added, as one (chunks are not copied)."""
        if self.rows or self.cols is not None:
            raise SinkError("Arrow data and rows cannot share one insert")
        if len(self.arrow) > 1:
            self.arrow = [pa.concat_tables(self.arrow)]
        return self.arrow[0]

    def columnar(self) -> list[list[object]]:
        """Fold rows added next to column data into the columns; returns the columns."""
        if self.cols is None:
            raise SinkError("no column data to fold rows into")
        if self.rows:
            for col, values in zip(self.cols, zip(*self.rows, strict=True), strict=True):
                col.extend(values)
            self.rows = []
        return self.cols

    def token(self, table: str) -> str:
        spans = ",".join(f"{t}/{p}/{lo}-{hi}" for (t, p), (lo, hi) in sorted(self.ranges.items()))
        # Offsets alone are not an identity: a topic that is recreated (or an in-memory broker
        # that restarted) reuses them, and ClickHouse would silently drop the new batch as a
        # retry. A digest of the rows' ids (first column) makes the token name this content.
        if self.arrow:
            ids: Sequence[object] = self.arrow_table().column(0).to_pylist()
        else:
            ids = self.columnar()[0] if self.cols is not None else [r[0] for r in self.rows]
        return f"{table}|{spans}|{_digest(ids)}"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def _ticks_ms(values: Sequence[dt.datetime]) -> list[int]:
    """DateTime64(3) ticks, as clickhouse-connect computes them (floor to the millisecond)."""
    epoch, ms = _EPOCH, _MS
    return [(v - epoch) // ms for v in values]


def _arrow_rows(data: pa.Table) -> list[tuple[object, ...]]:
    """Rows of an Arrow table as a row-oriented client takes them (maps as dicts)."""
    cols = []
    for f, col in zip(data.schema, data.columns, strict=True):
        values = col.to_pylist()
        if pa.types.is_map(f.type):
            values = [None if v is None else dict(v) for v in values]
        cols.append(values)
    return list(zip(*cols, strict=True))


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
        self._add_spans(pend, spans)

    def add_columns(self, table: str, columns: Sequence[str], data: Sequence[Sequence[object]],
                    spans: dict[TopicPartition, tuple[int, int]], *,
                    ticks: Sequence[str] = ()) -> None:
        """Column-oriented rows (one sequence per column, in ``columns`` order) from the given
        source offset ranges. ``ticks`` names DateTime64(3) columns holding aware datetimes
        (none None): a clickhouse-connect client gets them as integer ticks, which is
        cheaper than its per-value conversion."""
        pend = self._pending.get(table)
        if pend is None:
            pend = self._pending[table] = _Pending(columns)
        if pend.cols is None:
            pend.cols = [[] for _ in columns]
            pend.ticks = tuple(list(columns).index(c) for c in ticks)
        for col, values in zip(pend.cols, data, strict=True):
            col.extend(values)
        self._add_spans(pend, spans)

    def add_arrow(self, table: str, data: pa.Table,
                  spans: dict[TopicPartition, tuple[int, int]]) -> None:
        """An Arrow table (column names as in ``table``; the first column the rows' ids)
        from the given source offset ranges, inserted as Arrow. The insert's token is the
        one rows with the same ids and offsets would get."""
        pend = self._pending.get(table)
        if pend is None:
            pend = self._pending[table] = _Pending(tuple(data.column_names))
        pend.arrow.append(data)
        self._add_spans(pend, spans)

    @staticmethod
    def _add_spans(pend: _Pending, spans: dict[TopicPartition, tuple[int, int]]) -> None:
        for tp, (lo, hi) in spans.items():
            span = pend.ranges.get(tp)
            if span is None:
                pend.ranges[tp] = [lo, hi]
            else:
                span[0], span[1] = min(span[0], lo), max(span[1], hi)

    @property
    def pending_rows(self) -> int:
        return sum(p.n_rows for p in self._pending.values())

    def flush(self) -> int:
        """Write everything buffered; retry until stored. Returns the rows written."""
        written = 0
        for table in list(self._pending):
            pend = self._pending[table]
            n = pend.n_rows
            if n:
                self._write_with_retry(table, pend)
                written += n
            del self._pending[table]
        return written

    def _insert(self, table: str, pend: _Pending, settings: dict[str, object]) -> None:
        if pend.arrow:
            arrow = pend.arrow_table()
            if isinstance(self.client, Client):
                self.client.insert_arrow(table, arrow, settings=settings)
            else:  # e.g. the `geotel store` client: rows only
                self.client.insert(table, _arrow_rows(arrow), column_names=arrow.column_names,
                                   settings=settings)
            return
        if pend.cols is None:
            self.client.insert(table, pend.rows, column_names=list(pend.columns),
                               settings=settings)
            return
        cols = pend.columnar()
        if not isinstance(self.client, Client):  # e.g. the `geotel store` client: rows only
            self.client.insert(table, list(zip(*cols, strict=True)),
                               column_names=list(pend.columns), settings=settings)
            return
        data: list[Sequence[object]] = list(cols)
        for i in pend.ticks:
            data[i] = _ticks_ms(cols[i])  # type: ignore[arg-type]
        self.client.insert(table, data, column_names=list(pend.columns), settings=settings,
                           column_oriented=True)

    def _write_with_retry(self, table: str, pend: _Pending) -> None:
        delay = self.retry_initial_s
        token = pend.token(table)
        while True:
            started = self._clock()
            try:
                if self.fault_file is not None and self.fault_file.exists():
                    raise SinkError(f"injected outage ({self.fault_file} exists)")
                with self.lock:
                    # A retry deduplicated in the table must not skip the materialized views
                    # an earlier, failed attempt never reached (the default only since
                    # ClickHouse 24.x; chDB has it).
                    self._insert(table, pend, {
                        "async_insert": 0, "insert_deduplicate": 1,
                        "insert_deduplication_token": token,
                        "deduplicate_blocks_in_dependent_materialized_views": 1})
            except Exception as exc:
                self.stats.failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                if self.stats.failing_since is None:
                    self.stats.failing_since = started
                if self._should_stop():
                    raise
                log.warning("insert into %s failed (%s rows), retrying in %.1fs: %s",
                            table, pend.n_rows, delay, self.stats.last_error)
                self._sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            self.stats.batches += 1
            self.stats.rows += pend.n_rows
            self.stats.last_batch_rows = pend.n_rows
            self.stats.last_batch_s = self._clock() - started
            self.stats.failing_since = None
            self.stats.last_error = None
            return

    @property
    def degraded(self) -> bool:
        return self.stats.failing_since is not None
