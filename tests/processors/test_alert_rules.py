"""The event-time alert rules on planted rep-days, and the ledger that raises and resolves
each alert id once, whatever order and how often the derivations arrive."""

from __future__ import annotations

import datetime as dt
import doctest
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import processors.alert_rules as ar
from processors.alert_rules import AlertLedger, AlertParams, evaluate
from schemas.records import RepDay, Segment, SegmentKind, Transition, TransitionKind

DAY = dt.date(2026, 11, 2)  # a Monday
TZ = "Europe/Berlin"  # UTC+1 in November
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def utc(hour: float) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(0), dt.UTC) + dt.timedelta(hours=hour)


def rep_day(start: float = 7.0, end: float = 15.0, *, start_inferred: bool = False,
            end_inferred: bool = False, **kw: Any) -> RepDay:
    fields: dict[str, Any] = dict(
        day_id=uuid.uuid4(), rep_id="r1", local_date=DAY, tz=TZ,
        workday_start=utc(start), workday_end=utc(end),
        workday_start_inferred=start_inferred, workday_end_inferred=end_inferred,
        workday_s=(end - start) * 3600, field_s=0.0, travel_s=0.0, customer_s=0.0,
        stopped_other_s=0.0, unknown_s=0.0, break_s=0.0, office_home_s=0.0,
        in_territory_s=0.0, out_territory_s=0.0, distance_m=0.0, visits=0,
        verified_visits=0, unverified_visits=0, auto_visits=0, pings_kept=0,
        pings_dropped={}, clock_offset_s=0.0, events=0, version=1)
    fields.update(kw)
    return RepDay(**fields)


def seg(kind: SegmentKind, start: float, end: float, n: int, **kw: Any) -> Segment:
    return Segment(segment_id=uuid.UUID(int=n), rep_id="r1", local_date=DAY, kind=kind,
                   start=utc(start), end=utc(end), duration_s=(end - start) * 3600,
                   workday_s=(end - start) * 3600, **kw)


def trans(kind: TransitionKind, terr: str, at: float, n: int) -> Transition:
    return Transition(transition_id=uuid.UUID(int=1000 + n), rep_id="r1", local_date=DAY,
                      kind=kind, subject_id=terr, at=utc(at), lon=None, lat=None,
                      geo_version=1)


def rules(conds: list[ar.Condition]) -> list[str]:
    return [c.rule for c in conds]


def test_doctests() -> None:
    assert doctest.testmod(ar).failed == 0


def test_a_normal_day_raises_nothing() -> None:
    day = rep_day(7.0, 15.0)
    segs = [seg(SegmentKind.travel, 7.0, 7.5, 1),
            seg(SegmentKind.visit, 7.5, 8.5, 2, verified=True, place_id="A1"),
            seg(SegmentKind.break_, 11.0, 11.5, 3)]
    tr = [trans(TransitionKind.territory_enter, "T1", 7.1, 1)]
    assert evaluate(day, segs, tr, {"T1"}) == []


def test_a_late_checked_in_start_on_a_working_day() -> None:
    # 09:00 UTC is 10:00 in Berlin, after 09:30
    (c,) = evaluate(rep_day(9.0, 15.0), [], [], {"T1"})
    assert c.rule == "late_start" and c.detail["started_local"] == "10:00"
    assert c.raised_at == c.resolved_at == utc(9.0)
    # not when the start is inferred (no check-in), nor on a Sunday
    assert evaluate(rep_day(9.0, 15.0, start_inferred=True), [], [], {"T1"}) == []
    sunday = rep_day(9.0, 15.0, local_date=DAY - dt.timedelta(days=1),
                     workday_start=utc(9.0) - 24 * H)
    assert evaluate(sunday, [], [], {"T1"}) == []


def test_a_long_break_is_raised_at_the_limit_and_resolved_at_its_end() -> None:
    day = rep_day(7.0, 15.0)
    (c,) = evaluate(day, [seg(SegmentKind.break_, 10.0, 11.5, 7)], [], {"T1"})
    assert c.rule == "long_break"
    assert c.raised_at == utc(11.0) and c.resolved_at == utc(11.5)
    assert c.detail["duration_s"] == 5400
    # while the day is open and the break is its last interval, it is still going on
    open_day = rep_day(7.0, 11.5, end_inferred=True)
    (c2,) = evaluate(open_day, [seg(SegmentKind.break_, 10.0, 11.5, 7)], [], {"T1"})
    assert c2.alert_id == c.alert_id and c2.resolved_at is None


def test_limits_are_settings() -> None:
    brk = [seg(SegmentKind.break_, 10.0, 10.75, 7)]
    assert evaluate(rep_day(), brk, [], {"T1"}) == []
    strict = AlertParams(break_max_s=1800.0, late_start_local=dt.time(7, 30))
    assert rules(evaluate(rep_day(), brk, [], {"T1"}, strict)) == ["late_start", "long_break"]


