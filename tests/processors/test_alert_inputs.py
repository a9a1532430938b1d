"""The rules stage's per rep-day assembly of the three field.* parts: a version is evaluated
only once all its parts are in, messages settle with their rep-day's evaluation, and a
ledger restored from the store publishes nothing again (and resolves what vanished)."""

from __future__ import annotations

import pytest

from processors.alert_inputs import AlertInputs
from processors.alert_rules import AlertParams
from schemas.records import SegmentKind
from tests.processors.test_alert_rules import DAY, rep_day, seg

P = AlertParams(break_max_s=600, workday_max_s=36_000)
KEY = ("r1", DAY)
BREAK = [seg(SegmentKind.break_, 10.0, 11.0, 7)]  # 1 h, over the 10 min limit


def feed(inputs: AlertInputs, version: int, segments: list, *, parts: str = "wst") -> None:
    if "w" in parts:
        inputs.add_workday(rep_day(7.0, 15.0, version=version))
    if "s" in parts:
        inputs.add_segments("r1", DAY, version, segments)
    if "t" in parts:
        inputs.add_transitions("r1", DAY, version, [])


def test_a_version_is_evaluated_only_once_all_three_parts_are_in() -> None:
    inputs = AlertInputs()
    feed(inputs, 1, BREAK, parts="ws")
    assert inputs.due([KEY]) == []
    assert not inputs.settled(KEY, 1)  # its offsets must not be committed yet
    feed(inputs, 1, BREAK, parts="t")
    assert inputs.due([KEY, KEY]) == [KEY]
    out = inputs.evaluate(KEY, (), P)
    assert [(r.rule, r.state) for r in out] == [("long_break", "raised"),
                                               ("long_break", "resolved")]
    assert inputs.settled(KEY, 1) and inputs.due([KEY]) == []
    with pytest.raises(ValueError, match="no complete new version"):
        inputs.evaluate(KEY, (), P)
    # an older part arriving late changes nothing; the same version again is not due
    feed(inputs, 0, [])
    feed(inputs, 1, BREAK)
    assert inputs.due([KEY]) == []


def test_parts_of_different_versions_wait_for_the_newest_complete_one() -> None:
    inputs = AlertInputs()
    feed(inputs, 2, BREAK, parts="w")
    feed(inputs, 1, BREAK, parts="st")
    assert inputs.due([KEY]) == []  # never a new work day with old segments
    feed(inputs, 2, BREAK, parts="st")
    assert inputs.due([KEY]) == [KEY]
    inputs.evaluate(KEY, (), P)
    assert inputs.settled(KEY, 1) and inputs.settled(KEY, 2)


def test_a_restored_ledger_repeats_nothing_and_resolves_what_vanished() -> None:
    first = AlertInputs()
    feed(first, 1, BREAK)
    published = first.evaluate(KEY, (), P)
    # a new process (restart or replay): the store gives back what was published
    again = AlertInputs()
    feed(again, 1, BREAK)
    assert again.needs_restore([KEY]) == [KEY]
    again.restore(KEY, published)
    assert again.needs_restore([KEY]) == []
    assert again.evaluate(KEY, (), P) == []
    # an open alert whose condition a later derivation no longer has is resolved, once
    opened = AlertInputs()
    feed(opened, 1, BREAK)
    raised = [r for r in opened.evaluate(KEY, (), P) if r.state == "raised"]
    later = AlertInputs()
    later.restore(KEY, raised)
    feed(later, 2, [])
    (res,) = later.evaluate(KEY, (), P)
    assert (res.alert_id, res.state, res.detail["reason"]) == (
        raised[0].alert_id, "resolved", "retracted")
    feed(later, 3, [])
    assert later.evaluate(KEY, (), P) == []


def test_memory_is_bounded_and_forgotten_days_count_as_settled() -> None:
    inputs = AlertInputs(max_rep_days=2)
    for rep in ("a", "b", "c"):
        inputs.add_workday(rep_day(7.0, 15.0, rep_id=rep))
    assert list(inputs.days) == [("b", DAY), ("c", DAY)]
    assert inputs.settled(("a", DAY), 1)
    # after a rebalance only the rep-days still waited on are kept
    assert inputs.forget_except({("c", DAY)}) == 1
    assert list(inputs.days) == [("c", DAY)] and inputs.needs_restore([("c", DAY)])
    with pytest.raises(ValueError):
        AlertInputs(max_rep_days=0)
