"""Output records of the session derivation: segments, the daily summary, rejections.

Frozen pydantic models with stable ids, so at-least-once delivery and re-derivation are safe:
a consumer keeps, per id, the record with the highest ``version``. Ids are uuid5 of
meaningful keys (rep, local date, kind, start), never random.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.events import FormValue, VisitOutcome

#: Namespace of every id derived here (uuid5 of "geotel.processors").
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "geotel.processors")


def day_id(rep_id: str, local_date: dt.date) -> uuid.UUID:
    return uuid.uuid5(ID_NAMESPACE, f"day|{rep_id}|{local_date.isoformat()}")


def segment_id(rep_id: str, local_date: dt.date, kind: str, start: dt.datetime,
               key: str = "") -> uuid.UUID:
    stamp = start.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return uuid.uuid5(ID_NAMESPACE, f"seg|{rep_id}|{local_date.isoformat()}|{kind}|{stamp}|{key}")


class SegmentKind(StrEnum):
    stop = "stop"
    visit = "visit"
    travel = "travel"
    break_ = "break"


class VisitSource(StrEnum):
    auto = "auto"  # a stop inside a customer geofence, no check-in
    check_in = "check_in"  # visit_start / visit_end check-ins
    submission = "submission"  # only a visit submission claims it


class RejectReason(StrEnum):
    too_late = "too_late"
    in_future = "in_future"


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


class Rejected(_Record):
    """An event the session state refused; goes to the dead-letter topic with the reason."""

    event_id: uuid.UUID
    rep_id: str
    reason: RejectReason
    detail: str


class RepDayUpdate(_Record):
    """A (re-)derivation of one rep-day: all its current segments and its summary.

    ``retracted`` lists segment ids emitted by an earlier version that no longer exist.
    """

    rep_id: str
    local_date: dt.date
    version: int
    segments: tuple[Segment, ...]
    summary: RepDay
    retracted: tuple[uuid.UUID, ...] = ()


class SessionOutput(_Record):
    """What :meth:`RepSessionState.add` returns."""

    updates: tuple[RepDayUpdate, ...] = ()
    rejected: tuple[Rejected, ...] = ()
    duplicates: int = 0
    closed: tuple[dt.date, ...] = Field(default=(), description="Rep-days closed (and "
                                        "discarded) by this call; their last update is final.")
