from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from session_tracks import DAY, T0, offset

from processors.transitions import (
    Transition,
    TransitionKind,
    TransitionParams,
    derive_transitions,
    transition_id,
)
from schemas.derived import EnrichedPing, Enrichment
from schemas.events import CheckIn, CheckInAction, Ping

P = TransitionParams()
REP = "rep-1"
ENTER, EXIT = TransitionKind.territory_enter, TransitionKind.territory_exit
ARRIVE, LEAVE = TransitionKind.account_arrive, TransitionKind.account_leave


class Walk:
    """Enriched fixes of one rep walking east at ``speed_mps``; geo is given per fix."""

    def __init__(self, ping_s: float = 15.0, speed_mps: float = 1.0, rep_id: str = REP) -> None:
        self.ping_s, self.speed, self.rep_id = ping_s, speed_mps, rep_id
        self.t, self.east, self.k = T0, 0.0, 0
        self.events: list[Any] = []

    def fixes(self, n: int, territory: str | None = None, account: str | None = None,
              accuracy_m: float = 10.0, is_mock: bool = False, geo_version: int = 7) -> Walk:
        for _ in range(n):
            self.k += 1
            lon, lat = offset(self.east, 0.0)
            self.events.append(EnrichedPing(
                event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{self.rep_id}/{self.k}"),
                device_id="dev-1", rep_id=self.rep_id, ts=self.t, lon=lon, lat=lat,
                accuracy_m=accuracy_m, is_mock=is_mock,
                geo=Enrichment(territory_id=territory, account_id=account,
                               geo_version=geo_version)))
            self.t += dt.timedelta(seconds=self.ping_s)
            self.east += self.speed * self.ping_s
        return self

    def __getitem__(self, i: int) -> EnrichedPing:
        ev: EnrichedPing = self.events[i]
        return ev


def derive(events: Sequence[Any], params: TransitionParams = P) -> list[Transition]:
    return derive_transitions(REP, DAY, events, params)


def kinds(ts: Sequence[Transition]) -> list[tuple[str, str, dt.datetime]]:
    return [(t.kind.value, t.subject_id, t.at) for t in ts]


# -- territories ------------------------------------------------------------------------


def test_crossing_a_border_once_is_exit_then_enter_at_the_first_fix_across() -> None:
    w = Walk().fixes(10, "T1").fixes(10, "T2")
    out = derive(w.events)
    assert kinds(out) == [("territory_enter", "T1", w[0].ts),
                          ("territory_exit", "T1", w[10].ts),
                          ("territory_enter", "T2", w[10].ts)]
    cross = out[2]
    assert (cross.lon, cross.lat, cross.geo_version) == (w[10].lon, w[10].lat, 7)
    assert cross.transition_id == transition_id(REP, DAY, "territory_enter", "T2", w[10].ts)
    assert len({t.transition_id for t in out}) == 3


def test_jitter_across_a_border_does_not_flap() -> None:
    # 5 s fixes alternating sides for 40 s, then back in T1.
    w = Walk(ping_s=5.0).fixes(24, "T1")
    for k in range(8):
        w.fixes(1, "T2" if k % 2 == 0 else "T1")
    w.fixes(24, "T1")
    assert kinds(derive(w.events)) == [("territory_enter", "T1", w[0].ts)]


def test_jitter_then_settling_across_is_one_change_at_the_start_of_the_settled_run() -> None:
    w = Walk(ping_s=5.0).fixes(24, "T1")
    for k in range(8):
        w.fixes(1, "T2" if k % 2 == 0 else "T1")
    first_settled = len(w.events)
    w.fixes(24, "T2")
    assert kinds(derive(w.events)) == [("territory_enter", "T1", w[0].ts),
                                       ("territory_exit", "T1", w[first_settled].ts),
                                       ("territory_enter", "T2", w[first_settled].ts)]


def test_dwell_and_ping_count_must_both_hold() -> None:
    short = Walk(ping_s=10.0).fixes(12, "T1").fixes(5, "T2").fixes(12, "T1")  # 40 s across
    assert [t.kind for t in derive(short.events)] == [ENTER]
    one_fix = Walk(ping_s=600.0).fixes(3, "T1").fixes(1, "T2").fixes(3, "T1")  # 1 fix, 20 min
    assert [t.kind for t in derive(one_fix.events)] == [ENTER]
    sparse = Walk(ping_s=60.0).fixes(3, "T1").fixes(2, "T2")  # 2 fixes, 60 s apart: enough
    assert [t.kind for t in derive(sparse.events)] == [ENTER, EXIT, ENTER]
    by_count = TransitionParams(min_dwell_s=0, min_pings=3)
    two = Walk().fixes(5, "T1").fixes(2, "T2").fixes(5, "T1")
    assert [t.kind for t in derive(two.events, by_count)] == [ENTER]
    three = Walk().fixes(5, "T1").fixes(3, "T2").fixes(5, "T1")
    assert kinds(derive(three.events, by_count))[1:3] == [("territory_exit", "T1", three[5].ts),
                                                          ("territory_enter", "T2", three[5].ts)]
    slow = Walk(ping_s=45.0).fixes(5, "T1").fixes(3, "T2").fixes(5, "T1")  # 90 s, 3 fixes
    assert [t.kind for t in derive(slow.events, TransitionParams(min_pings=4))] == [ENTER]
    loose = TransitionParams(min_dwell_s=0, min_pings=1)
    assert len(derive(one_fix.events, loose)) == 5  # enter, exit+enter, exit+enter


