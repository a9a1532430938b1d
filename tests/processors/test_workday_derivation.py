from __future__ import annotations

import datetime as dt

import pytest
from session_tracks import DAY, T0, TZ, DayBuilder, place, standard_day

from processors import DEFAULT_PARAMS, InMemoryPlaces, NoPlaces, SegmentKind, derive_rep_day


def test_standard_day_figures() -> None:
    events, places, _ = standard_day()
    segs, day = derive_rep_day("rep-1", DAY, TZ, events, InMemoryPlaces(places))
    assert day.workday_start == T0 + dt.timedelta(seconds=0)
    assert not day.workday_start_inferred and not day.workday_end_inferred
    # 10 min home, 5000/12 s drive, 30 min A, 1500/12, 40 min lunch, 1500/12, 20 min B,
    # 5831/12 s drive home, 5 min at home.
    drive_s = (5000 + 1500 + 1500 + (5000**2 + 3000**2) ** 0.5) / 12.0
    total = 600 + 1800 + 2400 + 1200 + 300 + drive_s
    assert day.workday_s == pytest.approx(total, abs=1)
    assert day.break_s == pytest.approx(2400, abs=60)
    assert day.office_home_s == pytest.approx(900, abs=60)
    assert day.field_s == pytest.approx(total - 2400 - 900, abs=60)
    assert day.customer_s == pytest.approx(3000, abs=120)
    assert day.travel_s == pytest.approx(drive_s, abs=180)  # +-half a ping per stop edge
    assert day.distance_m == pytest.approx(13_831, rel=0.02)
    assert day.field_s == pytest.approx(
        day.travel_s + day.customer_s + day.stopped_other_s + day.unknown_s, abs=1)
    assert {s.kind for s in segs} == set(SegmentKind)


def test_inferred_day_from_long_idle_at_both_ends() -> None:
    _, places, b = standard_day(checkins=False)
    # the phone also recorded two idle hours at home before and after
    early = DayBuilder(start=T0 - dt.timedelta(hours=2), rep_id="rep-1", seed=9)
    early._k = 10_000
    early.stay(7200)
    b.stay(7200)
    # the hand-made day has its lunch at 07:50 local: widen the inferred break's window
    params = DEFAULT_PARAMS.model_copy(update={"break_window_start_h": 7.0})
    segs, day = derive_rep_day("rep-1", DAY, TZ, [*early.events, *b.events],
                               InMemoryPlaces(places), params)
    assert day.workday_start_inferred and day.workday_end_inferred
    # departure from home after 2h10m idle; arrival home before 2h35m idle (day ends there)
    depart = T0 + dt.timedelta(seconds=600)
    assert abs((day.workday_start - depart).total_seconds()) <= 30
    assert abs((b.t - day.workday_end).total_seconds() - 2100 - 7200) <= 60
    assert day.break_s == pytest.approx(2400, abs=90)  # the long stop away from places
    assert any(s.kind == SegmentKind.break_ and s.inferred for s in segs)


def test_inferred_day_without_idle_uses_first_and_last_event() -> None:
    b = DayBuilder().drive(4000, 0).stay(900).drive(4000, 0)
    _, day = derive_rep_day("rep-1", DAY, TZ, b.events, NoPlaces())
    assert day.workday_start == b.events[0].ts
    assert day.workday_end == b.events[-1].ts


def test_break_with_missing_end_closes_at_departure() -> None:
    b = DayBuilder()
    b.check_in("workday_start").drive(3000, 0)
    b.check_in("break_start").stay(1800).drive(3000, 0).stay(300)
    b.check_in("workday_end")
    segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, NoPlaces())
    assert day.break_s == pytest.approx(1800, abs=60)
    (br,) = [s for s in segs if s.kind == SegmentKind.break_]
    assert br.inferred


def test_territory_split_and_local_day() -> None:
    b = DayBuilder(start=dt.datetime(2026, 11, 2, 22, 0, tzinfo=dt.UTC))  # 23:00 local
    b.check_in("workday_start")  # late work, checked in (without it: a night trip)
    b.drive(6000, 0, speed_mps=10)
    evs = [e.model_copy(update={"geo": None}) for e in b.events]
    pings = [e for e in evs if e.kind == "ping"]
    half = len(pings) // 2
    for k, e in enumerate(pings):
        object.__setattr__(e, "in_assigned_territory", k < half)
    _, day = derive_rep_day("rep-1", DAY, TZ, evs, NoPlaces())
    assert day.workday_end is not None
    assert day.workday_end <= dt.datetime(2026, 11, 2, 23, 0, tzinfo=dt.UTC)  # local midnight
    assert day.in_territory_s == pytest.approx(day.out_territory_s, abs=60)
    assert day.in_territory_s + day.out_territory_s == pytest.approx(day.field_s, abs=1)


