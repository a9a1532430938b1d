"""pydantic models of every event and derived record, and their JSON Schemas. No I/O."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from schemas.derived import DeadLetter, EnrichedBatch, EnrichedEvent, IngestResponse
from schemas.events import (
    EVENT_ADAPTER,
    CheckIn,
    Event,
    Ping,
    UploadBatch,
    VisitSubmission,
)
from schemas.topics import SCHEMA_FILES, TOPIC_VALUES

#: name -> type, for the JSON Schema files under schemas/json/.
SCHEMA_TYPES: dict[str, Any] = {
    "event": Event,
    "ping": Ping,
    "check_in": CheckIn,
    "visit_submission": VisitSubmission,
    "upload_batch": UploadBatch,
    "ingest_response": IngestResponse,
    "enriched_event": EnrichedEvent,
    "enriched_batch": EnrichedBatch,
    # the derived topics' message values (schemas/topics.py), DeadLetter among them
    **{stem: TOPIC_VALUES[topic] for stem, topic in SCHEMA_FILES.items()},
}
if SCHEMA_TYPES["deadletter"] is not DeadLetter:  # one model per wire format
    raise ImportError("schemas: the dead-letter schema file must come from DeadLetter")


def json_schemas(extra: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """JSON Schema (draft 2020-12) of every public record, by file stem; ``extra`` adds the
    topic envelopes defined outside this package."""
    out: dict[str, dict[str, Any]] = {}
    for name, tp in {**SCHEMA_TYPES, **(extra or {})}.items():
        schema = TypeAdapter(tp).json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://geotel.dev/schemas/{name}.json"
        schema.setdefault("title", name)
        out[name] = schema
    return out


__all__ = [
    "EVENT_ADAPTER",
    "SCHEMA_TYPES",
    "CheckIn",
    "Event",
    "Ping",
    "UploadBatch",
    "VisitSubmission",
    "json_schemas",
]
