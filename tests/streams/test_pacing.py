"""The derivation pacer: within budget the configured interval, beyond it a longer one."""

from __future__ import annotations

import pytest

from streams.pacing import DerivePacer, caught_up


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


def test_caught_up_input_derives_at_once_once_the_last_round_is_paid_for() -> None:
    c = Clock()
    p = DerivePacer(base_s=15.0, budget=0.3, tau_s=30.0, clock=c)
    assert p.interval_for(caught_up=True) == 0.0  # nothing derived yet
    assert p.interval_for(caught_up=False) == 15.0  # input still coming: the interval
    c.t += 10.0
    p.record(3.0)  # a round of 3 s just ended: the next eager one waits 7 s
    c.t += 6.9
    assert not p.eager_ready and p.interval_for(caught_up=True) == 15.0
    c.t += 0.1
    assert p.eager_ready and p.interval_for(caught_up=True) == 0.0


def test_a_stage_that_keeps_up_derives_at_most_its_budget() -> None:
    """Caught up after every batch of a backlog (the failure mode of deriving whenever the
    input pauses): rounds of derivation take at most the budget of the time."""
    c = Clock()
    p = DerivePacer(base_s=15.0, budget=0.3, tau_s=30.0, clock=c)
    busy = 0.0
    last: dict[int, float] = {}
    for _ in range(2000):  # a batch every 0.1 s, then caught up until the next one
        c.t += 0.1
        if c.t - last.get(0, -1e9) >= p.interval_for(caught_up=True):
            c.t += 0.5  # deriving every dirty rep-day takes 0.5 s
            busy += 0.5
            p.record(0.5)
            last[0] = c.t
    assert 0.25 <= busy / c.t <= 0.3


def test_caught_up() -> None:
    assert caught_up(["a"], {"a": 5}, {"a": 5})
    assert not caught_up(["a"], {"a": 5}, {"a": 4})
    assert not caught_up(["a", "b"], {"a": 5}, {"a": 5, "b": 0})  # b never fetched
    assert not caught_up(["a"], {"a": 5}, {})  # position unknown
    assert not caught_up([], {}, {})  # nothing assigned: nothing read