def test_office_time_is_not_field_time() -> None:
    b = DayBuilder()
    b.check_in("workday_start").drive(2000, 0).stay(3600).drive(2000, 0).stay(600)
    b.check_in("workday_end")
    places = InMemoryPlaces([place("office-1", 2000, 0, 100, "office")])
    _, day = derive_rep_day("rep-1", DAY, TZ, b.events, places)
    assert day.office_home_s == pytest.approx(3600, abs=60)
    assert day.field_s == pytest.approx(day.workday_s - 3600, abs=60)


# -- work-day bounds without check-ins: short vs long stays at home ---------------------

HOME = [place("home-1", 0, 0, 60, "home"), place("A", 5000, 0)]
LEAVE = T0 + dt.timedelta(minutes=40)  # 07:40 local
SHORT_HOME_S = 900.0  # 15 min of e-mail before driving off: work
LONG_HOME_S = 7 * 3600 + 2400.0  # the app recorded since midnight: off duty


def _day_from_home(home_s: float, checkin: bool) -> tuple[list, dt.datetime]:
    b = DayBuilder(start=LEAVE - dt.timedelta(seconds=home_s), ping_s=60)
    b.stay(home_s - 600)
    if checkin:
        b.check_in("workday_start")
    checked = b.t
    b.stay(600).drive(5000, 0).stay(1800).drive(-5000, 0).stay(600)
    b.check_in("workday_end")
    return b.events, checked


@pytest.mark.parametrize("checkin", [False, True])
@pytest.mark.parametrize("home_s", [SHORT_HOME_S, LONG_HOME_S])
def test_day_start_after_a_short_or_long_stay_at_home(home_s: float, checkin: bool) -> None:
    events, checked = _day_from_home(home_s, checkin)
    _, day = derive_rep_day("rep-1", DAY, TZ, events, InMemoryPlaces(HOME))
    assert day.workday_start_inferred is not checkin
    if checkin:
        expected = checked
    elif home_s < DEFAULT_PARAMS.day_idle_s:
        expected = LEAVE - dt.timedelta(seconds=home_s)  # the first ping
    else:
        expected = LEAVE  # the night at home is not work
    assert abs((day.workday_start - expected).total_seconds()) <= 30
    # home is never field time, however the day is bounded
    assert day.field_s == pytest.approx(1800 + 2 * 5000 / 12, abs=90)


def _day_ending_at_home(home_s: float, checkin: bool) -> tuple[list, dt.datetime, dt.datetime]:
    b = DayBuilder(ping_s=60)
    b.check_in("workday_start").stay(600).drive(5000, 0).stay(1800).drive(-5000, 0)
    arrival = b.t
    b.stay(600)
    if checkin:
        b.check_in("workday_end")
    checked = b.t
    b.stay(home_s - 600)
    return b.events, arrival, checked


@pytest.mark.parametrize("checkin", [False, True])
@pytest.mark.parametrize("home_s", [SHORT_HOME_S, LONG_HOME_S])
def test_day_end_before_a_short_or_long_stay_at_home(home_s: float, checkin: bool) -> None:
    events, arrival, checked = _day_ending_at_home(home_s, checkin)
    _, day = derive_rep_day("rep-1", DAY, TZ, events, InMemoryPlaces(HOME))
    assert day.workday_end_inferred is not checkin
    if checkin:
        expected = checked
    elif home_s < DEFAULT_PARAMS.day_idle_s:
        expected = arrival + dt.timedelta(seconds=home_s - 60)  # the last ping: paperwork
    else:
        expected = arrival  # the evening at home is not work
    assert abs((day.workday_end - expected).total_seconds()) <= 30
    assert day.field_s == pytest.approx(1800 + 2 * 5000 / 12, abs=90)


# -- a break check-in without its other side -------------------------------------------

def _break_of(segs: list) -> float:
    (br,) = [s for s in segs if s.kind == SegmentKind.break_]
    assert br.inferred
    return br.duration_s


