from __future__ import annotations

import datetime as dt
import random
import statistics
from collections import Counter
from pathlib import Path

import pytest

from simulator import NoiseProfile, SimulationResult, simulate
from simulator.world import distance_m

DAY = dt.date(2026, 11, 2)


@pytest.fixture(scope="module")
def runs(world_dir: Path) -> dict[str, SimulationResult]:
    return {
        name: simulate(world_dir, reps=20, days=3, start_date=DAY, seed=21, noise=noise)
        for name, noise in (("clean", NoiseProfile.clean()),
                            ("realistic", NoiseProfile.realistic()))
    }


def _events(res: SimulationResult) -> list[dict]:
    return [e for u in res.uploads for e in u.events]


def test_clean_profile_is_clean(runs: dict[str, SimulationResult]) -> None:
    res = runs["clean"]
    events = _events(res)
    assert len(events) == len({e["event_id"] for e in events})  # no resends
    assert not any(u.resend for u in res.uploads)
    assert all(t["phone"]["missing_checkins"] == [] for t in res.truth)
    assert all(t["phone"]["clock_skew_s"] == 0 for t in res.truth)
    assert all(e["accuracy_m"] == 5.0 for e in events if e["kind"] == "ping")
    per_day = Counter(e["action"] for e in events if e["kind"] == "check_in")
    assert per_day["workday_start"] == per_day["workday_end"] == len(res.truth)


def test_missing_pings_about_ten_percent(runs: dict[str, SimulationResult]) -> None:
    truth = runs["realistic"].truth
    scheduled = sum(t["phone"]["pings_scheduled"] for t in truth)
    recorded = sum(t["phone"]["pings_recorded"] for t in truth)
    assert 0.08 < 1 - recorded / scheduled < 0.12
    clean = runs["clean"].truth
    assert sum(t["phone"]["pings_recorded"] for t in clean) == scheduled


def test_duplicates_are_resent_with_the_same_ids(runs: dict[str, SimulationResult]) -> None:
    res = runs["realistic"]
    resends = [u for u in res.uploads if u.resend]
    assert 0.02 < len(resends) / len(res.uploads) < 0.09
    ids = Counter(e["event_id"] for e in _events(res))
    assert all(ids[e["event_id"]] >= 2 for u in resends for e in u.events)


def test_position_error_matches_reported_accuracy(runs: dict[str, SimulationResult]) -> None:
    clean = {e["event_id"]: e for e in _events(runs["clean"]) if e["kind"] == "ping"}
    errors_in_accuracy = []
    kinds: Counter[str] = Counter()
    for e in _events(runs["realistic"]):
        if e["kind"] != "ping" or e["event_id"] not in clean:
            continue
        c = clean[e["event_id"]]
        err = distance_m(e["lat"], e["lon"], c["lat"], c["lon"])
        kinds[e["provider"]] += 1
        if e["is_mock"]:
            kinds["mock"] += 1
        elif err > 300 and e["accuracy_m"] <= 50:
            kinds["jump"] += 1
        elif e["provider"] != "network":
            assert 5.0 <= e["accuracy_m"] <= 50.0
            errors_in_accuracy.append(err / e["accuracy_m"])
    # 68% of fixes fall within their reported accuracy (Android's definition).
    inside = sum(r <= 1.0 for r in errors_in_accuracy) / len(errors_in_accuracy)
    assert 0.62 < inside < 0.74
    n = sum(kinds[p] for p in ("gps", "fused", "network"))
    assert 0.001 < kinds["jump"] / n < 0.012
    assert 0.015 < kinds["network"] / n < 0.05
    assert kinds["mock"] >= 1


def test_clock_skew_is_per_device_and_bounded(runs: dict[str, SimulationResult]) -> None:
    by_device: dict[str, set[float]] = {}
    for t in runs["realistic"].truth:
        by_device.setdefault(t["device_id"], set()).add(t["phone"]["clock_skew_s"])
    assert all(len(s) == 1 for s in by_device.values())
    skews = [next(iter(s)) for s in by_device.values()]
    assert all(abs(s) <= 120 for s in skews)
    assert statistics.pstdev(skews) > 20


def test_noise_profile_is_frozen_and_tunable() -> None:
    p = NoiseProfile.realistic()
    with pytest.raises(AttributeError):
        p.jump_prob = 0.5  # type: ignore[misc]
    q = p.with_(jump_prob=1.0, position_noise_scale=0.0)
    fix = q.fix(random.Random(1), 52.5, 13.4)
    assert distance_m(fix.lat, fix.lon, 52.5, 13.4) >= 300 or fix.is_mock