def test_a_visit_gps_cannot_confirm() -> None:
    s = seg(SegmentKind.visit, 8.0, 8.4, 9, verified=False, place_id="A7",
            place_distance_m=2350.0, visit_id="v1")
    (c,) = evaluate(rep_day(), [s], [], {"T1"})
    assert c.rule == "unverified_visit"
    assert c.detail["account_id"] == "A7" and c.detail["distance_m"] == 2350
    assert c.detail["duration_s"] == 1440


def test_a_long_work_day() -> None:
    (c,) = evaluate(rep_day(6.0, 17.5), [], [], {"T1"})
    assert c.rule == "long_workday"
    assert c.raised_at == utc(16.0) and c.resolved_at == utc(17.5)
    (c2,) = evaluate(rep_day(6.0, 17.5, end_inferred=True), [], [], {"T1"})
    assert c2.resolved_at is None


def test_a_trip_out_of_the_assigned_territory() -> None:
    tr = [trans(TransitionKind.territory_enter, "T1", 7.0, 1),
          trans(TransitionKind.territory_exit, "T1", 9.0, 2),
          trans(TransitionKind.territory_enter, "T9", 9.0, 3),
          trans(TransitionKind.territory_exit, "T9", 10.0, 4),
          trans(TransitionKind.territory_enter, "T1", 10.0, 5),
          # a short excursion: under the limit
          trans(TransitionKind.territory_exit, "T1", 12.0, 6),
          trans(TransitionKind.territory_enter, "T1", 12.2, 7)]
    (c,) = evaluate(rep_day(), [], tr, {"T1"})
    assert c.rule == "out_of_territory"
    assert c.raised_at == utc(9.5) and c.resolved_at == utc(10.0)
    assert c.detail["outside_s"] == 3600
    # no assignment, no rule
    assert evaluate(rep_day(), [], tr, set()) == []


def test_the_ledger_raises_and_resolves_each_id_once() -> None:
    ledger = AlertLedger()
    brk = seg(SegmentKind.break_, 10.0, 11.5, 7)
    v1 = evaluate(rep_day(7.0, 11.5, end_inferred=True), [brk], [], {"T1"})
    out = ledger.update([], v1)
    assert [(r.rule, r.state) for r in out] == [("long_break", "raised")]
    assert ledger.update(v1, v1) == []  # the same derivation again (a replay): nothing
    v2 = evaluate(rep_day(7.0, 15.0, end_inferred=True), [brk], [], {"T1"})
    out = ledger.update(v1, v2)
    assert [(r.state, r.at) for r in out] == [("resolved", utc(11.5))]
    assert ledger.update(v2, v2) == []
    # a re-derivation without the break resolves nothing twice
    assert ledger.update(v2, []) == []


def test_a_retracted_condition_is_resolved_as_retracted() -> None:
    ledger = AlertLedger()
    brk = seg(SegmentKind.break_, 10.0, 11.5, 7)
    v1 = evaluate(rep_day(7.0, 11.5, end_inferred=True), [brk], [], {"T1"})
    ledger.update([], v1)
    (r,) = ledger.update(v1, [])
    assert r.state == "resolved" and r.detail["reason"] == "retracted"


def test_a_restarted_ledger_remembers_what_was_published() -> None:
    first = AlertLedger()
    brk = seg(SegmentKind.break_, 10.0, 11.5, 7)
    conds = evaluate(rep_day(), [brk], [], {"T1"})
    published = first.update([], conds)
    assert [r.state for r in published] == ["raised", "resolved"]
    again = AlertLedger()
    again.remember(published)
    assert again.update([], conds) == []


@given(st.permutations(list(range(4))), st.integers(1, 3))
def test_any_order_and_repetition_of_derivations_gives_the_same_records(
        order: list[int], repeat: int) -> None:
    brk = seg(SegmentKind.break_, 10.0, 11.5, 7)
    visit = seg(SegmentKind.visit, 8.0, 8.4, 9, verified=False, place_id="A7")
    derivations = [
        evaluate(rep_day(7.0, 10.5, end_inferred=True), [visit], [], {"T1"}),
        evaluate(rep_day(7.0, 11.5, end_inferred=True), [visit, brk], [], {"T1"}),
        evaluate(rep_day(7.0, 15.0, end_inferred=True), [visit, brk], [], {"T1"}),
        evaluate(rep_day(7.0, 15.0), [visit, brk], [], {"T1"}),
    ]
    ledger = AlertLedger()
    prev: list[ar.Condition] = []
    records = []
    for i in order:
        for _ in range(repeat):
            records += ledger.update(prev, derivations[i])
            prev = derivations[i]
    keys = [(r.alert_id, r.state) for r in records]
    assert len(keys) == len(set(keys))  # each id raised once, resolved at most once
    assert {r.rule for r in records if r.state == "raised"} == {"long_break",
                                                                "unverified_visit"}
