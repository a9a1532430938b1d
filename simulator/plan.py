"""What a simulated rep really did on a day: the plan the phone renders and the truth is
scored against (shared by simulator.fieldday, simulator.phone and simulator.truth)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from simulator.paths import Trajectory
from simulator.world import Account, Rep

VISIT, BREAK, OTHER = "visit", "break", "other"


@dataclass(frozen=True, slots=True)
class TrueStop:
    start: float  # epoch seconds, UTC
    end: float
    lat: float
    lon: float
    kind: str  # visit / break / other
    place: str  # home / office / customer / cafe / roadside / fuel
    account_id: str | None = None
    visit_id: str | None = None


@dataclass(frozen=True, slots=True)
class TrueVisit:
    visit_id: str
    account: Account
    start: float
    end: float
    in_own_territory: bool


@dataclass
class DayPlan:
    rep: Rep
    day: dt.date
    device_id: str
    trajectory: Trajectory
    workday_start: float
    workday_end: float
    track_start: float  # the app records a little before and after the workday
    track_end: float
    stops: list[TrueStop] = field(default_factory=list)
    visits: list[TrueVisit] = field(default_factory=list)
