"""How gaps and night activity enter inferred work days and field time
(processors/day_sessions.py, docs/sessions.md "Inferred days, gaps and night activity")."""

from __future__ import annotations

import datetime as dt

import pytest
from session_tracks import DAY, T0, TZ, DayBuilder, place

from processors import DEFAULT_PARAMS, InMemoryPlaces, NoPlaces, derive_rep_day

HOME = place("home-1", 0, 0, 60, "home")
A = place("A", 5000, 0)
MIDNIGHT = T0 - dt.timedelta(hours=7)  # 00:00 local (T0 is 07:00 local)


def _work(b: DayBuilder) -> DayBuilder:
    """10 min at home, 40 min at customer A, home again: no check-ins."""
    return b.stay(600).drive(5000, 0).stay(2400).drive(-5000, 0)


def test_a_night_trip_sets_no_bound_of_the_day() -> None:
    """Working 07:00-09:00 without check-ins; the phone records the evening at home and a
    drive at 23:00: the day ends on arrival home, not after the night trip."""
    b = _work(DayBuilder(ping_s=60))
    home_at = b.t
    b.stay(3 * 3600)  # 10:00-13:00 at home: off duty
    b.t = MIDNIGHT + dt.timedelta(hours=23)
    b.drive(3000, 0).stay(900).drive(-3000, 0)  # the night trip, 23:00-23:25
    _segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, InMemoryPlaces([HOME, A]))
    assert day.workday_start == T0
    assert day.workday_end is not None
    assert abs((day.workday_end - home_at).total_seconds()) <= 60
    assert day.workday_s < 3 * 3600


def test_a_day_of_night_activity_only_has_no_work_day() -> None:
    """A 10-minute drive at 03:09 is not a work day (it was one, of 10 minutes)."""
    b = DayBuilder(start=MIDNIGHT + dt.timedelta(hours=3, minutes=9), ping_s=10)
    b.drive(6000, 0, speed_mps=10)
    _, day = derive_rep_day("rep-1", DAY, TZ, b.events, NoPlaces())
    assert day.workday_start is None and day.workday_s == 0.0 and day.field_s == 0.0
    assert day.pings_kept == len(b.events)
    # the same drive in the day is work
    b = DayBuilder(start=MIDNIGHT + dt.timedelta(hours=10), ping_s=10)
    b.drive(6000, 0, speed_mps=10)
    _, day = derive_rep_day("rep-1", DAY, TZ, b.events, NoPlaces())
    assert day.workday_s == pytest.approx(590, abs=15)


def test_a_home_evening_split_by_indoor_noise_ends_the_day_on_arrival() -> None:
    """Sparse, noisy indoor pings split the evening at home into stops under an hour each;
    they are one stay at home, so a forgotten workday_end does not make the day late."""
    b = DayBuilder(ping_s=60)
    b.check_in("workday_start")
    _work(b)
    home_at = b.t
    for k in range(6):  # six 40-minute stops drifting 0-150 m around the house
        b.e, b.n = (k % 3) * 70.0, (k % 2) * 70.0
        b.ping_s = 600.0
        b.stay(2400)
    segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, InMemoryPlaces([HOME, A]))
    stops_home = [s for s in segs if s.kind.value == "stop" and s.lon is not None
                  and s.start.timestamp() >= home_at.timestamp() - 60]
    assert len(stops_home) >= 2  # the stay is split ...
    assert day.workday_end_inferred
    assert day.workday_end is not None  # ... and still ends the day on arrival
    assert abs((day.workday_end - home_at).total_seconds()) <= 120


def test_a_long_gap_in_the_day_is_off_duty_unless_a_check_in_says_work() -> None:
    def day_with_gap(checkin_in_gap: bool) -> tuple[float, float, float]:
        b = DayBuilder(ping_s=60)
        b.check_in("workday_start")
        b.drive(5000, 0).stay(1800)
        gap_start = b.t
        b.t = gap_start + dt.timedelta(hours=4)  # the phone recorded nothing for 4 h
        if checkin_in_gap:
            saved = b.t
            b.t = gap_start + dt.timedelta(hours=2)
            b.check_in("visit_start", account_id="A", visit_id="v1")
            b.t = saved
        b.stay(1800).drive(-5000, 0)
        b.check_in("workday_end")
        _, day = derive_rep_day("rep-1", DAY, TZ, b.events, InMemoryPlaces([A]))
        return day.field_s, day.break_s, day.unknown_s

    field, brk, unknown = day_with_gap(False)
    assert brk == pytest.approx(4 * 3600 - 30, abs=120)  # off duty, not field time
    assert unknown < 120
    field_w, brk_w, unknown_w = day_with_gap(True)
    assert brk_w == 0.0 and unknown_w == pytest.approx(4 * 3600, abs=120)
    assert field_w - field == pytest.approx(4 * 3600, abs=180)


def test_gaps_shorter_than_day_gap_s_stay_field_time() -> None:
    b = DayBuilder(ping_s=60)
    b.check_in("workday_start")
    b.drive(5000, 0)
    b.t += dt.timedelta(hours=1)  # an hour without data while driving: unknown, field
    b.drive(5000, 0)
    b.check_in("workday_end")
    _, day = derive_rep_day("rep-1", DAY, TZ, b.events, NoPlaces())
    assert day.unknown_s == pytest.approx(3600, abs=120)
    assert day.field_s == pytest.approx(day.workday_s, abs=1)
    assert DEFAULT_PARAMS.day_gap_s > 3600


@pytest.mark.parametrize(("start_h", "stay_s", "is_break"), [
    (12.0, 2400, True),  # lunch
    (9.0, 4 * 3600, False),  # four hours at an office nobody listed: work
    (7.2, 1800, False),  # too early for a break
])
def test_inferred_break_bounds(start_h: float, stay_s: float, is_break: bool) -> None:
    b = DayBuilder(start=MIDNIGHT + dt.timedelta(hours=start_h) - dt.timedelta(minutes=20),
                   ping_s=60)
    b.check_in("workday_start")
    b.drive(12_000, 0).stay(stay_s).drive(12_000, 0)
    b.check_in("workday_end")
    _segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, NoPlaces())
    assert (day.break_s > 0) is is_break
    if is_break:
        assert day.break_s == pytest.approx(stay_s, abs=90)
