"""Live reload of the territory set during a run of 200,000 events (60,000 in `make test`):
later events get the new territories, every event is stored once, none is lost or left
behind."""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import uuid
from pathlib import Path

import orjson
import pytest

from tests.conftest import ROOT, Stack, sized, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.long]
N_EVENTS = sized(200_000, 60_000)
BATCH = 500


def _renamed_territories(path: Path) -> None:
    doc = json.loads((ROOT / "data" / "sample" / "territories.geojson").read_text())
    for f in doc["features"]:
        f["properties"]["territory_id"] = "N" + f["properties"]["territory_id"][1:]
    path.write_text(json.dumps(doc))


def test_reload_during_run_changes_later_events_and_loses_none(tmp_path: Path) -> None:
    stack = Stack(tmp_path, extra_env={"GEOTEL_INGEST__RATE_LIMIT_EVENTS_PER_S": "1000000",
                                       "GEOTEL_INGEST__RATE_LIMIT_BURST_EVENTS": "1000000"})
    stack.start()
    try:
        v1 = stack.load_sample_world()
        devices = {f"dev-rl-{i}": f"rep-0{i + 1:03d}" for i in range(20)}
        tokens = {d: stack.add_device(r, d) for d, r in devices.items()}
        rng = random.Random(3)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)
        bodies: list[tuple[str, bytes]] = []
        for b in range(N_EVENTS // BATCH):
            dev = f"dev-rl-{b % 20}"
            evs = [{"event_id": str(uuid.UUID(int=rng.getrandbits(128))), "device_id": dev,
                    "rep_id": devices[dev], "kind": "ping",
                    "ts": (start + dt.timedelta(seconds=b * 0.5 + i * 0.001)).isoformat(),
                    "lat": 52.38 + rng.random() * 0.25, "lon": 13.1 + rng.random() * 0.6,
                    "accuracy_m": 10.0} for i in range(BATCH)]
            bodies.append((dev, orjson.dumps({"events": evs})))
        new_set = tmp_path / "renamed.geojson"
        _renamed_territories(new_set)
        half = len(bodies) // 2
        reloaded = threading.Event()

        def reload() -> None:
            stack.cli("territories", "load", str(new_set))
            reloaded.set()

        for i, (dev, body) in enumerate(bodies):
            if i == half:
                threading.Thread(target=reload).start()
            r = stack.post_as_phone(tokens[dev], body)  # a 503 under load: resent
            assert r.status_code == 202 and r.json()["accepted"] == BATCH, r.text[:300]
        assert reloaded.wait(60)
        wait_for(lambda: int(stack.health()["components"]["geo"]["version"]) > v1, 60,
                 "the worker swapped in the new territory set")
        v2 = int(stack.health()["components"]["geo"]["version"])
        # Uploads after the swap use the new index.
        tail_dev = "dev-rl-0"
        tail = [{"event_id": str(uuid.uuid4()), "device_id": tail_dev,
                 "rep_id": devices[tail_dev], "kind": "ping",
                 "ts": (start + dt.timedelta(hours=2, seconds=i)).isoformat(),
                 "lat": 52.52, "lon": 13.40, "accuracy_m": 10.0} for i in range(100)]
        assert stack.post_as_phone(tokens[tail_dev], tail).json()["accepted"] == 100
        total = N_EVENTS + 100
        wait_for(lambda: stack.health()["components"]["sink"]["rows"] >= total, 120,
                 "all events stored")
        by_version = {int(r["geo_version"]): r for r in stack.sql(
            "SELECT geo_version, count() AS n, uniqExact(event_id) AS u, "
            "countIf(startsWith(territory_id, 'T')) AS t, "
            "countIf(startsWith(territory_id, 'N')) AS n_new, "
            "countIf(territory_id IS NULL) AS outside "
            "FROM events WHERE rep_id LIKE 'rep-0%' GROUP BY geo_version")}
        assert set(by_version) == {v1, v2}, by_version
        assert sum(int(r["n"]) for r in by_version.values()) == total
        assert sum(int(r["u"]) for r in by_version.values()) == total
        old, new = by_version[v1], by_version[v2]
        assert int(old["n_new"]) == 0 and int(new["t"]) == 0  # one index per event
        assert int(old["t"]) > 0 and int(new["n_new"]) > 0
        assert int(old["n"]) >= N_EVENTS // 4  # the first half was enriched before the swap
        tail_ids = "','".join(e["event_id"] for e in tail)
        assert int(stack.scalar(
            f"SELECT countIf(geo_version = {v2} AND territory_id = 'N' || substring("
            f"territory_id, 2)) FROM events WHERE event_id IN ('{tail_ids}')")) == 100
    finally:
        stack.stop()
