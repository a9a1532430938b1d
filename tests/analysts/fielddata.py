"""Field data for the analyst and map tests: simulated reps through the real stack.

``populate`` runs simulated reps for past days through ingest (realistic noise, sample
world), adds a short live trail "now" for a few reps (so the "right now" questions have
answers), and feeds the dead-letter paths that real traffic hits: an event older than
the rep's lateness (``too_late``, judged by the sessions stage) and a message another
producer wrote to ``telemetry.raw`` that is not JSON (``undecodable``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import uuid
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from kafka import KafkaProducer

from geo import GeoIndex, load_index
from simulator.client import post_uploads
from simulator.noise import NoiseProfile
from simulator.run import SimulationResult, simulate
from streams.demo import register
from streams.settings import KafkaSettings, Settings
from tests.conftest import ROOT, Stack, wait_for

SAMPLE = ROOT / "data" / "sample"


@dataclass
class FieldData:
    sim: SimulationResult
    days: list[dt.date]
    reps: list[str]
    tokens: dict[str, str]  # device_id -> token
    index: GeoIndex
    geo_version: int
    now: dt.datetime
    live: dict[str, str] = field(default_factory=dict)  # rep_id -> expected live status
    accepted: int = 0

    def latest_local_date(self) -> dt.date:
        """The latest of the reps' local dates now: a live event's ``local_date`` is at most
        this (it is the UTC date's successor between local and UTC midnight east of UTC)."""
        now = dt.datetime.now(dt.UTC)
        return max(now.astimezone(ZoneInfo(self.index.rep_profile(r).tz)).date()
                   for r in self.reps)


def stack_settings(stack: Stack) -> Settings:
    return Settings(data_dir=stack.root / "var", web_port=stack.web_port,
                    kafka=KafkaSettings(embedded_port=stack.kafka_port))


def _offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    return (lon + east_m / (111_320.0 * math.cos(math.radians(lat))), lat + north_m / 110_540.0)


def _event(kind: str, dev: str, rep: str, ts: dt.datetime, **body: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "device_id": dev, "rep_id": rep, "kind": kind,
            "ts": ts.isoformat(), **body}


def live_trail(index: GeoIndex, rep: str, dev: str, now: dt.datetime, mode: str
               ) -> list[dict[str, Any]]:
    """The last 12 minutes of a rep who is ``visiting`` a customer of its territory,
    ``travelling`` (15 m/s) or ``stopped`` away from any account."""
    terr = index.rep_profile(rep).territory_ids[0]
    acc = index.accounts
    customers = [i for i in range(len(acc)) if acc.kind[i] == "customer"
                 and acc.territory_id[i] == terr]
    c = customers[len(rep) % len(customers)]
    lon0, lat0 = float(acc.lon[c]), float(acc.lat[c])
    start = now - dt.timedelta(minutes=12)
    events = [_event("check_in", dev, rep, start, action="workday_start",
                     position={"lat": lat0, "lon": lon0, "accuracy_m": 10.0})]
    if mode == "stopped":  # 1.5 km from the customer, standing still
        lon0, lat0 = _offset(lon0, lat0, 1500.0, 0.0)
    for k in range(0, 12 * 60 + 1, 30):
        ts = start + dt.timedelta(seconds=k)
        if mode == "travelling":  # drives 15 m/s towards the customer, arriving at `now`
            lon, lat = _offset(lon0, lat0, -15.0 * (12 * 60 - k), 0.0)
            extra = {"speed_mps": 15.0, "heading_deg": 90.0}
        else:
            lon, lat = _offset(lon0, lat0, 3.0 * math.sin(k), 3.0 * math.cos(k))
            extra = {"speed_mps": 0.0}
        events.append(_event("ping", dev, rep, ts, lat=lat, lon=lon, accuracy_m=8.0,
                             provider="gps", **extra))
    if mode == "visiting":
        events.append(_event("check_in", dev, rep, start + dt.timedelta(minutes=2),
                             action="visit_start", account_id=str(acc.account_id[c]),
                             visit_id=f"v-live-{rep}",
                             position={"lat": lat0, "lon": lon0, "accuracy_m": 8.0}))
    return events


def populate(stack: Stack, *, reps: int = 8, days: int = 2, seed: int = 7,
             live: dict[int, str] | None = None) -> FieldData:
    """Simulate ``reps`` reps for the ``days`` days before today and post them."""
    geo_version = stack.load_sample_world()
    index, _ = load_index(SAMPLE / "territories.geojson", SAMPLE / "accounts.geojson",
                          version=geo_version)
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    first = today - dt.timedelta(days=days)
    sim = simulate(SAMPLE, reps, days, first, seed, NoiseProfile.realistic())
    settings = stack_settings(stack)
    tokens = register(settings, sim.devices)
    stats = asyncio.run(post_uploads(stack.base, sim.uploads, tokens, speedup=0,
                                     concurrency=8, start_at=None))
    assert stats.uploads_failed == 0, stats.errors[:3]
    data = FieldData(sim=sim, days=[first + dt.timedelta(days=d) for d in range(days)],
                     reps=sorted(r for _, r in sim.devices), tokens=tokens, index=index,
                     geo_version=geo_version, now=now, accepted=stats.accepted)
    by_rep = {r: d for d, r in sim.devices}
    for i, mode in (live or {}).items():
        rep = data.reps[i]
        dev = by_rep[rep]
        r = stack.post(tokens[dev], live_trail(index, rep, dev, now, mode))
        assert r.status_code == 202, r.text
        data.live[rep] = mode
    # Dead letters as real traffic makes them: an event beyond the rep's lateness ...
    rep0 = data.reps[0]
    old = first - dt.timedelta(days=3)
    # (published as an ingest process without the rep's watermark does: this stack's own
    # ingest refuses it at once, see docs/ingest.md)
    stack.produce_raw([_event(
        "ping", by_rep[rep0], rep0, dt.datetime.combine(old, dt.time(10), dt.UTC),
        lat=52.5, lon=13.4, accuracy_m=10.0)])
    # ... and bytes another producer put on the raw topic.
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap)
    producer.send(settings.topic("telemetry.raw"), key=b"dev-x", value=b"\xff\xfenot json")
    producer.flush(10)
    producer.close(5)
    wait_for(lambda: stack.health()["components"]["sink"]["rows"] >= stats.accepted, 120,
             "events stored")
    stack.wait_derived(120)
    wait_for(lambda: int(stack.scalar("SELECT count() FROM deadletters")) >= 2, 60,
             "dead letters stored")
    stack.wait_derived(60)
    return data
