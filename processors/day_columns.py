"""A rep-day's pings held as column chunks, so a derivation reads arrays, not objects.

The session state (:mod:`processors.session`) keeps one copy per ``event_id`` of a rep-day's
events. Re-deriving a day from those objects turned every ping into numbers again on every
derivation (twice: the rep-day and its transitions), which cost more than the compiled
kernels that use them. :class:`PingColumns` converts each accepted ping ONCE, when it is
added: its values go into a pending row list that becomes a numpy chunk at the next
derivation, appended to the arrays held. A ping replaced by an earlier-received copy of
the same ``event_id`` (the rule of :func:`processors.rep_day.unique_events`) leaves a dead
row behind; :meth:`PingColumns.view` returns the live rows sorted by ``(ts, event_id)``,
exactly the order and the set the object path derives from, so the derived records are the
same bit for bit (``tests/processors/test_day_columns.py`` holds the two paths equal on
every rep-day of a simulated workload).

>>> import datetime as dt, uuid
>>> from schemas.events import Ping
>>> t0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
>>> cols = PingColumns()
>>> for k in (2, 0, 1):
...     cols.put(Ping(event_id=uuid.uuid5(uuid.NAMESPACE_URL, str(k)), device_id="d",
...                   rep_id="r", ts=t0 + dt.timedelta(seconds=30 * k), lat=52.5, lon=13.4))
>>> view = cols.view()
>>> len(view), [float(t - view.ts[0]) for t in view.ts]
(3, [0.0, 30.0, 60.0])
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from processors.config import DEFAULT_PARAMS, SessionParams
from processors.gps_filter import FilterResult, filter_columns
from processors.places import PlaceLookup
from processors.records import RepDay, Segment
from processors.rep_day import AnyEvent, derive_filtered
from schemas.derived import EnrichedPing
from schemas.events import Ping

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
_LOW64 = (1 << 64) - 1

# (name, dtype) of each column, in the order of the row tuples made by _row
_FIELDS: tuple[tuple[str, Any], ...] = (
    ("ts_us", np.int64),  # exact microseconds since the epoch (the sort key)
    ("ts", np.float64),  # ts.timestamp(), as the object path computes it
    ("recv", np.float64),  # received_at.timestamp(), nan when unknown
    ("lag", np.float64),  # (received_at - ts).total_seconds(), nan when unknown
    ("device", np.int64),  # code of device_id in PingColumns.devices
    ("lon", np.float64),
    ("lat", np.float64),
    ("acc", np.float64),  # nan when unknown
    ("speed", np.float64),
    ("heading", np.float64),
    ("mock", np.bool_),
    ("terr", np.int8),  # in_assigned_territory: 1, 0, -1 unknown
    ("eid", object),  # str(event_id)
    ("eid_hi", np.uint64),  # the event id's 128-bit integer, high and low half
    ("eid_lo", np.uint64),
    ("enriched", np.bool_),  # an EnrichedPing (transitions use only those)
    ("territory_id", object),  # geo.territory_id / geo.account_id (None when unknown)
    ("account_id", object),
    ("event", object),  # the ping itself (transitions read a few of them)
)
_EMPTY: dict[str, npt.NDArray[Any]] = {name: np.empty(0, dtype=dtype)
                                       for name, dtype in _FIELDS}  # never written to


@dataclass(frozen=True)
class PingView:
    """Live pings of a rep-day sorted by ``(ts, event_id)``: one array per column of
    ``_FIELDS`` (see there), plus the device ids by code."""

    cols: dict[str, npt.NDArray[Any]]
    devices: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.cols["ts"])

    def __getattr__(self, name: str) -> npt.NDArray[Any]:
        try:
            return self.cols[name]
        except KeyError:
            raise AttributeError(name) from None

    def take(self, idx: npt.NDArray[Any]) -> PingView:
        return PingView({k: v[idx] for k, v in self.cols.items()}, self.devices)


def _opt(x: float | None) -> float:
    return math.nan if x is None else x


def _row(p: Ping, device: int) -> tuple[Any, ...]:
    ts, rcv = p.ts, p.received_at
    eid = p.event_id.int
    geo = getattr(p, "geo", None)
    flag = getattr(geo, "in_assigned_territory", None) if geo is not None else None
    if flag is None:  # gps_filter.territory_flag
        flag = getattr(p, "in_assigned_territory", None)
    return ((ts - _EPOCH) // _US, ts.timestamp(),
            rcv.timestamp() if rcv is not None else math.nan,
            (rcv - ts).total_seconds() if rcv is not None else math.nan,
            device, p.lon, p.lat, _opt(p.accuracy_m), _opt(p.speed_mps), _opt(p.heading_deg),
            p.is_mock, -1 if flag is None else int(flag), str(p.event_id), eid >> 64,
            eid & _LOW64, isinstance(p, EnrichedPing),
            geo.territory_id if geo is not None else None,
            geo.account_id if geo is not None else None, p)


def _column(values: tuple[Any, ...], dtype: Any) -> npt.NDArray[Any]:
    if dtype is object:  # fromiter: a model is iterable, np.array would look inside it
        return np.fromiter(values, dtype=object, count=len(values))
    return np.array(values, dtype=dtype)


class PingColumns:
    """The pings of one rep-day, one live row per ``event_id`` (see the module doc)."""

    def __init__(self) -> None:
        self.devices: dict[str, int] = {}
        self._cols: dict[str, npt.NDArray[Any]] = _EMPTY
        self._pending: list[tuple[Any, ...]] = []
        self._row_of: dict[uuid.UUID, int] = {}
        self._rows = 0  # rows in _cols and _pending
        self._alive = _EMPTY["mock"]
        self._dead: list[int] = []
        self._view: PingView | None = None

    def __len__(self) -> int:
        return len(self._row_of)

    def put(self, p: Ping) -> None:
        """Hold ``p`` as the copy of its ``event_id`` (a copy held before becomes dead)."""
        old = self._row_of.get(p.event_id)
        if old is not None:
            self._dead.append(old)
        self._row_of[p.event_id] = self._rows
        self._rows += 1
        code = self.devices.setdefault(p.device_id, len(self.devices))
        self._pending.append(_row(p, code))
        self._view = None

    def discard(self, event_id: uuid.UUID) -> None:
        """Hold no ping of ``event_id`` any more (its copy now held is not a ping)."""
        old = self._row_of.pop(event_id, None)
        if old is not None:
            self._dead.append(old)
            self._view = None

    def view(self) -> PingView:
        """The live rows sorted by ``(ts, event_id)`` (cached until the next :meth:`put`)."""
        if self._view is not None:
            return self._view
        if self._pending:
            chunk = zip(*self._pending, strict=True)
            self._cols = {name: np.concatenate([self._cols[name], _column(values, dtype)])
                          for (name, dtype), values in zip(_FIELDS, chunk, strict=True)}
            self._alive = np.concatenate([self._alive,
                                          np.ones(len(self._pending), dtype=np.bool_)])
            self._pending = []
        if self._dead:
            self._alive[self._dead] = False
            self._dead = []
            if self._alive.sum() * 2 < len(self._alive):  # mostly dead rows: compact
                self._compact()
        c = self._cols
        live = np.flatnonzero(self._alive)
        order = live[np.lexsort((c["eid_lo"][live], c["eid_hi"][live], c["ts_us"][live]))]
        self._view = PingView({k: v[order] for k, v in c.items()}, tuple(self.devices))
        return self._view

    def _compact(self) -> None:
        live = np.flatnonzero(self._alive)
        remap = np.full(len(self._alive), -1, dtype=np.int64)
        remap[live] = np.arange(len(live))
        self._cols = {k: v[live] for k, v in self._cols.items()}
        self._alive = np.ones(len(live), dtype=np.bool_)
        self._row_of = {e: int(remap[r]) for e, r in self._row_of.items()}
        self._rows = len(live)


def clock_offsets_columns(view: PingView, others: Sequence[AnyEvent],
                          params: SessionParams) -> dict[str, float]:
    """:func:`processors.rep_day.clock_offsets` of the pings in ``view`` and the sorted
    other events ``others``: the same offsets, in the same order (devices by their first
    event in ``(ts, event_id)`` order, which the mean clock offset of the day sums in)."""
    if not params.clock_correction:
        return {}
    first: dict[str, tuple[int, int]] = {}  # device -> sort key of its first counted event
    lags: dict[str, float] = {}
    lag = view.lag
    with np.errstate(invalid="ignore"):
        counted = ~np.isnan(lag) & ~(lag < -params.max_future_s)
    if counted.any():
        dev = view.device
        for code in np.unique(dev[counted]).tolist():
            sel = np.flatnonzero(counted & (dev == code))
            i = int(sel[0])
            name = view.devices[code]
            first[name] = (int(view.ts_us[i]),
                           (int(view.eid_hi[i]) << 64) | int(view.eid_lo[i]))
            lags[name] = float(lag[sel].min())
    for e in others:
        if e.received_at is None:
            continue
        g = (e.received_at - e.ts).total_seconds()
        if g < -params.max_future_s:
            continue
        key = ((e.ts - _EPOCH) // _US, e.event_id.int)
        d = e.device_id
        if d not in first or key < first[d]:
            first[d] = key
        lags[d] = min(g, lags.get(d, g))
    order = sorted(first, key=first.__getitem__)
    return {d: lags[d] for d in order if abs(lags[d]) <= params.max_clock_correction_s}


def filter_view(view: PingView, params: SessionParams,
                offsets: dict[str, float] | None = None, *, compiled: bool = True,
                ) -> tuple[FilterResult, npt.NDArray[np.bool_]]:
    """:func:`processors.gps_filter.filter_pings` of the pings in ``view`` (and the mask of
    the kept ones)."""
    off = np.array([(offsets or {}).get(d, 0.0) for d in view.devices], dtype=np.float64)
    t = view.ts + (off[view.device] if len(off) else np.zeros(len(view)))
    return filter_columns(view.ts, t, view.recv, view.lon, view.lat, view.acc, view.speed,
                          view.heading, view.mock, view.terr, view.eid, params,
                          compiled=compiled)


def derive_rep_day_columns(
    rep_id: str,
    local_date: dt.date,
    tz: ZoneInfo | str,
    pings: PingColumns,
    others: Iterable[AnyEvent],
    places: PlaceLookup,
    params: SessionParams = DEFAULT_PARAMS,
    version: int = 0,
) -> tuple[list[Segment], RepDay]:
    """:func:`processors.rep_day.derive_rep_day` of a rep-day held as ``pings`` (one copy
    per event_id) and ``others`` (its check-ins and submissions, one copy per event_id, any
    order): the same records, with the compiled kernels."""
    view = pings.view()
    rest = sorted(others, key=lambda e: (e.ts, e.event_id.int))
    offsets = clock_offsets_columns(view, rest, params)
    filtered, _ = filter_view(view, params, offsets)
    return derive_filtered(rep_id, local_date, tz, filtered, rest, offsets,
                           len(view) + len(rest), places, params, version)


__all__ = ["PingColumns", "PingView", "clock_offsets_columns", "derive_rep_day_columns",
           "filter_view"]
