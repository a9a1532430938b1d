"""Wire contracts of the derived topics: the value of one Kafka message, per topic.

Each model here is BOTH what the worker encodes (:func:`encode`) and what ``geotel schemas
export`` writes as JSON Schema (schemas/json/), so the published schema cannot drift from
the bytes on the topic (docs/topics.md). Names are without the deployment's prefix.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.derived import DeadLetter
from schemas.records import RepDay, Segment, Transition


class FieldSegmentsMessage(BaseModel):
    """``field.segments`` (key rep_id): every segment of one rep-day at one version. A
    consumer replaces the rep-day's segments with these when ``version`` is higher than the
    one it holds; ``retracted`` lists ids an earlier version had (best effort)."""

    model_config = ConfigDict(frozen=True)

    rep_id: str
    local_date: dt.date
    version: int
    segments: list[Segment]
    retracted: list[uuid.UUID] = []


class FieldTransitionsMessage(BaseModel):
    """``field.transitions`` (key rep_id): every territory/account transition of one
    rep-day at one version; same replacement rule as field.segments."""

    model_config = ConfigDict(frozen=True)

    rep_id: str
    local_date: dt.date
    version: int
    transitions: list[Transition]


#: The alert rules (processors/alert_rules.py, docs/alerts.md).
AlertRule = Literal["late_start", "long_break", "long_workday", "unverified_visit",
                    "out_of_territory"]


class FieldAlertMessage(BaseModel):
    """``field.alerts`` (key rep_id): an alert raised, or resolved (same ``alert_id``).
    Each ``(alert_id, state)`` is published once; a consumer that sees one again (at least
    once delivery) drops it."""

    model_config = ConfigDict(frozen=True)

    alert_id: uuid.UUID = Field(description="uuid5 of rep, local date, rule and the "
                                "record that caused it: the same on a replay.")
    state: Literal["raised", "resolved"]
    rule: AlertRule
    rep_id: str
    local_date: dt.date
    at: dt.datetime = Field(description="Event time: when the condition became true "
                            "(raised) or ended (resolved).")
    detail: dict[str, Any] = Field(default_factory=dict,
                                   description="Rule-specific facts (docs/alerts.md); "
                                   "`reason: retracted` on a resolve whose condition a later "
                                   "derivation no longer finds.")


#: Topic (without prefix) -> the model of its message value.
TOPIC_VALUES: dict[str, type[BaseModel]] = {
    "field.workdays": RepDay,
    "field.segments": FieldSegmentsMessage,
    "field.transitions": FieldTransitionsMessage,
    "field.alerts": FieldAlertMessage,
    "telemetry.deadletter": DeadLetter,
}

#: JSON Schema file stem (schemas/json/) -> topic whose value it describes.
SCHEMA_FILES: dict[str, str] = {
    "field_workday": "field.workdays",
    "field_segments": "field.segments",
    "field_transitions": "field.transitions",
    "field_alert": "field.alerts",
    "deadletter": "telemetry.deadletter",
}


def encode(value: BaseModel) -> bytes:
    """The bytes of a message value: UTF-8 JSON of the topic's model (times ISO 8601 UTC)."""
    if type(value) not in _MODELS:
        raise TypeError(f"{type(value).__name__} is not the value model of a derived topic")
    return value.model_dump_json().encode()


_MODELS = frozenset(TOPIC_VALUES.values())

__all__ = ["SCHEMA_FILES", "TOPIC_VALUES", "AlertRule", "FieldAlertMessage",
           "FieldSegmentsMessage", "FieldTransitionsMessage", "encode"]
