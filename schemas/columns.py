"""The named columnar batch of the hot path: events as Arrow columns, not objects or tuples.

``EventColumns`` is what the intake passes between processors/ (decoded and validated
events), geo/ (the enrichment, looked up on whole columns) and sinks/ (one Arrow insert into
``events``): an Arrow table with ``EVENT_SCHEMA``. Its columns are the ``events`` table's
(sinks/migrations.py ``EVENT_COLUMNS``, same names and order), plus ``submission_json``: the
validated visit submission as JSON (null for pings and check-ins), which the store does not
keep as such but the enriched topic carries whole.

Times are microseconds since the epoch, UTC (what the phone sent, in UTC); the store keeps
milliseconds (ClickHouse floors them on insert, as clickhouse-connect does for datetimes).

>>> batch = EventColumns.empty()
>>> len(batch), batch.table.schema.names[:4]
(0, ['event_id', 'rep_id', 'device_id', 'kind'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

_TS = pa.timestamp("us", tz="UTC")

#: Columns of ``events`` in the order of the migrations, as Arrow types.
STORE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("event_id", pa.string(), nullable=False),  # canonical UUID text
    pa.field("rep_id", pa.string(), nullable=False),
    pa.field("device_id", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),  # ping | check_in | visit_submission
    pa.field("ts", _TS, nullable=False),
    pa.field("received_at", _TS, nullable=False),
    pa.field("lat", pa.float64()),
    pa.field("lon", pa.float64()),
    pa.field("accuracy_m", pa.float64()),
    pa.field("speed_mps", pa.float64()),
    pa.field("heading_deg", pa.float64()),
    pa.field("altitude_m", pa.float64()),
    pa.field("battery_pct", pa.float64()),
    pa.field("provider", pa.string()),
    pa.field("is_mock", pa.bool_(), nullable=False),
    pa.field("action", pa.string()),
    pa.field("account_id", pa.string()),
    pa.field("visit_id", pa.string()),
    pa.field("started_at", _TS),
    pa.field("ended_at", _TS),
    pa.field("outcome", pa.string()),
    pa.field("notes", pa.string(), nullable=False),
    pa.field("form", pa.map_(pa.string(), pa.string()), nullable=False),
    pa.field("tags", pa.list_(pa.string()), nullable=False),
    pa.field("photo_count", pa.uint16(), nullable=False),
    pa.field("photos", pa.string(), nullable=False),
    pa.field("order_currency", pa.string()),
    pa.field("order_total", pa.decimal128(18, 4)),
    pa.field("order_lines", pa.string(), nullable=False),
    # enrichment (geo/): null and geo_version 0 until an index has seen the event
    pa.field("territory_id", pa.string()),
    pa.field("region", pa.string()),
    pa.field("in_assigned_territory", pa.bool_()),
    pa.field("geo_account_id", pa.string()),
    pa.field("geo_account_distance_m", pa.float64()),
    pa.field("geo_version", pa.uint32(), nullable=False),
)
STORE_COLUMNS: tuple[str, ...] = tuple(f.name for f in STORE_FIELDS)
#: The enrichment columns, in order (set by ``geo``; see ``EventColumns.with_geo``).
GEO_COLUMNS: tuple[str, ...] = STORE_COLUMNS[-6:]
EVENT_SCHEMA = pa.schema([*STORE_FIELDS, pa.field("submission_json", pa.string())])


@dataclass(frozen=True, slots=True)
class EventColumns:
    """Validated events as columns (``EVENT_SCHEMA``), in arrival order."""

    table: pa.Table

    def __post_init__(self) -> None:
        if not self.table.schema.equals(EVENT_SCHEMA):
            raise TypeError(f"not the event schema:\n{self.table.schema}")

    def __len__(self) -> int:
        return int(self.table.num_rows)

    @classmethod
    def empty(cls) -> EventColumns:
        return cls(EVENT_SCHEMA.empty_table())

    @classmethod
    def from_pydict(cls, columns: dict[str, Sequence[object] | pa.Array]) -> EventColumns:
        """From plain values per column (absent columns are null, or their empty value)."""
        n = len(next(iter(columns.values()))) if columns else 0
        arrays = []
        for f in EVENT_SCHEMA:
            values = columns.get(f.name)
            if values is None:
                arrays.append(_constant(f, n))
            else:
                arrays.append(values if isinstance(values, pa.Array)
                              else pa.array(values, type=f.type))
        return cls(pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA))

    @classmethod
    def concat(cls, batches: Sequence[EventColumns]) -> EventColumns:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(pa.concat_tables([b.table for b in batches]))

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)

    def store_table(self) -> pa.Table:
        """The ``events`` columns only (what is inserted)."""
        return self.table.select(list(STORE_COLUMNS))

    def with_geo(self, geo: dict[str, pa.Array]) -> EventColumns:
        """The same events with the enrichment columns ``geo`` (names of GEO_COLUMNS)."""
        t = self.table
        for name in GEO_COLUMNS:
            i = t.schema.get_field_index(name)
            t = t.set_column(i, EVENT_SCHEMA.field(name), geo[name].cast(
                EVENT_SCHEMA.field(name).type))
        return EventColumns(t)


def _constant(f: pa.Field, n: int) -> pa.Array:
    """A column of ``n`` empty values (null, or the empty value of a non-null column)."""
    empty = _EMPTY.get(f.name)
    if empty is None:
        return pa.nulls(n, f.type)
    if isinstance(empty, list):  # no entries: offsets only
        offsets = pa.array(np.zeros(n + 1, dtype=np.int32))
        if pa.types.is_map(f.type):
            return pa.MapArray.from_arrays(offsets, pa.array([], pa.string()),
                                           pa.array([], pa.string()))
        return pa.ListArray.from_arrays(offsets, pa.array([], pa.string()))
    return pa.array(np.full(n, empty), type=f.type)


#: Values of non-null columns that an event of another kind leaves empty.
_EMPTY: dict[str, object] = {"is_mock": False, "notes": "", "form": [], "tags": [],
                             "photo_count": 0, "photos": "", "order_lines": "",
                             "geo_version": 0}

__all__ = ["EVENT_SCHEMA", "GEO_COLUMNS", "STORE_COLUMNS", "STORE_FIELDS", "EventColumns"]
