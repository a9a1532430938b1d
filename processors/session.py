"""Per-rep session state: accept events, re-derive the rep-days they touch, close old days.

A small pure state object in the style of bytewax's session windower: time comes in only as
event time (the rep's watermark is the newest ``ts`` it has accepted), never from a clock.

* lateness: an event whose day-time (``ts``; a submission's ``started_at``) is older than
  the watermark *before this call* minus ``lateness_s`` is rejected as ``too_late``; one
  whose ``ts`` is more than ``max_future_s`` after its ``received_at`` as ``in_future`` (it
  never advances the watermark, so a phone with a wrong clock cannot close days);
* duplicates (same ``event_id``) are absorbed; a rep-day is re-derived only when its set of
  events changed, and emitted only when its records changed, with ``version`` + 1;
* a rep-day closes once its local end is ``lateness_s`` behind the watermark: its last
  update is final and its events are dropped, so memory holds only open days.

Derivation itself is :func:`processors.rep_day.derive_rep_day`, a function of the set of
the day's events: the same events late, out of order or twice give the same records. A day
holds its pings also as column chunks (:mod:`processors.day_columns`), converted once when
they arrive, and derives from those (the same records as from the objects).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from processors.config import DEFAULT_PARAMS, SessionParams
from processors.day_columns import PingColumns, derive_rep_day_columns
from processors.places import NoPlaces, PlaceLookup
from processors.records import (
    Rejected,
    RejectReason,
    RepDay,
    RepDayUpdate,
    Segment,
    SessionOutput,
)
from processors.rep_day import AnyEvent, event_time, local_day_bounds
from schemas.events import Ping

_NO_PLACES = NoPlaces()
_ONE_US = dt.timedelta(microseconds=1)


@dataclass
class _DayState:
    events: dict[uuid.UUID, AnyEvent] = field(default_factory=dict)
    # the same events as columns (pings) and the rest: what derivation reads
    pings: PingColumns = field(default_factory=PingColumns)
    others: dict[uuid.UUID, AnyEvent] = field(default_factory=dict)
    version: int = 0
    segment_ids: frozenset[uuid.UUID] = frozenset()
    fingerprint: str | None = None
    dirty: bool = False

    def remove(self, event_id: uuid.UUID) -> None:
        """Hold no copy of ``event_id`` any more (events, columns and the rest)."""
        if (self.events.pop(event_id, None) is not None
                and self.others.pop(event_id, None) is None):
            self.pings.discard(event_id)


def _fingerprint(segments: list[Segment], summary: RepDay) -> str:
    body = [s.model_dump_json(exclude={"version"}) for s in segments]
    return "\n".join([*body, summary.model_dump_json(exclude={"version"})])


def _earlier(a: AnyEvent, b: AnyEvent) -> bool:
    """Is ``a`` the copy to keep over ``b`` (same event_id)? Same rule as unique_events."""
    ra = a.received_at.timestamp() if a.received_at else float("inf")
    rb = b.received_at.timestamp() if b.received_at else float("inf")
    if ra != rb:
        return ra < rb
    if a == b:  # the same copy again (a resend or a redelivery): keep the one held
        return False
    return a.model_dump_json() < b.model_dump_json()


class RepSessionState:
    """Session state of one rep. Not thread-safe; one per rep key.

    >>> state = RepSessionState("rep-1", "Europe/Berlin")
    >>> state.watermark is None, state.open_days()
    (True, [])
    """

    def __init__(self, rep_id: str, tz: ZoneInfo | str,
                 params: SessionParams = DEFAULT_PARAMS) -> None:
        self.rep_id = rep_id
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.params = params
        self.watermark: dt.datetime | None = None
        self._days: dict[dt.date, _DayState] = {}
        self._span: tuple[dt.datetime, dt.datetime, dt.date] | None = None  # see local_date

    # -- queries ------------------------------------------------------------------------
    def local_date(self, t: dt.datetime) -> dt.date:
        span = self._span
        if span is not None and span[0] <= t < span[1]:
            return span[2]
        d = t.astimezone(self.tz).date()
        # Remember the day's UTC bounds when its offset is one all day (so every instant in
        # them is on that date): most events then need no time zone conversion.
        lo, hi = local_day_bounds(d, self.tz)
        first, last = lo.astimezone(self.tz), (hi - _ONE_US).astimezone(self.tz)
        if (first.utcoffset() == last.utcoffset() and first.date() == d == last.date()
                and lo <= t < hi):
            self._span = (lo, hi, d)
        return d

    def open_days(self) -> list[dt.date]:
        return sorted(self._days)

    def is_closed(self, day: dt.date) -> bool:
        """Has the watermark passed the day's local end by ``lateness_s``?"""
        if self.watermark is None:
            return False
        _, hi = local_day_bounds(day, self.tz)
        return hi + dt.timedelta(seconds=self.params.lateness_s) <= self.watermark

    @property
    def is_empty(self) -> bool:
        """No open rep-day is held (only the watermark remains)."""
        return not self._days

    def pings_of(self, day: dt.date) -> PingColumns:
        """The day's pings as columns (empty for a day not held)."""
        st = self._days.get(day)
        return PingColumns() if st is None else st.pings

    def events_of(self, day: dt.date) -> list[AnyEvent]:
        st = self._days.get(day)
        return [] if st is None else list(st.events.values())

    # -- updates ------------------------------------------------------------------------
    def add(self, events: Iterable[AnyEvent], received: dt.datetime | None = None,
            places: PlaceLookup = _NO_PLACES, *, derive: bool = True) -> SessionOutput:
        """Accept a batch of this rep's events (one upload, say) and return what to emit.

        ``received`` is the server receive time of the batch, used for events without their
        own ``received_at``. Lateness is judged against the watermark before the batch, so
        a phone's backlog uploaded at once is accepted whole. With ``derive=False`` the
        touched days are only marked dirty (see :meth:`derive`), so a caller can coalesce
        many uploads into one derivation; closing days waits for that derivation too.
        """
        p = self.params
        before = self.watermark
        cutoff = before - dt.timedelta(seconds=p.lateness_s) if before else None
        rejected: list[Rejected] = []
        superseded: list[AnyEvent] = []
        duplicates = 0
        newest = before
        for e in events:
            if e.rep_id != self.rep_id:
                raise ValueError(f"event {e.event_id} of rep {e.rep_id} given to {self.rep_id}")
            if e.received_at is None and received is not None:
                e = e.model_copy(update={"received_at": received.astimezone(dt.UTC)})
            if e.received_at is not None and (
                    (e.ts - e.received_at).total_seconds() > p.max_future_s):
                rejected.append(self._reject(e, RejectReason.in_future,
                                             f"ts {e.ts.isoformat()} is after received_at "
                                             f"{e.received_at.isoformat()} + {p.max_future_s}s"))
                continue
            when = event_time(e)
            if cutoff is not None and when < cutoff:
                rejected.append(self._reject(e, RejectReason.too_late,
                                             f"{when.isoformat()} is before watermark "
                                             f"{before.isoformat() if before else ''} "
                                             f"- {p.lateness_s}s"))
                continue
            key = self.local_date(when)
            held = self._holder(e.event_id, key)
            old: AnyEvent | None = None
            if held is not None:
                duplicates += 1
                old_day, old = held
                if not _earlier(e, old):
                    if old.ts != e.ts:
                        superseded.append(e)
                    continue
                if old.ts != e.ts:  # the copy held moves (possibly to another day)
                    superseded.append(old)
                    old_day.remove(e.event_id)
                    old_day.dirty = True
                    old = None
            day = self._days.get(key)
            if day is None:  # not setdefault: a day's state is not cheap to make
                day = self._days[key] = _DayState()
            day.events[e.event_id] = e
            if isinstance(e, Ping):
                day.pings.put(e)
                if old is not None and not isinstance(old, Ping):
                    del day.others[e.event_id]
            else:
                day.others[e.event_id] = e
                if isinstance(old, Ping):
                    day.pings.discard(e.event_id)
            day.dirty = True
            if newest is None or e.ts > newest:
                newest = e.ts
        self.watermark = newest
        if not derive:
            return SessionOutput(rejected=tuple(rejected), duplicates=duplicates,
                                 superseded=tuple(superseded))
        out = self.derive(places)
        return SessionOutput(updates=out.updates, rejected=tuple(rejected),
                             duplicates=duplicates, closed=out.closed,
                             superseded=tuple(superseded))

    def _holder(self, event_id: uuid.UUID, day: dt.date
                ) -> tuple[_DayState, AnyEvent] | None:
        """The open day holding a copy of ``event_id`` (``day`` first: a resend with another
        ts may fall on another day), and that copy."""
        st = self._days.get(day)
        if st is not None and (old := st.events.get(event_id)) is not None:
            return st, old
        for d, other in self._days.items():
            if d != day and (old := other.events.get(event_id)) is not None:
                return other, old
        return None

    @property
    def dirty(self) -> bool:
        """Some rep-day has events not yet derived."""
        return any(st.dirty for st in self._days.values())

    def derive(self, places: PlaceLookup = _NO_PLACES, *, close: bool = True) -> SessionOutput:
        """Re-derive the dirty rep-days, then close (and drop) the days the watermark left
        ``lateness_s`` behind. With ``close=False`` the caller still reads the events of the
        updated days (``events_of``) and closes with :meth:`close_days` afterwards."""
        updates = [u for d in sorted(self._days) if (u := self._rederive(d, places))]
        return SessionOutput(updates=tuple(updates),
                             closed=tuple(self._close()) if close else ())

    def close_days(self) -> list[dt.date]:
        """Close (and drop) the derived days the watermark left ``lateness_s`` behind."""
        return self._close()

    def seed_segment_ids(self, day: dt.date, ids: Iterable[uuid.UUID]) -> bool:
        """Set the segment ids an open day's stored current derivation has, for a state
        rebuilt from stored events: its next derivation then lists the ids that vanished
        in ``retracted``, as the lost state would have. Ignored (False) for a day the state
        does not hold or has derived already."""
        st = self._days.get(day)
        if st is None or st.fingerprint is not None:
            return False
        st.segment_ids = frozenset(ids)
        return True

    def event_count(self) -> int:
        return sum(len(st.events) for st in self._days.values())

    def advance_watermark(self, t: dt.datetime) -> SessionOutput:
        """Move the watermark forward from outside (e.g. the partition's event-time
        progress), so an idle rep's days close too. Never moves it back."""
        if self.watermark is None or t > self.watermark:
            self.watermark = t
        return SessionOutput(closed=tuple(self._close()))

    def _reject(self, e: AnyEvent, reason: RejectReason, detail: str) -> Rejected:
        return Rejected(event_id=e.event_id, rep_id=self.rep_id, reason=reason, detail=detail)

    def _rederive(self, day: dt.date, places: PlaceLookup) -> RepDayUpdate | None:
        st = self._days[day]
        if not st.dirty:
            return None
        st.dirty = False
        # The version is the size of the day's event set: it grows with every new event, and a
        # state rebuilt after a restart (from the stored events) derives the same version for
        # the same set, so ReplacingMergeTree(version) and consumers keep the right record.
        version = len(st.events)
        segments, summary = derive_rep_day_columns(self.rep_id, day, self.tz, st.pings,
                                                   st.others.values(), places, self.params,
                                                   version=version)
        fp = _fingerprint(segments, summary)
        if fp == st.fingerprint:
            return None
        st.version = version
        st.fingerprint = fp
        ids = frozenset(s.segment_id for s in segments)
        retracted = tuple(sorted(st.segment_ids - ids, key=str))
        st.segment_ids = ids
        return RepDayUpdate(rep_id=self.rep_id, local_date=day, version=st.version,
                            segments=tuple(segments), summary=summary, retracted=retracted)

    def _close(self) -> list[dt.date]:
        closed = [d for d in sorted(self._days)
                  if self.is_closed(d) and not self._days[d].dirty]
        for d in closed:
            del self._days[d]
        return closed
