"""Which transition ids each open rep-day last stored as current, to retract vanished ones.

``transitions_current`` (sinks/migrations.py) keeps one row per transition id, the latest
derivation's version winning. A re-derivation of a rep-day may no longer confirm a
transition it confirmed before (a late fix moves the first fix of a run, so ``at`` and the
uuid5 id change; a jittery run falls under ``min_dwell_s``; an off-duty account arrival is
left out), so every id the day's previous derivation stored and the new one lacks must be
written again as a tombstone. :class:`TransitionLedger` remembers the ids per open rep-day
and says which ones vanished, as :class:`processors.RepSessionState` does for segment ids.
It is a cache like the session state: a rep rebuilt after a restart is seeded with the ids
stored for its open days (:meth:`TransitionLedger.seed`), so the first derivation of the
new worker retracts what the lost one would have.

>>> import datetime as dt, uuid
>>> ledger = TransitionLedger()
>>> day, a, b = dt.date(2026, 11, 2), uuid.UUID(int=1), uuid.UUID(int=2)
>>> ledger.record("rep-1", day, [a, b])
()
>>> ledger.record("rep-1", day, [b])
(UUID('00000000-0000-0000-0000-000000000001'),)
>>> ledger.known("rep-1", day) == {b}
True
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Iterable, Mapping


class TransitionLedger:
    """Transition ids stored as current per (rep, open local date). Not thread-safe."""

    def __init__(self) -> None:
        self._ids: dict[str, dict[dt.date, frozenset[uuid.UUID]]] = {}

    def __len__(self) -> int:
        """Rep-days held."""
        return sum(len(days) for days in self._ids.values())

    def known(self, rep_id: str, day: dt.date) -> frozenset[uuid.UUID]:
        return self._ids.get(rep_id, {}).get(day, frozenset())

    def record(self, rep_id: str, day: dt.date,
               ids: Iterable[uuid.UUID]) -> tuple[uuid.UUID, ...]:
        """A derivation of the rep-day stored ``ids`` as current: return the ids the day had
        before and no longer has (sorted, to be stored as tombstones), and remember ``ids``."""
        new = frozenset(ids)
        days = self._ids.setdefault(rep_id, {})
        gone = days.get(day, frozenset()) - new
        days[day] = new
        return tuple(sorted(gone, key=str))

    def seed(self, rep_id: str, stored: Mapping[dt.date, Iterable[uuid.UUID]]) -> None:
        """A rep rebuilt from the store: replace what is held about it with the ids
        ``stored`` (current, tombstones left out) for each of its open days."""
        self._ids[rep_id] = {day: frozenset(ids) for day, ids in stored.items()}

    def keep(self, rep_id: str, open_days: Collection[dt.date]) -> None:
        """Forget the rep's days that closed (their last derivation is final)."""
        days = self._ids.get(rep_id)
        if days is None:
            return
        for day in [d for d in days if d not in open_days]:
            del days[day]
        if not days:
            del self._ids[rep_id]

    def keep_reps(self, reps: Collection[str]) -> None:
        """Forget reps whose session state is gone (evicted, idle, moved to another worker):
        a rep that comes back is rebuilt and seeded from the store."""
        for rep in [r for r in self._ids if r not in reps]:
            del self._ids[rep]


__all__ = ["TransitionLedger"]
