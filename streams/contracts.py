"""Wire contracts of the compacted configuration topics, for the JSON Schema export.

The derived topics' contracts (field.*, telemetry.deadletter) are in schemas/topics.py;
the device record lives where it is made (streams/devices.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from schemas.topics import FieldSegmentsMessage, FieldTransitionsMessage
from streams.devices import DeviceRecord


class GeoSetRecord(BaseModel):
    """``geotel.territories`` / ``geotel.accounts`` / ``geotel.places`` / ``geotel.reps``
    (compacted, key = kind)."""

    kind: str = Field(description="territories | accounts | places | reps")
    version: int
    source: str = Field(description="File name it was loaded from.")
    geojson_gz_b64: str = Field(description="Base64 of the gzip of a GeoJSON "
                                "FeatureCollection in EPSG:4326 (for reps: of the roster, a "
                                "JSON list of {rep_id, name, team, manager, tz}).")


#: JSON Schema file stem -> type, beside schemas.SCHEMA_TYPES.
TOPIC_TYPES: dict[str, Any] = {
    "device_record": DeviceRecord,
    "geo_set": GeoSetRecord,
}

__all__ = ["TOPIC_TYPES", "FieldSegmentsMessage", "FieldTransitionsMessage", "GeoSetRecord"]
