from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from schemas.events import UploadBatch
from simulator import NoiseProfile, SimulationResult, simulate
from simulator.truth import read_truth

DAY = dt.date(2026, 11, 2)


@pytest.fixture(scope="module")
def noisy(world_dir: Path) -> SimulationResult:
    return simulate(world_dir, reps=20, days=2, start_date=DAY, seed=11,
                    noise=NoiseProfile.realistic())


def test_same_seed_same_uploads(world_dir: Path, noisy: SimulationResult) -> None:
    again = simulate(world_dir, reps=20, days=2, start_date=DAY, seed=11,
                     noise=NoiseProfile.realistic())
    assert [(u.send_at, u.device_id, u.events) for u in again.uploads] == [
        (u.send_at, u.device_id, u.events) for u in noisy.uploads
    ]
    other = simulate(world_dir, reps=2, days=1, start_date=DAY, seed=12,
                     noise=NoiseProfile.realistic())
    ids = {e["event_id"] for u in noisy.uploads for e in u.events}
    assert not ids & {e["event_id"] for u in other.uploads for e in u.events}


def test_every_upload_validates_against_the_wire_schema(noisy: SimulationResult) -> None:
    kinds: Counter[str] = Counter()
    for up in noisy.uploads:
        batch = UploadBatch.model_validate(up.body())
        assert all(e.device_id == up.device_id and e.rep_id == up.rep_id for e in batch.events)
        kinds.update(e.kind for e in batch.events)
    assert kinds["ping"] > 10 * kinds["check_in"] > 0
    assert kinds["visit_submission"] > 0
    # The JSON route the server takes must agree with the Python one.
    sub = next(e for u in noisy.uploads for e in u.events if e["kind"] == "visit_submission")
    import json

    assert UploadBatch.model_validate_json(json.dumps({"events": [sub]})).events[0].kind == (
        "visit_submission")


def test_uploads_ordered_and_bounded(noisy: SimulationResult) -> None:
    times = [u.send_at for u in noisy.uploads]
    assert times == sorted(times)
    assert all(t.utcoffset() == dt.timedelta(0) for t in times)
    assert all(1 <= len(u.events) <= 100 for u in noisy.uploads)
    assert {d for d, _ in noisy.devices} == {u.device_id for u in noisy.uploads}
    assert all(d == f"dev-{r}" for d, r in noisy.devices)


def test_offline_backlog_arrives_late_in_bulk(world_dir: Path) -> None:
    always_offline = NoiseProfile.clean().with_(offline_day_prob=1.0)
    res = simulate(world_dir, reps=3, days=1, start_date=DAY, seed=3, noise=always_offline)
    for truth in res.truth:
        (start, end), = truth["phone"]["offline"]
        end_t = dt.datetime.fromisoformat(end.replace("Z", "+00:00"))
        start_t = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
        mine = [u for u in res.uploads if u.rep_id == truth["rep_id"]]
        assert not [u for u in mine if start_t <= u.send_at < end_t]
        after = [u for u in mine if u.send_at >= end_t]
        # The first upload back online carries a full batch of the two-hour backlog.
        assert len(after[0].events) == 100


def test_truth_file_round_trip(noisy: SimulationResult, tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    assert noisy.write_truth(path) == 40
    back = read_truth(path)
    assert back == noisy.truth
    assert {(r["rep_id"], r["date"]) for r in back} == {
        (r, d) for _, r in noisy.devices for d in ("2026-11-02", "2026-11-03")}
