"""What ingest tells a client about fields it did not store.

The event models ignore unknown fields (a newer app must be able to talk to an older
server), which made typos and wrong shapes silent: a submission with ``answers`` instead of
``form`` lost every answer, a check-in with top-level ``lat``/``lon`` lost its position. Each
uploaded event is checked here before validation: every field the schema does not know is
named in a warning (with the field meant, when the name is a known alias), and a value whose
unit is ambiguous is taken out rather than stored wrong (a ``battery_pct`` below 1 reads as
a fraction of 1: 0.87 would be stored as 0.87 %). The event itself is still judged by the
schema as before, so nothing here changes which events are accepted. Pure.

>>> [w.text() for w in lint_event({"kind": "visit_submission", "answers": {"q": 1}})[1]]
['answers: unknown field, not stored (did you mean form?)']
>>> item, w = lint_event({"kind": "ping", "lat": 1, "lon": 2, "battery_pct": 0.87})
>>> "battery_pct" in item, w[0].problem
(False, 'ambiguous_unit')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from schemas.events import CheckIn, Order, OrderLine, Photo, Ping, Position, VisitSubmission

_MODELS: dict[str, type[BaseModel]] = {"ping": Ping, "check_in": CheckIn,
                                       "visit_submission": VisitSubmission}
_KNOWN = {kind: frozenset(m.model_fields) for kind, m in _MODELS.items()}
_POSITION = frozenset(Position.model_fields)
_PHOTO = frozenset(Photo.model_fields)
_ORDER = frozenset(Order.model_fields)
_LINE = frozenset(OrderLine.model_fields)

#: Warnings per event at most (the last one then counts the rest).
MAX_WARNINGS = 20

_ANY_HINTS = {"id": "event_id", "uuid": "event_id", "type": "kind", "timestamp": "ts",
              "time": "ts", "device": "device_id", "rep": "rep_id"}
_HINTS: dict[str, dict[str, str]] = {
    "ping": {"latitude": "lat", "longitude": "lon", "lng": "lon", "accuracy": "accuracy_m",
             "acc": "accuracy_m", "speed": "speed_mps", "heading": "heading_deg",
             "bearing": "heading_deg", "course": "heading_deg", "altitude": "altitude_m",
             "alt": "altitude_m", "battery": "battery_pct", "batt": "battery_pct",
             "battery_level": "battery_pct", "mock": "is_mock"},
    "check_in": {"lat": "position.lat", "lon": "position.lon", "latitude": "position.lat",
                 "longitude": "position.lon", "accuracy_m": "position.accuracy_m",
                 "accuracy": "position.accuracy_m", "account": "account_id",
                 "visit": "visit_id", "type": "action", "event": "action"},
    "visit_submission": {"answers": "form", "answer": "form", "responses": "form",
                         "fields": "form", "form_data": "form", "note": "notes",
                         "comment": "notes", "comments": "notes", "photo": "photos",
                         "images": "photos", "tag": "tags", "lines": "order.lines",
                         "start": "started_at", "end": "ended_at", "result": "outcome"},
}


@dataclass(frozen=True, slots=True)
class FieldWarning:
    field: str  # dotted path of the field, as sent
    problem: str  # unknown_field | ambiguous_unit
    message: str

    def text(self) -> str:
        return f"{self.field}: {self.message}"


def _unknown(doc: dict[str, Any], known: frozenset[str], prefix: str,
             hints: dict[str, str]) -> list[FieldWarning]:
    out = []
    for key in doc:
        if key in known:
            continue
        name = str(key)[:64]
        hint = hints.get(name) or _ANY_HINTS.get(name)
        msg = "unknown field, not stored" + (f" (did you mean {hint}?)" if hint else "")
        out.append(FieldWarning(prefix + name, "unknown_field", msg))
    return out


def _nested(v: object, known: frozenset[str], prefix: str) -> list[FieldWarning]:
    return _unknown(v, known, prefix, {}) if isinstance(v, dict) else []


def lint_event(item: Any) -> tuple[Any, list[FieldWarning]]:
    """``item`` as it should be validated, and the warnings about what will not be stored.
    Items that are not events of a known kind come back unchanged, without warnings (the
    schema rejects them with its own reason)."""
    if not isinstance(item, dict):
        return item, []
    kind = item.get("kind")
    if not isinstance(kind, str) or kind not in _KNOWN:
        return item, []
    warnings = _unknown(item, _KNOWN[kind], "", _HINTS[kind])
    if kind == "check_in":
        warnings += _nested(item.get("position"), _POSITION, "position.")
    elif kind == "visit_submission":
        order = item.get("order")
        warnings += _nested(order, _ORDER, "order.")
        if isinstance(order, dict) and isinstance(order.get("lines"), list):
            for i, line in enumerate(order["lines"][:500]):
                warnings += _nested(line, _LINE, f"order.lines.{i}.")
        photos = item.get("photos")
        if isinstance(photos, list):
            for i, photo in enumerate(photos[:50]):
                warnings += _nested(photo, _PHOTO, f"photos.{i}.")
                if isinstance(photo, dict):
                    warnings += _nested(photo.get("position"), _POSITION,
                                        f"photos.{i}.position.")
    elif kind == "ping":
        batt = item.get("battery_pct")
        if isinstance(batt, int | float) and not isinstance(batt, bool) and 0 < batt < 1:
            item = {k: v for k, v in item.items() if k != "battery_pct"}
            warnings.append(FieldWarning(
                "battery_pct", "ambiguous_unit",
                f"{batt} is below 1 and reads as a fraction of 1, not a percentage; not "
                f"stored (send {round(batt * 100, 1)} for {batt * 100:.0f} %)"))
    if len(warnings) > MAX_WARNINGS:  # a bounded answer, whatever the client sent
        more = len(warnings) - MAX_WARNINGS + 1
        warnings = [*warnings[:MAX_WARNINGS - 1],
                    FieldWarning("*", "unknown_field", f"{more} more fields not stored")]
    return item, warnings
