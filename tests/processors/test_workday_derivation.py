from __future__ import annotations

import datetime as dt

import pytest
from session_tracks import DAY, T0, TZ, DayBuilder, place, standard_day

from processors import InMemoryPlaces, NoPlaces, SegmentKind, derive_rep_day


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
    events, places, b = standard_day(checkins=False)
    # the phone also recorded two idle hours at home before and after
    early = DayBuilder(start=T0 - dt.timedelta(hours=2), rep_id="rep-1", seed=9)
    early._k = 10_000
    early.stay(7200)
    segs, day = derive_rep_day("rep-1", DAY, TZ, [*early.events, *events],
                               InMemoryPlaces(places))
    assert day.workday_start_inferred and day.workday_end_inferred
    # departure from home after 2h10m idle; arrival home (day ends there)
    depart = T0 + dt.timedelta(seconds=600)
    assert abs((day.workday_start - depart).total_seconds()) <= 30
    assert abs((b.t - day.workday_end).total_seconds() - 2100) <= 60
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
    b.drive(6000, 0, speed_mps=10)
    evs = [e.model_copy(update={"geo": None}) for e in b.events]
    half = len(evs) // 2
    for k, e in enumerate(evs):
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
