"""Records the pipeline derives and publishes: enriched events and dead letters.

Derived session records (segments, work days, transitions) live beside these as the
session and territory work lands; every record carries a stable id so consumers and
sinks can deduplicate (delivery is at-least-once).
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import CheckIn, Ident, Ping, UtcTime, VisitSubmission


class Enrichment(BaseModel):
    """Where an event happened, as the territory/account index of ``geo_version`` saw it."""

    model_config = ConfigDict(frozen=True)

    territory_id: str | None = None
    region: str | None = None
    in_assigned_territory: bool | None = None
    account_id: str | None = None
    account_distance_m: float | None = None
    geo_version: int = 0


class EnrichedPing(Ping):
    geo: Enrichment = Enrichment()


class EnrichedCheckIn(CheckIn):
    geo: Enrichment = Enrichment()


class EnrichedVisitSubmission(VisitSubmission):
    geo: Enrichment = Enrichment()


EnrichedEvent = Annotated[
    EnrichedPing | EnrichedCheckIn | EnrichedVisitSubmission, Field(discriminator="kind")
]


class EnrichedBatch(BaseModel):
    """Value of a ``telemetry.enriched`` message (key: ``rep_id``): events of one rep, from
    one batch of uploads (at most 500 per message)."""

    rep_id: Ident
    events: list[EnrichedEvent]


class DeadLetterReason(StrEnum):
    undecodable = "undecodable"  # not UTF-8 JSON
    bad_shape = "bad_shape"  # JSON, but not an event, a list of events or {"events": [...]}
    invalid = "invalid"  # an event that fails its schema
    too_late = "too_late"  # older than the configured lateness against the rep's watermark
    too_old = "too_old"  # ts far before received_at
    in_future = "in_future"  # ts far after received_at


class DeadLetter(BaseModel):
    """Value of a ``telemetry.deadletter`` message: the input, where it came from, and why."""

    reason: DeadLetterReason
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    event_id: uuid.UUID | None = None
    rep_id: str | None = None
    payload: str = Field(description="The offending input: the event JSON, or the raw bytes "
                         "decoded as UTF-8 with replacement when they are not UTF-8.")
    payload_b64: str | None = Field(default=None, description="Base64 of the raw bytes when "
                                    "they are not valid UTF-8, so nothing is lost.")
    at: dt.datetime


class EventStatus(BaseModel):
    index: int
    event_id: str | None = None
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = Field(default=None, description="Why it was rejected (invalid, "
                               "in_future, too_old, identity_mismatch) or is a duplicate "
                               "(duplicate_in_batch).")
    detail: str | None = None
    warnings: list[str] | None = Field(default=None, description=(
        "Fields of this event that were not stored, as `field: why`: a field the schema does "
        "not know (with the field probably meant), or a value whose unit is ambiguous "
        "(battery_pct below 1). Absent when there is nothing to say."))


class IngestResponse(BaseModel):
    """Response of ``POST /v1/events``: one entry per submitted event, in order."""

    accepted: int
    rejected: int
    results: list[EventStatus]


__all__ = [
    "DeadLetter",
    "DeadLetterReason",
    "EnrichedBatch",
    "EnrichedCheckIn",
    "EnrichedEvent",
    "EnrichedPing",
    "EnrichedVisitSubmission",
    "Enrichment",
    "EventStatus",
    "IngestResponse",
    "UtcTime",
]
