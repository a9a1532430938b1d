"""What goes wrong between the rep's real day and what the server receives.

The noise is applied only to what the phone reports. The ground truth is planned before and
independently of it (separate random streams), so the same seed gives the same true day
under ``clean()`` and ``realistic()``: only the phone's view of it differs.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from simulator.world import offset_point


@dataclass(frozen=True, slots=True)
class NoiseProfile:
    """Knobs of the phone's imperfection. Probabilities are 0..1; units are in the names."""

    # GPS fixes: reported accuracy is drawn in [min, max]; the position error is a 2-D
    # gaussian whose 68% radius equals the reported accuracy (Android's definition), times
    # ``position_noise_scale`` (0 = fixes exactly on the true path).
    accuracy_min_m: float = 5.0
    accuracy_max_m: float = 50.0
    position_noise_scale: float = 1.0
    #: Outliers: the fix lands 300 m+ away but claims an ordinary accuracy (multipath, cold start).
    jump_prob: float = 0.005
    jump_min_m: float = 300.0
    jump_max_m: float = 3000.0
    #: Network-provider (cell/wifi) fixes instead of GPS: far worse accuracy, honestly reported.
    network_fix_prob: float = 0.03
    network_accuracy_min_m: float = 150.0
    network_accuracy_max_m: float = 1500.0
    #: Mock-location fixes (``is_mock=True``) at a fake place some kilometres away.
    mock_prob: float = 0.001
    #: Scheduled pings the phone never records (OS killed the app, no fix).
    missing_ping_prob: float = 0.10
    #: Check-ins the rep forgets to tap.
    missing_workday_start_prob: float = 0.10
    missing_workday_end_prob: float = 0.15
    missing_visit_checkin_prob: float = 0.08
    missing_break_checkin_prob: float = 0.15
    #: Visits without a submitted form.
    missing_submission_prob: float = 0.05
    #: Rep-days with an offline period; events are queued and uploaded late, in bulk.
    offline_day_prob: float = 0.10
    offline_duration_s: float = 7200.0
    #: Uploads the phone sends twice (response lost, app retried the same batch).
    duplicate_upload_prob: float = 0.05
    #: Each device's clock is off by a constant drawn in [-max, +max] seconds.
    clock_skew_max_s: float = 120.0

    @classmethod
    def clean(cls) -> NoiseProfile:
        """A perfect phone: every ping, every check-in, exact positions, true clock, online."""
        return cls(
            accuracy_min_m=5.0, accuracy_max_m=5.0, position_noise_scale=0.0, jump_prob=0.0,
            network_fix_prob=0.0, mock_prob=0.0, missing_ping_prob=0.0,
            missing_workday_start_prob=0.0, missing_workday_end_prob=0.0,
            missing_visit_checkin_prob=0.0, missing_break_checkin_prob=0.0,
            missing_submission_prob=0.0, offline_day_prob=0.0, duplicate_upload_prob=0.0,
            clock_skew_max_s=0.0,
        )

    @classmethod
    def realistic(cls) -> NoiseProfile:
        """The defaults: what a fleet of ordinary Android phones looks like."""
        return cls()

    def with_(self, **changes: float) -> NoiseProfile:
        """A copy with some knobs changed, e.g. ``NoiseProfile.clean().with_(jump_prob=0.01)``."""
        return replace(self, **changes)

    # -- applied by the phone renderer ----------------------------------------------------

    def clock_skew_s(self, rng: random.Random) -> float:
        return rng.uniform(-self.clock_skew_max_s, self.clock_skew_max_s)

    def fix(self, rng: random.Random, lat: float, lon: float) -> Fix:
        """Turn a true position into what the phone reports."""
        roll = rng.random()
        if roll < self.mock_prob:
            dist = rng.uniform(2000.0, 8000.0)
            ang = rng.uniform(0, 2 * math.pi)
            mlat, mlon = offset_point(lat, lon, dist * math.cos(ang), dist * math.sin(ang))
            return Fix(mlat, mlon, round(rng.uniform(1.0, 4.0), 1), "gps", True)
        roll -= self.mock_prob
        if roll < self.network_fix_prob:
            acc = rng.uniform(self.network_accuracy_min_m, self.network_accuracy_max_m)
            provider = "network"
        else:
            acc = self._gps_accuracy(rng)
            provider = "gps" if rng.random() < 0.7 else "fused"
        sigma = acc / 1.51 * self.position_noise_scale  # 1.51 sigma = 68% radius in 2-D
        east, north = rng.gauss(0.0, sigma), rng.gauss(0.0, sigma)
        if rng.random() < self.jump_prob:
            dist = rng.uniform(self.jump_min_m, self.jump_max_m)
            ang = rng.uniform(0, 2 * math.pi)
            east, north = dist * math.cos(ang), dist * math.sin(ang)
        if east or north:
            lat, lon = offset_point(lat, lon, east, north)
        return Fix(lat, lon, round(acc, 1), provider, False)

    def _gps_accuracy(self, rng: random.Random) -> float:
        lo, hi = self.accuracy_min_m, self.accuracy_max_m
        if hi <= lo:
            return lo
        # Most fixes are good, a tail is poor: skew towards the low end.
        return lo + (hi - lo) * rng.random() ** 2


@dataclass(frozen=True, slots=True)
class Fix:
    lat: float
    lon: float
    accuracy_m: float
    provider: str
    is_mock: bool
