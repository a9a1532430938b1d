"""Derived rep-day records: segments, the daily summary, territory/account transitions.

What the sessions stage derives (processors/) and publishes (``field.*`` topics, schemas/
topics.py) and stores. Frozen, with stable ids (uuid5 of meaningful keys, made in
processors/), so at-least-once delivery and re-derivation are safe: a consumer keeps, per
id, the record with the highest ``version``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import FormValue, VisitOutcome


class SegmentKind(StrEnum):
    stop = "stop"
    visit = "visit"
    travel = "travel"
    break_ = "break"


class VisitSource(StrEnum):
    auto = "auto"  # a stop inside a customer geofence, no check-in
    check_in = "check_in"  # visit_start / visit_end check-ins
    submission = "submission"  # only a visit submission claims it


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Segment(_Record):
    """A stop, visit, travel or break interval of one rep-day.

    Visits overlap the stops they were seen at; daily figures in :class:`RepDay` are
    computed on a non-overlapping allocation of the work day, not by summing segments.
    """

    segment_id: uuid.UUID
    rep_id: str
    local_date: dt.date
    kind: SegmentKind
    start: AwareDatetime
    end: AwareDatetime
    duration_s: float
    workday_s: float = Field(description="Seconds of this segment inside the work day.")
    lon: float | None = None
    lat: float | None = None
    distance_m: float = 0.0
    place_id: str | None = Field(default=None, description="Account/office/home id.")
    place_kind: str | None = None
    visit_id: str | None = None
    visit_source: VisitSource | None = None
    verified: bool | None = None
    place_distance_m: float | None = Field(
        default=None, description="Stop centroid (or median ping) distance to the place.")
    submission_event_id: uuid.UUID | None = None
    inferred: bool = Field(default=False, description="Break or visit end inferred, not "
                           "checked in.")
    n_pings: int = 0
    # The linked visit submission's facts (a visit with ``submission_event_id``), so a
    # consumer (and the ``visits`` view) needs no join with the forms; empty otherwise.
    outcome: VisitOutcome | None = Field(default=None, description="Outcome of the linked "
                                         "visit submission; null without one.")
    order_currency: str | None = None
    order_total: Decimal | None = None
    tags: tuple[str, ...] = ()
    form: dict[str, FormValue] = Field(default_factory=dict)
    notes: str = ""
    photo_count: int = 0
    version: int = 0


class RepDay(_Record):
    """Daily figures of one rep on one local day (seconds, metres)."""

    day_id: uuid.UUID
    rep_id: str
    local_date: dt.date
    tz: str
    workday_start: AwareDatetime | None
    workday_end: AwareDatetime | None
    workday_start_inferred: bool
    workday_end_inferred: bool
    workday_s: float
    field_s: float
    travel_s: float
    customer_s: float
    stopped_other_s: float
    unknown_s: float = Field(description="Field time without data (long gaps).")
    break_s: float
    office_home_s: float
    in_territory_s: float
    out_territory_s: float
    distance_m: float
    visits: int
    verified_visits: int
    unverified_visits: int
    auto_visits: int
    pings_kept: int
    pings_dropped: dict[str, int]
    clock_offset_s: float = Field(description="Clock correction applied (mean over devices).")
    events: int
    version: int


class TransitionKind(StrEnum):
    territory_enter = "territory_enter"
    territory_exit = "territory_exit"
    account_arrive = "account_arrive"
    account_leave = "account_leave"


class Transition(BaseModel):
    """A confirmed change of territory or account, at the first fix of the new state."""

    model_config = ConfigDict(frozen=True)

    transition_id: uuid.UUID = Field(
        description="uuid5 of (rep, local date, kind, subject, at in ms): stable across "
        "re-derivations that confirm the same change.")
    rep_id: str
    local_date: dt.date
    kind: TransitionKind
    subject_id: str = Field(description="Territory id (enter/exit) or account id "
                            "(arrive/leave).")
    at: AwareDatetime = Field(description="Time (ts, UTC) of the first fix of the confirmed "
                              "new state.")
    lon: float | None  # None once off-duty positions are dropped (docs/privacy.md)
    lat: float | None
    geo_version: int = Field(description="Territory/account index version that enriched "
                             "the fix at ``at``.")
    version: int = 0


__all__ = ["RepDay", "Segment", "SegmentKind", "Transition", "TransitionKind", "VisitSource"]
