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
    #: Sampling: seconds between pings while moving / standing, drawn in [min, max]
    #: (a tracker at 1 s: 1, 1; a location history at 60 s: 60, 60).
    ping_moving_min_s: float = 10.0
    ping_moving_max_s: float = 30.0
    ping_stopped_min_s: float = 30.0
    ping_stopped_max_s: float = 120.0
    #: Phones that report no Doppler speed or heading (per rep-day).
    no_speed_prob: float = 0.0
    #: The phone keeps recording off duty at home, from local midnight until the work day
    #: and from it until the next midnight (per rep-day), indoors: a ping every
    #: indoor_ping_min_s..max_s, accuracy indoor_accuracy_min_m..max_m, a share of
    #: indoor_network_prob cell/Wi-Fi fixes.
    off_duty_home_prob: float = 0.0
    indoor_ping_min_s: float = 300.0
    indoor_ping_max_s: float = 1200.0
    indoor_accuracy_min_m: float = 20.0
    indoor_accuracy_max_m: float = 80.0
    indoor_network_prob: float = 0.3
    #: A recorded trip off duty at night (21:30-23:30 or 01:00-04:00 local, 2-10 km away,
    #: 10-60 min there), on days with off-duty recording.
    night_trip_prob: float = 0.0

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

    @classmethod
    def no_checkins(cls) -> NoiseProfile:
        """A tracker app only (OwnTracks, Traccar Client): realistic GPS, no check-in and
        no visit form at all; the app records around the work day as the realistic phone."""
        return cls(missing_workday_start_prob=1.0, missing_workday_end_prob=1.0,
                   missing_visit_checkin_prob=1.0, missing_break_checkin_prob=1.0,
                   missing_submission_prob=1.0)

    @classmethod
    def sparse_phone(cls) -> NoiseProfile:
        """A location history more than a tracker: a fix every 60 s, no Doppler speed or
        heading, more cell fixes, recording around the clock (the evening and night at home
        sparse and noisy indoors), night trips on a third of the days, and the realistic
        rep's check-ins (forgotten ones included)."""
        return cls(ping_moving_min_s=60.0, ping_moving_max_s=60.0, ping_stopped_min_s=60.0,
                   ping_stopped_max_s=60.0, no_speed_prob=1.0, network_fix_prob=0.15,
                   off_duty_home_prob=1.0, night_trip_prob=0.33)

    @classmethod
    def scenario(cls, name: str) -> NoiseProfile:
        """A named profile: realistic, no_checkins, sparse_phone or clean."""
        named = {"realistic": cls.realistic, "no_checkins": cls.no_checkins,
                 "sparse_phone": cls.sparse_phone, "clean": cls.clean}
        if name not in named:
            raise ValueError(f"unknown scenario {name!r} (one of {', '.join(named)})")
        return named[name]()

    def with_(self, **changes: float) -> NoiseProfile:
        """A copy with some knobs changed, e.g. ``NoiseProfile.clean().with_(jump_prob=0.01)``."""
        return replace(self, **changes)

    # -- applied by the phone renderer ----------------------------------------------------

    def clock_skew_s(self, rng: random.Random) -> float:
        return rng.uniform(-self.clock_skew_max_s, self.clock_skew_max_s)

    def fix(self, rng: random.Random, lat: float, lon: float, *, indoor: bool = False) -> Fix:
        """Turn a true position into what the phone reports (``indoor``: the sparse,
        noisy fixes of a phone in a house)."""
        if indoor:
            if rng.random() < self.indoor_network_prob:
                acc = rng.uniform(self.network_accuracy_min_m, self.network_accuracy_max_m)
                provider = "network"
            else:
                acc = rng.uniform(self.indoor_accuracy_min_m, self.indoor_accuracy_max_m)
                provider = "fused"
            sigma = acc / 1.51
            lat, lon = offset_point(lat, lon, rng.gauss(0.0, sigma), rng.gauss(0.0, sigma))
            return Fix(lat, lon, round(acc, 1), provider, False)
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
