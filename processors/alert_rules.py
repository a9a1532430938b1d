"""Alert rules over one rep-day's derived records, on event time (pure).

A rule looks at the current derivation of a rep-day (its :class:`RepDay`, segments and
transitions, as the ``field.*`` topics carry them) and returns the conditions it finds.
Each condition has a stable id (uuid5 of rep, local date, rule and the record that caused
it), the event time at which it became true (``raised_at``: e.g. a break's start plus the
limit) and, once the records show it ended, ``resolved_at``. So evaluating the same records
again, in any order, after a restart or on a replay of the topics, gives the same ids and
the same times: :class:`AlertLedger` turns successive evaluations into "raised" and
"resolved" records, each at most once per id.

Not here, because they need the wall clock rather than event time: "no work-day start by
a local time" for a rep who sent nothing that day, and "device silent for N minutes".
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from schemas.records import RepDay, Segment, SegmentKind, Transition, TransitionKind
from schemas.topics import FieldAlertMessage

NAMESPACE = uuid.UUID("6f1c8a53-3f0e-4c1e-9a57-2d1f0b7c4e21")
RULES = ("late_start", "long_break", "long_workday", "unverified_visit", "out_of_territory")


class AlertParams(BaseModel):
    """Limits of the event-time rules (units in the names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    late_start_local: dt.time = Field(default=dt.time(9, 30),
                                      description="A work day starting after this local "
                                      "time on a working day is late.")
    working_weekdays: tuple[int, ...] = Field(default=(0, 1, 2, 3, 4),
                                              description="Working days (0 = Monday).")
    break_max_s: float = Field(default=3600.0, gt=0, description="Longest break, s.")
    workday_max_s: float = Field(default=10 * 3600.0, gt=0,
                                 description="Longest work day, s.")
    out_of_territory_max_s: float = Field(default=1800.0, gt=0,
                                          description="Longest time outside the assigned "
                                          "territories, s.")
    unverified_visit_min_s: float = Field(default=0.0, ge=0,
                                          description="An unverified visit at least this "
                                          "long raises an alert, s.")


@dataclass(frozen=True)
class Condition:
    """One alert condition found in a rep-day's records."""

    alert_id: uuid.UUID
    rule: str
    rep_id: str
    local_date: dt.date
    raised_at: dt.datetime  # event time the condition became true
    resolved_at: dt.datetime | None  # event time it ended; None while it lasts
    detail: dict[str, Any] = field(default_factory=dict)


def alert_id(rep_id: str, local_date: dt.date, rule: str, key: str) -> uuid.UUID:
    """A uuid5 of the rep-day, the rule and the key of the record that caused it.

    >>> d = dt.date(2026, 11, 2)
    >>> alert_id("r1", d, "long_break", "x") == alert_id("r1", d, "long_break", "x")
    True
    """
    return uuid.uuid5(NAMESPACE, f"{rep_id}|{local_date.isoformat()}|{rule}|{key}")


def _open_end(day: RepDay, end: dt.datetime) -> bool:
    """Whether an interval ending at ``end`` may still be going on: the day is not checked
    out and nothing later is known."""
    return day.workday_end_inferred and (day.workday_end is None or end >= day.workday_end)


def evaluate(day: RepDay, segments: Sequence[Segment], transitions: Sequence[Transition],
             assigned: Iterable[str], p: AlertParams | None = None) -> list[Condition]:
    """Every condition of one rep-day, sorted by ``raised_at`` then id."""
    p = p or AlertParams()
    out: list[Condition] = []
    rep, date = day.rep_id, day.local_date

    def add(rule: str, key: str, raised: dt.datetime, resolved: dt.datetime | None,
            **detail: Any) -> None:
        out.append(Condition(alert_id(rep, date, rule, key), rule, rep, date, raised,
                             resolved, detail))

    if day.workday_start is not None and not day.workday_start_inferred:
        local = day.workday_start.astimezone(ZoneInfo(day.tz))
        if local.weekday() in p.working_weekdays and local.time() > p.late_start_local:
            add("late_start", "", day.workday_start, day.workday_start,
                started_local=local.strftime("%H:%M"),
                limit_local=p.late_start_local.strftime("%H:%M"))

    if day.workday_start is not None and day.workday_s > p.workday_max_s:
        over = day.workday_start + dt.timedelta(seconds=p.workday_max_s)
        end = day.workday_end
        add("long_workday", "", over,
            None if end is None or day.workday_end_inferred else end,
            workday_s=round(day.workday_s), limit_s=p.workday_max_s)

    for s in segments:
        if s.kind is SegmentKind.break_ and s.duration_s > p.break_max_s:
            add("long_break", str(s.segment_id), s.start + dt.timedelta(seconds=p.break_max_s),
                None if _open_end(day, s.end) else s.end,
                break_start=s.start.isoformat(), duration_s=round(s.duration_s),
                limit_s=p.break_max_s)
        if (s.kind is SegmentKind.visit and s.verified is False
                and s.duration_s >= p.unverified_visit_min_s):
            add("unverified_visit", str(s.segment_id), s.start, s.end,
                account_id=s.place_id, source=s.visit_source.value if s.visit_source else None,
                distance_m=(round(s.place_distance_m) if s.place_distance_m is not None
                            else None),
                duration_s=round(s.duration_s), visit_id=s.visit_id)

    out.extend(_outside(day, transitions, set(assigned), p))
    return sorted(out, key=lambda c: (c.raised_at, str(c.alert_id)))


def _outside(day: RepDay, transitions: Sequence[Transition], assigned: set[str],
             p: AlertParams) -> list[Condition]:
    """Stretches outside every assigned territory: from leaving one (or entering another
    territory) until entering an assigned one again."""
    if not assigned:
        return []
    out = []
    inside: set[str] = set()
    left_at: dt.datetime | None = None
    left_key = ""
    terr = [t for t in transitions if t.kind in (TransitionKind.territory_enter,
                                                 TransitionKind.territory_exit)]
    terr.sort(key=lambda t: (t.at, t.kind != TransitionKind.territory_exit))

    def close(end: dt.datetime | None) -> None:
        nonlocal left_at
        if left_at is None:
            return
        stop = end if end is not None else day.workday_end
        if stop is not None and (stop - left_at).total_seconds() > p.out_of_territory_max_s:
            out.append(Condition(
                alert_id(day.rep_id, day.local_date, "out_of_territory", left_key),
                "out_of_territory", day.rep_id, day.local_date,
                left_at + dt.timedelta(seconds=p.out_of_territory_max_s),
                end if end is not None or not day.workday_end_inferred else None,
                {"left_at": left_at.isoformat(), "limit_s": p.out_of_territory_max_s,
                 "outside_s": round((stop - left_at).total_seconds())}))
        left_at = None

    for t in terr:
        if t.kind is TransitionKind.territory_enter:
            if t.subject_id in assigned:
                inside.add(t.subject_id)
                close(t.at)
            elif not inside and left_at is None:
                left_at, left_key = t.at, str(t.transition_id)
        else:
            inside.discard(t.subject_id)
            if t.subject_id in assigned and not inside and left_at is None:
                left_at, left_key = t.at, str(t.transition_id)
    close(None)
    return out


#: A value on ``field.alerts``: an alert raised, or resolved (same ``alert_id``).
AlertRecord = FieldAlertMessage


@dataclass
class AlertLedger:
    """What was already published per alert id, so each id is raised once and resolved
    once. Its state is rebuilt from the published records (or the ``alerts`` table)
    after a restart: :meth:`remember`."""

    raised: set[uuid.UUID] = field(default_factory=set)
    resolved: set[uuid.UUID] = field(default_factory=set)

    def remember(self, records: Iterable[AlertRecord]) -> None:
        for r in records:
            (self.raised if r.state == "raised" else self.resolved).add(r.alert_id)

    def update(self, previous: Sequence[Condition], current: Sequence[Condition]
               ) -> list[AlertRecord]:
        """Records to publish when a rep-day's conditions go from ``previous`` (the last
        evaluation, or empty) to ``current``. A condition that a re-derivation no longer
        finds is resolved with ``detail.reason = "retracted"``."""
        out: list[AlertRecord] = []
        now_ids = {c.alert_id for c in current}
        for c in current:
            base = {"alert_id": c.alert_id, "rule": c.rule, "rep_id": c.rep_id,
                    "local_date": c.local_date}
            if c.alert_id not in self.raised:
                self.raised.add(c.alert_id)
                out.append(AlertRecord(state="raised", at=c.raised_at, detail=c.detail,
                                       **base))
            if c.resolved_at is not None and c.alert_id not in self.resolved:
                self.resolved.add(c.alert_id)
                out.append(AlertRecord(state="resolved", at=c.resolved_at, detail=c.detail,
                                       **base))
        for c in previous:
            if (c.alert_id not in now_ids and c.alert_id in self.raised
                    and c.alert_id not in self.resolved):
                self.resolved.add(c.alert_id)
                out.append(AlertRecord(alert_id=c.alert_id, state="resolved", rule=c.rule,
                                       rep_id=c.rep_id, local_date=c.local_date,
                                       at=c.resolved_at or c.raised_at,
                                       detail={**c.detail, "reason": "retracted"}))
        return out
