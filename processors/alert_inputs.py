"""The rules stage's view of each rep-day: its latest derivation, assembled from the three
``field.*`` topics, and what was already published for it (pure).

The sessions stage publishes every derivation of a rep-day at one ``version`` on three
topics (``field.workdays``, ``field.segments``, ``field.transitions``), which arrive
separately. The rules are evaluated on a rep-day only once all three parts of a version
newer than the last one evaluated are in hand, so an evaluation never mixes a new work day
with old segments (which could resolve a break as "retracted" that is still there). A
message is *settled* once its rep-day was evaluated at its version or a later one: only
then may its offset be committed, so a restart between the parts of a version reads them
again.

Memory is bounded: past ``max_rep_days`` the least recently touched rep-days are
forgotten; one that comes back is restored from what the store holds (``restore``).
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from processors.alert_rules import AlertLedger, AlertParams, AlertRecord, Condition, evaluate
from schemas.records import RepDay, Segment, Transition

Key = tuple[str, dt.date]


@dataclass
class RepDayAlerts:
    """One rep-day: the newest part of each topic, the last evaluation and its ledger."""

    day: RepDay | None = None
    segments: tuple[int, list[Segment]] | None = None  # (version, segments)
    transitions: tuple[int, list[Transition]] | None = None
    evaluated: int = -1  # the version last evaluated
    conditions: list[Condition] = field(default_factory=list)
    ledger: AlertLedger = field(default_factory=AlertLedger)
    restored: bool = False  # the ledger holds what the store had

    def complete(self) -> int | None:
        """The version all three parts are at, when it is newer than the last evaluated."""
        if self.day is None or self.segments is None or self.transitions is None:
            return None
        v = self.day.version
        if self.segments[0] == v and self.transitions[0] == v and v > self.evaluated:
            return v
        return None


class AlertInputs:
    """Rep-days by ``(rep_id, local_date)``, least recently touched first."""

    def __init__(self, max_rep_days: int = 100_000) -> None:
        if max_rep_days < 1:
            raise ValueError("max_rep_days must be at least 1")
        self.max_rep_days = max_rep_days
        self.days: OrderedDict[Key, RepDayAlerts] = OrderedDict()
        self.evaluations = 0

    def _entry(self, key: Key) -> RepDayAlerts:
        e = self.days.get(key)
        if e is None:
            e = self.days[key] = RepDayAlerts()
            while len(self.days) > self.max_rep_days:
                self.days.popitem(last=False)
        else:
            self.days.move_to_end(key)
        return e

    def add_workday(self, day: RepDay) -> Key:
        key = (day.rep_id, day.local_date)
        e = self._entry(key)
        if e.day is None or day.version >= e.day.version:
            e.day = day
        return key

    def add_segments(self, rep_id: str, local_date: dt.date, version: int,
                     segments: Sequence[Segment]) -> Key:
        key = (rep_id, local_date)
        e = self._entry(key)
        if e.segments is None or version >= e.segments[0]:
            e.segments = (version, list(segments))
        return key

    def add_transitions(self, rep_id: str, local_date: dt.date, version: int,
                        transitions: Sequence[Transition]) -> Key:
        key = (rep_id, local_date)
        e = self._entry(key)
        if e.transitions is None or version >= e.transitions[0]:
            e.transitions = (version, list(transitions))
        return key

    def due(self, keys: Iterable[Key]) -> list[Key]:
        """Those of ``keys`` with a complete, not yet evaluated version."""
        return [k for k in dict.fromkeys(keys)
                if k in self.days and self.days[k].complete() is not None]

    def needs_restore(self, keys: Iterable[Key]) -> list[Key]:
        return [k for k in keys if k in self.days and not self.days[k].restored]

    def restore(self, key: Key, published: Sequence[AlertRecord]) -> None:
        """What the store holds for a rep-day: its ledger, and its open alerts as the
        previous evaluation (so a condition the next derivation no longer finds is
        resolved as retracted)."""
        e = self._entry(key)
        e.ledger.remember(published)
        done = {r.alert_id for r in published if r.state == "resolved"}
        e.conditions = [Condition(r.alert_id, r.rule, r.rep_id, r.local_date, r.at, None,
                                  dict(r.detail))
                        for r in published if r.state == "raised" and r.alert_id not in done]
        e.restored = True

    def evaluate(self, key: Key, assigned: Iterable[str], params: AlertParams
                 ) -> list[AlertRecord]:
        """Evaluate a complete rep-day; the records not published before."""
        e = self.days[key]
        v = e.complete()
        if v is None or e.day is None or e.segments is None or e.transitions is None:
            raise ValueError(f"rep-day {key} has no complete new version to evaluate")
        current = evaluate(e.day, e.segments[1], e.transitions[1], assigned, params)
        out = e.ledger.update(e.conditions, current)
        e.conditions, e.evaluated = current, v
        self.evaluations += 1
        return out

    def forget_except(self, keep: set[Key]) -> int:
        """Forget every rep-day but ``keep`` (after partitions were revoked: another
        member may publish for them meanwhile, so their ledgers are restored from the store
        if they come back); the number forgotten."""
        gone = [k for k in self.days if k not in keep]
        for k in gone:
            del self.days[k]
        return len(gone)

    def settled(self, key: Key, version: int) -> bool:
        """Whether a message of ``key`` at ``version`` needs nothing more: its rep-day was
        evaluated at that version or later (or forgotten, being among the oldest)."""
        e = self.days.get(key)
        return e is None or e.evaluated >= version
