"""Wire contracts of the derived and compacted topics, for the JSON Schema export.

The records themselves live where they are made (processors/records.py, processors/
transitions.py, streams/devices.py); these envelopes are what one Kafka message carries.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, Field

from processors.records import RepDay, Segment
from processors.transitions import Transition
from streams.devices import DeviceRecord


class FieldSegmentsMessage(BaseModel):
    """``field.segments`` (key rep_id): every segment of one rep-day at one version. A
    consumer replaces the rep-day's segments with these when ``version`` is higher than the
    one it holds; ``retracted`` lists ids an earlier version had (best effort)."""

    rep_id: str
    local_date: dt.date
    version: int
    segments: list[Segment]
    retracted: list[uuid.UUID] = []


class FieldTransitionsMessage(BaseModel):
    """``field.transitions`` (key rep_id): every territory/account transition of one
    rep-day at one version; same replacement rule as field.segments."""

    rep_id: str
    local_date: dt.date
    version: int
    transitions: list[Transition]


class GeoSetRecord(BaseModel):
    """``geotel.territories`` / ``geotel.accounts`` (compacted, key = kind)."""

    kind: str = Field(description="territories | accounts")
    version: int
    source: str = Field(description="File name it was loaded from.")
    geojson_gz_b64: str = Field(description="Base64 of the gzip of a GeoJSON "
                                "FeatureCollection in EPSG:4326.")


TOPIC_TYPES: dict[str, Any] = {
    "field_workday": RepDay,
    "field_segments": FieldSegmentsMessage,
    "field_transitions": FieldTransitionsMessage,
    "device_record": DeviceRecord,
    "geo_set": GeoSetRecord,
}
