from __future__ import annotations

import pytest
from session_tracks import T0, DayBuilder

from processors import SessionParams, detect_stops, filter_pings, travel_between

P = SessionParams()


def _run(b: DayBuilder) -> tuple[list, list]:
    track = filter_pings(b.events, P).kept
    stops = detect_stops(track, P)
    return stops, travel_between(track, stops, P)


def test_drive_stop_drive() -> None:
    b = DayBuilder(ping_s=30.0).drive(5000, 0).stay(1800).drive(0, 2000).stay(300)
    stops, moves = _run(b)
    assert len(stops) == 2
    arrive = T0.timestamp() + 5000 / 12.0
    assert stops[0].start_t == pytest.approx(arrive, abs=30)
    assert stops[0].duration_s == pytest.approx(1800, abs=60)
    assert sum(m.distance_m for m in moves) == pytest.approx(7000, rel=0.03)
    assert not any(m.gap for m in moves)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_noisy_stop_with_missing_pings_is_one_stop_and_adds_no_distance(seed: int) -> None:
    b = DayBuilder(ping_s=20.0, noise_m=40.0, missing=0.1, accuracy_m=40.0, seed=seed)
    b.drive(5000, 0).stay(1800).drive(5000, 0).stay(300)
    stops, moves = _run(b)
    assert len(stops) == 2
    assert stops[0].duration_s == pytest.approx(1800, abs=120)
    assert sum(m.distance_m for m in moves) == pytest.approx(10_000, rel=0.03)


def test_traffic_light_is_not_a_stop() -> None:
    b = DayBuilder(ping_s=15.0).drive(3000, 0).stay(90).drive(3000, 0)
    b.events.append(b.ping_at(6000, 0))
    stops, moves = _run(b)
    assert stops == []
    assert len(moves) == 1
    assert moves[0].distance_m == pytest.approx(6000, rel=0.02)


def test_gap_at_one_place_is_bridged_and_gap_while_moving_is_unknown() -> None:
    b = DayBuilder(ping_s=30.0).drive(3000, 0)
    b.stay(600)
    b.missing = 1.0
    b.stay(3600)  # phone silent for an hour at the same place
    b.missing = 0.0
    b.stay(600).drive(3000, 0)
    b.missing = 1.0
    b.drive(20_000, 0)  # silent while driving
    b.missing = 0.0
    b.drive(3000, 0).stay(600)
    stops, moves = _run(b)
    assert len(stops) == 2
    assert stops[0].duration_s == pytest.approx(4800, abs=60)
    gaps = [m for m in moves if m.gap]
    assert len(gaps) == 1
    assert gaps[0].duration_s == pytest.approx(20_000 / 12.0, abs=60)


def test_excursion_does_not_split_a_stop() -> None:
    b = DayBuilder(ping_s=30.0).drive(2000, 0).stay(600)
    b.drive(250, 0, speed_mps=5).drive(-250, 0, speed_mps=5)  # a 100 s walk around
    b.stay(900).drive(2000, 0)
    stops, _ = _run(b)
    assert len(stops) == 1
    assert stops[0].duration_s == pytest.approx(1600, abs=90)


@pytest.mark.parametrize("compiled", [True, False])
def test_back_to_back_stops_leave_the_move_its_time(compiled: bool) -> None:
    """Two stays 200 m apart with no fix in between: the travel between them gets the
    straight line at gap_travel_speed_mps (200 m at 30 m/s), centred between the two fixes, never
    0 s with 200 m (infinite speed)."""
    b = DayBuilder(ping_s=60.0).stay(900)
    b.e += 200.0  # the next fix is already at the second place
    b.stay(900)
    track = filter_pings(b.events, P).kept
    stops = detect_stops(track, P, compiled=compiled)
    moves = travel_between(track, stops, P, compiled=compiled)
    assert len(stops) == 2
    mid = (track.t[stops[0].last] + track.t[stops[1].first]) / 2.0
    move_s = 200.0 / P.gap_travel_speed_mps
    assert stops[0].end_t == pytest.approx(mid - move_s / 2, abs=0.5)
    assert stops[1].start_t == pytest.approx(mid + move_s / 2, abs=0.5)
    between = [m for m in moves if m.start_t >= stops[0].end_t and m.end_t <= stops[1].start_t]
    assert len(between) == 1
    assert between[0].duration_s == pytest.approx(move_s, abs=0.5)
    assert between[0].distance_m == pytest.approx(200.0, abs=5)
    assert all(m.duration_s > 0 for m in moves if m.distance_m > 0)