def test_open_break_checked_in_before_its_stop_is_detected() -> None:
    # break_start pressed on the way to the cafe, ~170 s before the stop there begins
    b = DayBuilder(ping_s=20)
    b.check_in("workday_start").drive(3000, 0).stay(1200).drive(0, 1000)
    b.check_in("break_start")
    pressed = b.t
    b.drive(0, 2000).stay(1800)
    leave = b.t
    b.drive(0, 3000).stay(900).check_in("workday_end")
    segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, NoPlaces())
    assert _break_of(segs) == pytest.approx((leave - pressed).total_seconds(), abs=30)
    assert day.break_s == pytest.approx((leave - pressed).total_seconds(), abs=30)


def test_open_break_checked_in_seconds_before_leaving_the_customer() -> None:
    # break_start pressed while pulling out of the customer's car park (the stop there
    # ends seconds later); the break is at the roadside 400 m on
    b = DayBuilder(ping_s=20)
    b.check_in("workday_start").drive(5000, 0)
    b.check_in("visit_start", account_id="A", visit_id="v1").stay(1190)
    b.check_in("visit_end", account_id="A", visit_id="v1").stay(5)
    b.check_in("break_start")
    pressed = b.t
    b.stay(5).drive(0, 400).stay(1800)
    leave = b.t
    b.drive(0, 3000).stay(900).check_in("workday_end")
    segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, InMemoryPlaces(HOME))
    assert _break_of(segs) == pytest.approx((leave - pressed).total_seconds(), abs=30)
    assert day.customer_s == pytest.approx(1200, abs=60)


def test_open_break_where_the_rep_already_is_ends_at_departure() -> None:
    # break taken in the car at the customer's car park: the stop around the check-in goes on
    b = DayBuilder(ping_s=20)
    b.check_in("workday_start").drive(5000, 0)
    b.check_in("visit_start", account_id="A", visit_id="v1").stay(1200)
    b.check_in("visit_end", account_id="A", visit_id="v1").stay(60)
    b.check_in("break_start").stay(1500).drive(0, 3000).stay(900).check_in("workday_end")
    segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, InMemoryPlaces(HOME))
    assert _break_of(segs) == pytest.approx(1500, abs=30)
    assert day.customer_s == pytest.approx(1260, abs=60)


def test_open_break_is_not_closed_by_a_stop_long_after_it() -> None:
    # no stop within travel_max_gap_s of the check-in: nothing to close it with
    b = DayBuilder(ping_s=20)
    b.check_in("workday_start").stay(600).check_in("break_start")
    b.drive(30_000, 0).stay(1800).check_in("workday_end")
    _, day = derive_rep_day("rep-1", DAY, TZ, b.events, NoPlaces())
    assert day.break_s == 0


def test_break_end_checked_in_seconds_after_reaching_the_customer() -> None:
    # break_start forgotten; break_end pressed on arrival at the next customer
    b = DayBuilder(ping_s=20)
    b.check_in("workday_start").drive(0, 3000)
    arrived = b.t
    b.stay(1800).drive(0, -3000 + 400).drive(5000, -400).stay(10)
    b.check_in("break_end")
    pressed = b.t
    b.check_in("visit_start", account_id="A", visit_id="v1").stay(1200)
    b.check_in("visit_end", account_id="A", visit_id="v1").drive(-5000, 0).stay(600)
    b.check_in("workday_end")
    segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, InMemoryPlaces(HOME))
    assert _break_of(segs) == pytest.approx((pressed - arrived).total_seconds(), abs=30)
    assert day.customer_s == pytest.approx(1200, abs=60)


def test_a_lone_fix_at_home_in_the_night_does_not_stretch_the_day() -> None:
    # one fix at 02:00 and one at 23:00, more than stop_max_gap_s from the day's other fixes
    events, _ = _day_from_home(SHORT_HOME_S, checkin=False)
    events = [e for e in events if not (e.kind == "check_in" and e.action == "workday_end")]
    night = DayBuilder(start=T0 - dt.timedelta(hours=5))
    night._k = 10_000
    late = DayBuilder(start=T0 + dt.timedelta(hours=16))
    late._k = 20_000
    _, day = derive_rep_day("rep-1", DAY, TZ, [*night.stay(1).events, *events,
                                               *late.stay(1).events], InMemoryPlaces(HOME))
    assert abs((day.workday_start - LEAVE).total_seconds()) <= 60
    arrival = LEAVE + dt.timedelta(seconds=1800 + 2 * 5000 / 12)
    assert abs((day.workday_end - arrival).total_seconds()) <= 60
    assert day.unknown_s < 60
