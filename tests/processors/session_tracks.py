"""Hand-made rep days for the processors tests: a tiny, seeded track builder.

Positions move in metres east/north of a start point near Berlin; pings every ``ping_s``
seconds with optional gaussian noise (68% radius = ``noise_m``) and dropped pings.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from typing import Any

from processors.places import Place
from schemas.events import CheckIn, Ping, VisitSubmission

LAT0, LON0 = 52.52, 13.40
M_PER_DEG = 111_320.0
TZ = "Europe/Berlin"
DAY = dt.date(2026, 11, 2)
#: 07:00 local (UTC+1 in November).
T0 = dt.datetime(2026, 11, 2, 6, 0, tzinfo=dt.UTC)

AnyEvent = Ping | CheckIn | VisitSubmission


def offset(east_m: float, north_m: float) -> tuple[float, float]:
    """(lon, lat) of a point east/north of the origin."""
    lat = LAT0 + north_m / M_PER_DEG
    lon = LON0 + east_m / (M_PER_DEG * math.cos(math.radians(LAT0)))
    return lon, lat


def place(pid: str, east_m: float, north_m: float, radius_m: float = 100.0,
          kind: str = "customer") -> Place:
    lon, lat = offset(east_m, north_m)
    return Place(pid, lon, lat, radius_m, kind)  # type: ignore[arg-type]


class DayBuilder:
    def __init__(self, rep_id: str = "rep-1", device_id: str = "dev-1", start: dt.datetime = T0,
                 seed: int = 0, noise_m: float = 0.0, ping_s: float = 30.0,
                 missing: float = 0.0, accuracy_m: float = 10.0, upload_lag_s: float = 0.0,
                 clock_skew_s: float = 0.0) -> None:
        self.rep_id, self.device_id = rep_id, device_id
        self.t = start
        self.e, self.n = 0.0, 0.0
        self.rng = random.Random(seed)
        self.noise_m, self.ping_s, self.missing = noise_m, ping_s, missing
        self.accuracy_m, self.lag_s, self.skew_s = accuracy_m, upload_lag_s, clock_skew_s
        self.events: list[AnyEvent] = []
        self._k = 0

    # -- helpers ------------------------------------------------------------------------
    def _id(self) -> uuid.UUID:
        self._k += 1
        return uuid.uuid5(uuid.NAMESPACE_URL, f"{self.rep_id}/{self.device_id}/{self._k}")

    def _env(self, when: dt.datetime) -> dict[str, Any]:
        ts = when + dt.timedelta(seconds=self.skew_s)
        return {"event_id": self._id(), "device_id": self.device_id, "rep_id": self.rep_id,
                "ts": ts, "received_at": when + dt.timedelta(seconds=self.lag_s)}

    def ping_at(self, east: float, north: float, speed: float = 0.0,
                heading: float | None = None, **extra: Any) -> Ping:
        sigma = self.noise_m / 1.51
        e = east + (self.rng.gauss(0, sigma) if sigma else 0.0)
        n = north + (self.rng.gauss(0, sigma) if sigma else 0.0)
        lon, lat = offset(e, n)
        fields = {"lat": lat, "lon": lon, "accuracy_m": self.accuracy_m, "speed_mps": speed,
                  "heading_deg": heading, **extra}
        p = Ping(**self._env(self.t), **fields)
        return p

    def _ping(self, speed: float, heading: float | None) -> None:
        if self.missing and self.rng.random() < self.missing:
            return
        self.events.append(self.ping_at(self.e, self.n, speed, heading))

    # -- the day ------------------------------------------------------------------------
    def stay(self, seconds: float) -> DayBuilder:
        end = self.t + dt.timedelta(seconds=seconds)
        while self.t < end:
            self._ping(0.0, None)
            self.t += dt.timedelta(seconds=self.ping_s)
        self.t = end
        return self

    def drive(self, east_m: float, north_m: float, speed_mps: float = 12.0) -> DayBuilder:
        dist = math.hypot(east_m, north_m)
        secs = dist / speed_mps
        heading = math.degrees(math.atan2(east_m, north_m)) % 360.0
        e0, n0, t0 = self.e, self.n, self.t
        step = 0.0
        while step < secs:
            f = step / secs
            self.e, self.n = e0 + east_m * f, n0 + north_m * f
            self.t = t0 + dt.timedelta(seconds=step)
            self._ping(speed_mps, heading)
            step += self.ping_s
        self.e, self.n = e0 + east_m, n0 + north_m
        self.t = t0 + dt.timedelta(seconds=secs)
        return self

    def check_in(self, action: str, **kw: Any) -> DayBuilder:
        lon, lat = offset(self.e, self.n)
        self.events.append(CheckIn(**self._env(self.t), action=action,
                                   position={"lat": lat, "lon": lon, "accuracy_m": 10.0},
                                   **kw))
        return self

    def submission(self, visit_id: str, account_id: str, started_at: dt.datetime,
                   ended_at: dt.datetime) -> DayBuilder:
        self.events.append(VisitSubmission(
            **self._env(self.t), visit_id=visit_id, account_id=account_id,
            started_at=started_at + dt.timedelta(seconds=self.skew_s),
            ended_at=ended_at + dt.timedelta(seconds=self.skew_s), outcome="order_placed"))
        return self


def standard_day(seed: int = 0, noise_m: float = 0.0, missing: float = 0.0,
                 checkins: bool = True) -> tuple[list[AnyEvent], list[Place], DayBuilder]:
    """Home 10 min, drive 5 km east, 30 min at customer A, drive 3 km north, 40 min lunch
    (break), 20 min at customer B (no check-ins: automatic), drive home."""
    b = DayBuilder(seed=seed, noise_m=noise_m, missing=missing)
    places = [place("home-1", 0, 0, 60, "home"), place("A", 5000, 0), place("B", 5000, 3000)]
    if checkins:
        b.check_in("workday_start")
    b.stay(600).drive(5000, 0)
    if checkins:
        b.check_in("visit_start", account_id="A", visit_id="v1")
    b.stay(1800)
    if checkins:
        b.check_in("visit_end", account_id="A", visit_id="v1")
    b.drive(0, 1500)
    if checkins:
        b.check_in("break_start")
    b.stay(2400)
    if checkins:
        b.check_in("break_end")
    b.drive(0, 1500).stay(1200).drive(-5000, -3000).stay(300)
    if checkins:
        b.check_in("workday_end")
    b.stay(1800)
    return b.events, places, b
