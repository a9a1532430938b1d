from __future__ import annotations

import datetime as dt

import numpy as np
from session_tracks import DayBuilder, offset

from processors import SessionParams, filter_pings

P = SessionParams()


def _drive(n: int = 40, ping_s: float = 30.0) -> DayBuilder:
    b = DayBuilder(ping_s=ping_s)
    b.drive(12.0 * ping_s * n, 0.0)
    return b


def test_clean_long_trip_is_kept_whole() -> None:
    b = DayBuilder(ping_s=10.0)
    b.drive(60_000, 0, speed_mps=33.0)  # a motorway hour
    res = filter_pings(b.events, P)
    assert len(res.kept) == len(b.events)
    assert res.rejected == ()


def test_one_far_outlier_is_dropped_as_speed_jump() -> None:
    b = _drive()
    bad = b.events[20]
    lon, lat = offset(30_000, 30_000)
    b.events[20] = bad.model_copy(update={"lon": lon, "lat": lat})
    res = filter_pings(b.events, P)
    assert res.rejected == ((str(bad.event_id), "speed_jump"),)
    assert len(res.kept) == len(b.events) - 1


def test_a_run_of_outliers_is_dropped_but_a_long_one_is_kept() -> None:
    b = _drive(60)
    for k in range(20, 23):
        lon, lat = offset(50_000, 50_000 + k)
        b.events[k] = b.events[k].model_copy(update={"lon": lon, "lat": lat})
    assert filter_pings(b.events, P).dropped_counts() == {"speed_jump": 3}
    for k in range(20, 40):  # 20 fixes far away: real (or at least not an outlier run)
        lon, lat = offset(50_000, 50_000 + k)
        b.events[k] = b.events[k].model_copy(update={"lon": lon, "lat": lat})
    assert filter_pings(b.events, P).dropped_counts() == {}


def test_plausible_speed_spike_at_a_stop_is_dropped() -> None:
    b = DayBuilder(ping_s=60.0).stay(1800)
    lon, lat = offset(400.0, 0.0)  # 400 m in 60 s is only 6.7 m/s
    b.events[10] = b.events[10].model_copy(update={"lon": lon, "lat": lat})
    res = filter_pings(b.events, P)
    assert res.dropped_counts() == {"spike": 1}


def test_real_corner_is_not_a_spike() -> None:
    b = DayBuilder(ping_s=30.0)
    b.drive(3000, 0).drive(0, 3000)
    assert filter_pings(b.events, P).dropped_counts() == {}


def test_reasons_accuracy_zero_mock_future_duplicates() -> None:
    b = DayBuilder(ping_s=30.0).stay(600)
    ev = b.events
    ev[1] = ev[1].model_copy(update={"accuracy_m": 800.0})
    ev[2] = ev[2].model_copy(update={"lat": 0.0, "lon": 0.0})
    ev[3] = ev[3].model_copy(update={"is_mock": True})
    ev[4] = ev[4].model_copy(update={"ts": ev[4].received_at + dt.timedelta(hours=2)})
    same_instant = ev[5].model_copy(update={"event_id": ev[6].event_id.__class__(int=1)})
    batch = [*ev, ev[7], same_instant]  # a retried ping and a second fix at one instant
    res = filter_pings(batch, P)
    assert res.dropped_counts() == {"bad_accuracy": 1, "duplicate": 2, "in_future": 1,
                                    "invalid_position": 1, "mock_location": 1}
    assert len(res.kept) == len(ev) - 4
    assert np.all(np.diff(res.kept.t) > 0)


def test_order_and_duplicates_do_not_change_the_result() -> None:
    b = DayBuilder(ping_s=20.0, noise_m=20.0, seed=3).stay(300).drive(4000, 1000).stay(300)
    a = filter_pings(b.events, P)
    c = filter_pings(list(reversed(b.events)) + b.events[:5], P)
    assert np.array_equal(a.kept.t, c.kept.t)
    assert sorted(a.rejected) == sorted(r for r in c.rejected if r[1] != "duplicate")


def test_pings_without_speed_raise_no_warning() -> None:
    """Phones (and cell fixes) that report no speed: the spike test must not warn
    ("All-NaN slice") and must still drop a spike, in the reference and the kernel."""
    import warnings

    b = DayBuilder(ping_s=60.0).stay(1800)
    b.events = [e.model_copy(update={"speed_mps": None}) for e in b.events]
    lon, lat = offset(400.0, 0.0)
    b.events[10] = b.events[10].model_copy(update={"lon": lon, "lat": lat})
    for compiled in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = filter_pings(b.events, P, compiled=compiled)
        assert res.dropped_counts() == {"spike": 1}
