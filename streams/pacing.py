"""How often the sessions stage may re-derive a rep-day, given what derivation costs.

A derivation re-reads the whole rep-day, so its cost grows with the day and with the number
of active reps, not with the traffic: 10,000 reps with full days cost about 11 ms each, two
minutes of CPU per round. With a fixed interval a busy worker would spend all its time
re-deriving and fall behind on intake. :class:`DerivePacer` keeps derivation under a share
of the worker's time instead: it tracks the time spent deriving as an exponentially decaying
sum (time constant ``tau_s``), and when that duty exceeds ``budget`` it stretches the interval
in proportion, up to ``max_s``. Under a backlog (a restart, a broker outage) this means each
rep-day is derived a few times while the backlog drains rather than every ``base_s``; when
the load falls, the interval returns to ``base_s``.

>>> clock = iter([0.0, 0.0, 1.0, 2.0]).__next__
>>> p = DerivePacer(base_s=15.0, budget=0.25, max_s=300.0, tau_s=10.0, clock=clock)
>>> p.interval_s
15.0
>>> p.record(5.0)       # 5 s of derivation at t=1 s: duty ~0.45 of the last ~10 s
>>> round(p.interval_s)  # stretched by duty / budget
27
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class DerivePacer:
    def __init__(self, base_s: float, budget: float = 0.3, max_s: float = 300.0,
                 tau_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < budget <= 1:
            raise ValueError(f"budget must be in (0, 1], got {budget}")
        self.base_s = base_s
        self.budget = budget
        self.max_s = max(max_s, base_s)
        self.tau_s = tau_s
        self._clock = clock
        self._busy = 0.0  # decayed seconds of derivation
        self._at = clock()

    def _decay(self) -> float:
        now = self._clock()
        self._busy *= math.exp(-max(0.0, now - self._at) / self.tau_s)
        self._at = now
        return self._busy

    def record(self, busy_s: float) -> None:
        """``busy_s`` seconds were just spent deriving."""
        self._decay()
        self._busy += max(0.0, busy_s)

    @property
    def duty(self) -> float:
        """Share of recent time spent deriving (decayed over ``tau_s``)."""
        return self._decay() / self.tau_s

    @property
    def interval_s(self) -> float:
        """The interval to use now: ``base_s`` while within budget, stretched by
        duty / budget beyond it (from at least 1 s when ``base_s`` is 0), at most ``max_s``."""
        stretch = self.duty / self.budget
        if stretch <= 1.0:
            return self.base_s
        return min(self.max_s, max(self.base_s, 1.0) * stretch)
