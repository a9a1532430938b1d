"""Road-like drives and the rep's true trajectory over a day.

There is no road network here; a drive is a "staircase" over a randomly rotated street grid
with a little wobble, which gives turns, detours (about 1.2-1.4x the straight line) and
corners that a straight-line interpolator would cut. That is what makes distance and
stop detection non-trivial for the pipeline under test.

Times are float seconds since the Unix epoch (UTC) inside the simulator: datetime objects
are only built when events and truth records are written.
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field

from simulator.world import M_PER_DEG_LAT, distance_m, offset_point

LatLon = tuple[float, float]


def road_path(rng: random.Random, a: LatLon, b: LatLon) -> list[LatLon]:
    """A polyline from ``a`` to ``b`` with turns, as a driver on a street grid would take."""
    d = distance_m(a[0], a[1], b[0], b[1])
    if d < 60:
        return [a, b]
    kx = M_PER_DEG_LAT * math.cos(math.radians(a[0]))
    dx, dy = (b[1] - a[1]) * kx, (b[0] - a[0]) * M_PER_DEG_LAT
    theta = rng.uniform(0, math.pi / 2)  # orientation of the local street grid
    ux, uy = math.cos(theta), math.sin(theta)
    du = dx * ux + dy * uy  # components of a->b along the two grid axes
    dv = -dx * uy + dy * ux
    steps = max(1, min(10, int(d / 1500) + rng.randint(1, 3)))
    pu, pv = _split(rng, du, steps), _split(rng, dv, steps)
    pts: list[tuple[float, float]] = [(0.0, 0.0)]
    x = y = 0.0
    for su, sv in zip(pu, pv, strict=True):
        x, y = x + su * ux, y + su * uy
        pts.append((x, y))
        x, y = x - sv * uy, y + sv * ux
        pts.append((x, y))
    out: list[LatLon] = [a]
    for i, (px, py) in enumerate(pts[1:-1], start=1):
        prev = pts[i - 1]
        seg = math.hypot(px - prev[0], py - prev[1])
        if seg < 1.0:
            continue  # a zero-length leg is not a turn
        # Long legs are country roads: bend them once so they are not ruler-straight.
        if seg > 2500:
            mx, my = (prev[0] + px) / 2, (prev[1] + py) / 2
            bend = rng.uniform(-0.06, 0.06) * seg
            nx, ny = -(py - prev[1]) / seg, (px - prev[0]) / seg
            out.append(offset_point(a[0], a[1], mx + nx * bend, my + ny * bend))
        wob = min(25.0, seg * 0.05)
        ex, ny_ = px + rng.uniform(-wob, wob), py + rng.uniform(-wob, wob)
        out.append(offset_point(a[0], a[1], ex, ny_))
    out.append(b)
    return out


def _split(rng: random.Random, total: float, parts: int) -> list[float]:
    weights = [rng.random() + 0.2 for _ in range(parts)]
    s = sum(weights)
    return [total * w / s for w in weights]


def path_length_m(path: list[LatLon]) -> float:
    return sum(distance_m(p[0], p[1], q[0], q[1]) for p, q in itertools.pairwise(path))


@dataclass
class Trajectory:
    """The true position over time: piecewise linear knots ``(t, lat, lon)``.

    Standing still is two knots at the same place; a red light is the same. Knot times are
    non-decreasing, so position lookups are a bisect.
    """

    ts: list[float] = field(default_factory=list)
    lats: list[float] = field(default_factory=list)
    lons: list[float] = field(default_factory=list)
    distance_m: float = 0.0

    @property
    def end(self) -> float:
        return self.ts[-1]

    @property
    def here(self) -> LatLon:
        return self.lats[-1], self.lons[-1]

    def start(self, t: float, pos: LatLon) -> None:
        self.ts.append(t)
        self.lats.append(pos[0])
        self.lons.append(pos[1])

    def wait(self, seconds: float) -> float:
        self.start(self.end + seconds, self.here)
        return self.end

    def drive(self, rng: random.Random, path: list[LatLon]) -> float:
        """Append a drive along ``path``; return the arrival time.

        Each leg gets its own speed (8-20 m/s: city streets to arterials); a turn is a red
        light with probability 0.35 (a 15-80 s wait), which is what makes a moving phone
        briefly look stopped.
        """
        for i, (p, q) in enumerate(itertools.pairwise(path)):
            seg = distance_m(p[0], p[1], q[0], q[1])
            if seg <= 0:
                continue
            speed = rng.uniform(8.0, 20.0)
            self.distance_m += seg
            self.start(self.end + seg / speed, q)
            if i < len(path) - 2 and rng.random() < 0.35:
                self.wait(rng.uniform(15.0, 80.0))
        return self.end

    def sample(self, t: float) -> tuple[float, float, float, float]:
        """(lat, lon, speed m/s, heading deg) at time ``t`` (clamped to the trajectory)."""
        ts = self.ts
        if t <= ts[0]:
            return self.lats[0], self.lons[0], 0.0, 0.0
        if t >= ts[-1]:
            return self.lats[-1], self.lons[-1], 0.0, 0.0
        i = bisect_right(ts, t) - 1
        t0, t1 = ts[i], ts[i + 1]
        la0, lo0, la1, lo1 = self.lats[i], self.lons[i], self.lats[i + 1], self.lons[i + 1]
        if t1 <= t0 or (la0 == la1 and lo0 == lo1):
            return la0, lo0, 0.0, 0.0
        f = (t - t0) / (t1 - t0)
        seg = distance_m(la0, lo0, la1, lo1)
        kx = math.cos(math.radians(la0))
        heading = math.degrees(math.atan2((lo1 - lo0) * kx, la1 - la0)) % 360.0
        return la0 + (la1 - la0) * f, lo0 + (lo1 - lo0) * f, seg / (t1 - t0), heading

    def moving(self, t: float) -> bool:
        return self.sample(t)[2] > 0.0