def test_outside_all_territories() -> None:
    w = Walk().fixes(10, None).fixes(10, "T1").fixes(10, None).fixes(10, "T2")
    assert kinds(derive(w.events)) == [("territory_enter", "T1", w[10].ts),
                                       ("territory_exit", "T1", w[20].ts),
                                       ("territory_enter", "T2", w[30].ts)]
    assert derive(Walk().fixes(30, None).events) == []


def test_a_three_way_jitter_from_outside_confirms_nothing_until_it_settles() -> None:
    w = Walk(ping_s=5.0).fixes(20, None)
    for k in range(9):
        w.fixes(1, ("T1", "T2", None)[k % 3])
    assert derive(w.events) == []


def test_pending_change_at_end_of_data_waits_and_keeps_its_id_once_confirmed() -> None:
    w = Walk().fixes(10, "T1").fixes(3, "T2")  # 30 s in T2 so far
    assert [t.kind for t in derive(w.events)] == [ENTER]
    first = derive(w.events)[0]
    w.fixes(5, "T2")
    later = derive(w.events)
    assert later[0] == first
    assert kinds(later)[1:] == [("territory_exit", "T1", w[10].ts),
                                ("territory_enter", "T2", w[10].ts)]


# -- accounts ---------------------------------------------------------------------------


def test_account_arrive_and_leave_are_independent_of_territory() -> None:
    w = (Walk().fixes(8, "T1").fixes(40, "T1", account="A1").fixes(4, "T1")
         .fixes(8, "T2"))
    assert kinds(derive(w.events)) == [("territory_enter", "T1", w[0].ts),
                                       ("account_arrive", "A1", w[8].ts),
                                       ("account_leave", "A1", w[48].ts),
                                       ("territory_exit", "T1", w[52].ts),
                                       ("territory_enter", "T2", w[52].ts)]


def test_walking_past_an_account_is_not_an_arrival() -> None:
    w = Walk().fixes(8, "T1").fixes(3, "T1", account="A1").fixes(8, "T1")  # 30 s
    assert [t.kind for t in derive(w.events)] == [ENTER]


def test_leaving_and_arriving_at_the_same_instant_are_ordered_inner_first() -> None:
    # From account A1 in T1 straight into account A2 in T2.
    w = Walk().fixes(10, "T1", account="A1").fixes(10, "T2", account="A2")
    assert [t.kind for t in derive(w.events)[2:]] == [LEAVE, EXIT, ENTER, ARRIVE]
    assert len({t.at for t in derive(w.events)[2:]}) == 1


# -- what is not used -------------------------------------------------------------------


def test_mock_and_inaccurate_fixes_are_ignored() -> None:
    mock = Walk().fixes(10, "T1").fixes(20, "T2", is_mock=True).fixes(10, "T1")
    assert [t.kind for t in derive(mock.events)] == [ENTER]
    coarse = Walk().fixes(10, "T1").fixes(20, "T2", accuracy_m=300).fixes(10, "T1")
    assert [t.kind for t in derive(coarse.events)] == [ENTER]
    tolerant = TransitionParams(max_accuracy_m=500)
    assert [t.kind for t in derive(coarse.events, tolerant)] == [ENTER, EXIT, ENTER, EXIT,
                                                                  ENTER]
    late_start = Walk().fixes(5, "T1", is_mock=True).fixes(10, "T1")
    assert kinds(derive(late_start.events)) == [("territory_enter", "T1", late_start[5].ts)]


def test_plain_pings_other_kinds_and_other_reps_are_ignored() -> None:
    w = Walk().fixes(10, "T1")
    plain = [Ping(**e.model_dump(exclude={"geo"}) | {"event_id": uuid.uuid4()})
             for e in Walk().fixes(30, None).events]
    other = Walk(rep_id="rep-2").fixes(10, "T9").events
    check_in = CheckIn(event_id=uuid.uuid4(), device_id="dev-1", rep_id=REP, ts=T0,
                       action=CheckInAction.workday_start)
    # A copy of an enriched fix without geo does not shadow the enriched one, even when it
    # was received first (the enriched copies have no received_at).
    shadow = [Ping(**e.model_dump(exclude={"geo"}) | {"received_at": e.ts}) for e in w.events]
    out = derive([*plain, *other, check_in, *shadow, *w.events])
    assert kinds(out) == [("territory_enter", "T1", w[0].ts)]


