"""The derivation pacer: within budget the configured interval, beyond it a longer one."""

from __future__ import annotations

import pytest

from streams.pacing import DerivePacer


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_within_budget_keeps_the_base_interval() -> None:
    c = Clock()
    p = DerivePacer(base_s=15.0, budget=0.3, tau_s=30.0, clock=c)
    for _ in range(100):  # 0.1 s of work every second: duty ~0.1
        c.t += 1.0
        p.record(0.1)
    assert p.duty == pytest.approx(0.1, rel=0.1)
    assert p.interval_s == 15.0


def test_overload_stretches_in_proportion_and_recovers() -> None:
    c = Clock()
    p = DerivePacer(base_s=15.0, budget=0.25, max_s=300.0, tau_s=30.0, clock=c)
    for _ in range(300):  # derivation takes 75 % of the time
        c.t += 1.0
        p.record(0.75)
    assert p.duty == pytest.approx(0.75, rel=0.05)
    assert p.interval_s == pytest.approx(45.0, rel=0.05)  # 15 s x 0.75 / 0.25
    c.t += 300.0  # idle for ten time constants
    assert p.interval_s == 15.0


def test_capped_and_zero_base() -> None:
    c = Clock()
    p = DerivePacer(base_s=0.0, budget=0.1, max_s=20.0, tau_s=10.0, clock=c)
    assert p.interval_s == 0.0
    c.t += 1.0
    p.record(100.0)
    assert p.interval_s == 20.0
    with pytest.raises(ValueError):
        DerivePacer(base_s=1.0, budget=0.0)
