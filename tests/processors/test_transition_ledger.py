"""The transition ids of each open rep-day, and which ones a new derivation retracts."""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import given
from hypothesis import strategies as st

from processors.transition_ledger import TransitionLedger

DAY = dt.date(2026, 11, 2)
NEXT = DAY + dt.timedelta(days=1)
A, B, C = (uuid.UUID(int=i) for i in (1, 2, 3))


def test_a_new_derivation_retracts_the_ids_it_no_longer_has() -> None:
    ledger = TransitionLedger()
    assert ledger.record("r1", DAY, [A, B]) == ()
    assert ledger.record("r1", DAY, [B, C]) == (A,)
    assert ledger.record("r1", DAY, [B, C]) == ()  # the same set again: nothing
    assert ledger.record("r1", DAY, []) == (B, C)  # sorted
    assert ledger.record("r1", DAY, [A]) == ()  # a retracted id may come back
    # days and reps are apart
    assert ledger.record("r1", NEXT, [B]) == ()
    assert ledger.record("r2", DAY, []) == ()
    assert ledger.known("r1", DAY) == {A} and ledger.known("r1", NEXT) == {B}
    assert len(ledger) == 3


def test_a_rebuilt_rep_is_seeded_with_the_stored_ids() -> None:
    ledger = TransitionLedger()
    ledger.record("r1", DAY - dt.timedelta(days=5), [C])  # left over from before an eviction
    ledger.seed("r1", {DAY: [A, B], NEXT: []})
    assert ledger.known("r1", DAY - dt.timedelta(days=5)) == frozenset()
    assert ledger.record("r1", DAY, [B]) == (A,)
    assert ledger.record("r1", NEXT, [C]) == ()


def test_closed_days_and_gone_reps_are_forgotten() -> None:
    ledger = TransitionLedger()
    for rep in ("r1", "r2", "r3"):
        ledger.record(rep, DAY, [A])
        ledger.record(rep, NEXT, [B])
    ledger.keep("r1", [NEXT])
    assert ledger.known("r1", DAY) == frozenset() and ledger.known("r1", NEXT) == {B}
    ledger.keep("r2", [])
    ledger.keep("nobody", [DAY])
    assert len(ledger) == 3
    ledger.keep_reps({"r1"})
    assert len(ledger) == 1 and ledger.known("r3", NEXT) == frozenset()


@given(st.lists(st.sets(st.integers(0, 6)), min_size=1, max_size=8))
def test_every_id_stored_and_then_dropped_is_retracted_once(sets: list[set[int]]) -> None:
    """Replaying the tombstones over the stored sets leaves exactly the last set current."""
    ledger = TransitionLedger()
    current: set[uuid.UUID] = set()
    for s in sets:
        ids = {uuid.UUID(int=i + 1) for i in s}
        gone = ledger.record("r1", DAY, ids)
        assert len(set(gone)) == len(gone)
        assert not set(gone) & ids and set(gone) <= current
        current = (current - set(gone)) | ids
        assert current == ids
