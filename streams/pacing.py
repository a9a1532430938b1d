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

That interval is for input that keeps coming. Once the stage has read its input to the end
(:func:`caught_up`: nothing more is waiting on its partitions), waiting would only delay the
records, so :meth:`DerivePacer.interval_for` is 0 and every dirty rep-day is derived at once,
provided the previous round of derivation took at most ``budget`` of the time since it
began (:attr:`DerivePacer.eager_ready`). That guard is what keeps a stage that keeps up
with its input from re-deriving every rep-day after every batch: being caught up for a
moment between two batches of a backlog is common, and each such round waits until the
last one is paid for (a round of 2 s waits 4.7 s at a budget of 0.3).

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
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def caught_up(partitions: Iterable[Any], ends: Mapping[Any, int],
              next_offsets: Mapping[Any, int]) -> bool:
    """Has the stage taken every message of ``partitions`` up to the end its consumer last
    fetched? ``ends``: each partition's high watermark from its last fetch (one not fetched
    yet is not caught up); ``next_offsets``: the offset after the last message taken (or,
    where none was, the consumer's position). False without partitions.

    >>> caught_up(["p0", "p1"], {"p0": 10, "p1": 4}, {"p0": 10, "p1": 4})
    True
    >>> caught_up(["p0", "p1"], {"p0": 10, "p1": 4}, {"p0": 9, "p1": 4})
    False
    """
    parts = list(partitions)
    return bool(parts) and all(p in ends and next_offsets.get(p, -1) >= ends[p]
                               for p in parts)


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
        self._round_end = -math.inf  # when the last round of derivation ended
        self._round_s = 0.0  # and how long it took

    def _decay(self) -> float:
        now = self._clock()
        self._busy *= math.exp(-max(0.0, now - self._at) / self.tau_s)
        self._at = now
        return self._busy

    def record(self, busy_s: float) -> None:
        """A round of derivation just took ``busy_s`` seconds."""
        self._decay()
        self._busy += max(0.0, busy_s)
        self._round_end, self._round_s = self._at, max(0.0, busy_s)

    @property
    def eager_ready(self) -> bool:
        """Did the last round take at most ``budget`` of the time since it began?"""
        rest = self._clock() - self._round_end
        return rest * self.budget >= self._round_s * (1.0 - self.budget)

    def interval_for(self, caught_up: bool) -> float:
        """The interval to use now: 0 when the input is ``caught_up`` and
        :attr:`eager_ready`, else :attr:`interval_s`."""
        return 0.0 if caught_up and self.eager_ready else self.interval_s

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
