from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest

from simulator.fieldday import Planner, generate_rep_day
from simulator.noise import NoiseProfile
from simulator.paths import path_length_m
from simulator.world import distance_m, load_world, pick_reps

DAY = dt.date(2026, 11, 2)


@pytest.fixture(scope="module")
def planner(world_dir: Path) -> Planner:
    return Planner(load_world(world_dir))


def _iso(t: str) -> dt.datetime:
    return dt.datetime.fromisoformat(t.replace("Z", "+00:00"))


def test_same_seed_same_day(planner: Planner) -> None:
    rep = planner.world.reps["rep-0003"]
    a = generate_rep_day(planner, rep, DAY, 42, NoiseProfile.realistic())
    b = generate_rep_day(planner, rep, DAY, 42, NoiseProfile.realistic())
    c = generate_rep_day(planner, rep, DAY, 43, NoiseProfile.realistic())
    assert [e.payload for e in a.phone.events] == [e.payload for e in b.phone.events]
    assert a.truth == b.truth
    assert a.truth != c.truth


def test_truth_does_not_depend_on_noise(planner: Planner) -> None:
    rep = planner.world.reps["rep-0007"]
    clean = generate_rep_day(planner, rep, DAY, 5, NoiseProfile.clean())
    noisy = generate_rep_day(planner, rep, DAY, 5, NoiseProfile.realistic())
    strip = lambda t: {k: v for k, v in t.items() if k != "phone"}  # noqa: E731
    assert strip(clean.truth) == strip(noisy.truth)
    # A ping that survived the noise keeps its id.
    clean_ids = {e.payload["event_id"] for e in clean.phone.events}
    noisy_pings = [e.payload for e in noisy.phone.events if e.payload["kind"] == "ping"]
    assert sum(p["event_id"] in clean_ids for p in noisy_pings) / len(noisy_pings) > 0.99


@pytest.mark.parametrize("rep_id", ["rep-0001", "rep-0006", "rep-0012", "rep-0020"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_truth_is_consistent(planner: Planner, rep_id: str, seed: int) -> None:
    day = generate_rep_day(planner, planner.world.reps[rep_id], DAY, seed, NoiseProfile.clean())
    t, plan = day.truth, day.plan
    start, end = _iso(t["workday_start"]), _iso(t["workday_end"])
    assert 4 <= len(t["visits"]) <= 8
    local_start = start.astimezone(dt.timezone(dt.timedelta(hours=1)))
    assert dt.time(7, 0) <= local_start.time() <= dt.time(9, 0)
    for v in t["visits"]:
        assert start <= _iso(v["start"]) < _iso(v["end"]) <= end
        assert 600 <= v["duration_s"] <= 3600
    stops = t["stops"]
    assert stops[0]["place"] == "home" and stops[-1]["place"] == "home"
    assert sum(s["kind"] == "break" for s in stops) == 1
    for a, b in itertools.pairwise(stops):
        assert _iso(a["end"]) <= _iso(b["start"])
    # The parts add up to the work day.
    parts = (t["travel_s"] + t["at_customers_s"] + t["break_s"] + t["home_s"] + t["office_s"]
             + t["other_stop_s"])
    assert parts == pytest.approx(t["workday_s"], abs=1.0)
    assert t["field_s"] == pytest.approx(t["travel_s"] + t["at_customers_s"] + t["other_stop_s"],
                                         abs=1.0)
    # Distance is the length of the true path, and roads are longer than the crow flies.
    traj = plan.trajectory
    path = list(zip(traj.lats, traj.lons, strict=True))
    assert t["distance_m"] == pytest.approx(path_length_m(path), rel=1e-6)
    crow = sum(distance_m(a["lat"], a["lon"], b["lat"], b["lon"])
               for a, b in itertools.pairwise(stops))
    assert t["distance_m"] > crow * 1.05
    # Clean pings lie on the true path and sum to a little less than it (corners are cut).
    pings = [e.payload for e in day.phone.events if e.payload["kind"] == "ping"]
    walked = sum(distance_m(a["lat"], a["lon"], b["lat"], b["lon"])
                 for a, b in itertools.pairwise(pings))
    assert 0.85 * t["distance_m"] < walked <= t["distance_m"] * 1.001


def test_speeds_and_ping_cadence(planner: Planner) -> None:
    day = generate_rep_day(planner, planner.world.reps["rep-0002"], DAY, 9, NoiseProfile.clean())
    pings = [e for e in day.phone.events if e.payload["kind"] == "ping"]
    gaps_moving, gaps_still = [], []
    for a, b in itertools.pairwise(pings):
        gap = b.recorded_at - a.recorded_at
        (gaps_moving if a.payload["speed_mps"] > 0 else gaps_still).append(gap)
    assert gaps_moving and max(gaps_moving) <= 30.0 and min(gaps_moving) >= 10.0
    assert max(gaps_still) <= 120.0 and min(gaps_still) >= 30.0
    speeds = [p.payload["speed_mps"] for p in pings if p.payload["speed_mps"] > 0]
    assert min(speeds) >= 7.0 and max(speeds) <= 21.5


def test_pick_reps_spreads_over_territories(world_dir: Path) -> None:
    world = load_world(world_dir)
    reps = pick_reps(world, 4, seed=1)
    assert len({r.territory_id for r in reps}) == 4
    assert pick_reps(world, 4, seed=1) == reps
    assert len(pick_reps(world, 1000, seed=1)) == len(world.reps)
