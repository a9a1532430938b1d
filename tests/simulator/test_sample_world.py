"""The committed sample world loads and simulates (skipped until it exists)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from schemas.events import UploadBatch
from simulator.noise import NoiseProfile
from simulator.run import simulate
from simulator.world import load_world

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
pytestmark = pytest.mark.skipif(not (SAMPLE / "accounts.geojson").exists(),
                                reason="no sample world")


def test_sample_world_shape() -> None:
    world = load_world(SAMPLE)
    assert len(world.territories) == 50
    assert len(world.reps) == 250
    # Every rep has a real home from the accounts file, not a synthetic one.
    assert all(not r.home.account_id.startswith("home-rep-") for r in world.reps.values())
    assert all(world.territories[r.territory_id].contains(r.home.lat, r.home.lon)
               for r in list(world.reps.values())[:25])


def test_sample_world_simulates() -> None:
    res = simulate(SAMPLE, reps=5, days=1, start_date=dt.date(2026, 11, 2), seed=1,
                   noise=NoiseProfile.realistic())
    assert len(res.truth) == 5
    for up in res.uploads:
        UploadBatch.model_validate(up.body())