def test_params_are_frozen_validated_and_documented() -> None:
    with pytest.raises(ValidationError):
        TransitionParams(min_pings=0)
    with pytest.raises(ValidationError):
        TransitionParams(min_dwell_s_typo=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        P.min_pings = 3  # type: ignore[misc]
    assert all(f.description for f in TransitionParams.model_fields.values())
    assert (P.min_dwell_s, P.min_pings, P.max_accuracy_m) == (60.0, 2, 100.0)


# -- properties -------------------------------------------------------------------------

TERRITORIES = st.sampled_from([None, "T1", "T2"])
ACCOUNTS = st.sampled_from([None, None, "A1", "A2"])


@st.composite
def rep_days(draw: st.DrawFn) -> list[EnrichedPing]:
    n = draw(st.integers(0, 60))
    t, east = T0, 0.0
    out: list[EnrichedPing] = []
    terr, acc = draw(TERRITORIES), draw(ACCOUNTS)
    for k in range(n):
        if draw(st.integers(0, 3)) == 0:  # values hold for a while, as on a real day
            terr, acc = draw(TERRITORIES), draw(ACCOUNTS)
        t += dt.timedelta(seconds=draw(st.sampled_from([0, 1, 5, 15, 30, 45, 90])))
        east += draw(st.floats(-30, 30))
        lon, lat = offset(east, draw(st.floats(-30, 30)))
        out.append(EnrichedPing(
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"p/{k}"), device_id="dev-1",
            rep_id=REP, ts=t, lon=lon, lat=lat,
            accuracy_m=draw(st.sampled_from([5.0, 20.0, 60.0, 150.0])),
            is_mock=draw(st.integers(0, 9)) == 0,
            received_at=t + dt.timedelta(seconds=draw(st.integers(0, 120))),
            geo=Enrichment(territory_id=terr, account_id=acc, geo_version=draw(st.integers(1, 3)))))
    return out


@settings(max_examples=150, deadline=None)
@given(rep_days(), st.randoms(use_true_random=False),
       st.sampled_from([P, TransitionParams(min_dwell_s=0, min_pings=1),
                        TransitionParams(min_dwell_s=30, min_pings=3)]))
def test_transitions_are_a_function_of_the_set_of_events(
    pings: list[EnrichedPing], rnd: random.Random, params: TransitionParams
) -> None:
    expected = derive_transitions(REP, DAY, sorted(pings, key=lambda p: (p.ts, p.event_id)),
                                  params)
    noisy: list[Any] = list(pings)
    for p in pings:
        if rnd.random() < 0.3:
            noisy.append(p)  # an at-least-once redelivery
        if rnd.random() < 0.1:
            # A re-sent copy that arrived later and was enriched differently: the copy
            # received first wins, whatever the order.
            noisy.append(p.model_copy(update={
                "received_at": p.ts + dt.timedelta(seconds=200),  # after every first copy
                "geo": Enrichment(territory_id="T3", geo_version=9)}))
    rnd.shuffle(noisy)
    assert derive_transitions(REP, DAY, noisy, params) == expected
    _assert_well_nested(expected)


def _assert_well_nested(out: Sequence[Transition]) -> None:
    """Per machine, exits close exactly the state the last enter opened."""
    assert [t.at for t in out] == sorted(t.at for t in out)
    for enter, leave in ((ENTER, EXIT), (ARRIVE, LEAVE)):
        state: str | None = None
        for t in out:
            if t.kind == leave:
                assert t.subject_id == state
                state = None
            elif t.kind == enter:
                assert state is None and t.subject_id is not None
                state = t.subject_id


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(TERRITORIES, ACCOUNTS), max_size=40))
def test_without_debouncing_every_change_of_value_is_a_transition(
    values: list[tuple[str | None, str | None]],
) -> None:
    w = Walk()
    for terr, acc in values:
        w.fixes(1, terr, account=acc)
    out = derive(w.events, TransitionParams(min_dwell_s=0, min_pings=1))
    for idx, enter, leave in ((0, ENTER, EXIT), (1, ARRIVE, LEAVE)):
        expected: list[tuple[str, str, dt.datetime]] = []
        prev: str | None = None
        for i, v in enumerate(vs[idx] for vs in values):
            if v != prev:
                if prev is not None:
                    expected.append((leave.value, prev, w[i].ts))
                if v is not None:
                    expected.append((enter.value, v, w[i].ts))
            prev = v
        assert kinds([t for t in out if t.kind in (enter, leave)]) == expected
