"""Output records of the session derivation: rejections, updates, and the ids of segments
and days (the segment and summary records are in schemas/records.py).

Frozen pydantic models with stable ids, so at-least-once delivery and re-derivation are safe:
a consumer keeps, per id, the record with the highest ``version``. Ids are uuid5 of
meaningful keys (rep, local date, kind, start), never random.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# The records themselves are wire contracts (schemas/records.py); re-exported here for the
# derivation code.
from schemas.records import RepDay as RepDay
from schemas.records import Segment as Segment
from schemas.records import SegmentKind as SegmentKind
from schemas.records import VisitSource as VisitSource

#: Namespace of every id derived here (uuid5 of "geotel.processors").
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "geotel.processors")


def day_id(rep_id: str, local_date: dt.date) -> uuid.UUID:
    return uuid.uuid5(ID_NAMESPACE, f"day|{rep_id}|{local_date.isoformat()}")


def segment_id(rep_id: str, local_date: dt.date, kind: str, start: dt.datetime,
               key: str = "") -> uuid.UUID:
    stamp = start.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return uuid.uuid5(ID_NAMESPACE, f"seg|{rep_id}|{local_date.isoformat()}|{kind}|{stamp}|{key}")


class RejectReason(StrEnum):
    too_late = "too_late"
    in_future = "in_future"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


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
    superseded: tuple[Any, ...] = Field(default=(), description="Copies of an event id "
                                        "received again with another ts, that lost to the "
                                        "first received copy: stored under another sort key, "
                                        "they are to be deleted from the store.")
