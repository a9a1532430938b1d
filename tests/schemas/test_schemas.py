from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from schemas.events import EVENT_ADAPTER, UploadBatch
from streams.cli import SCHEMA_DIR, render_schemas

BASE = {"event_id": str(uuid.uuid4()), "device_id": "d-1", "rep_id": "rep-1",
        "ts": "2026-11-02T08:00:00+01:00"}


def test_committed_json_schemas_are_current() -> None:
    files = render_schemas()
    stale = [n for n, t in files.items()
             if not (SCHEMA_DIR / n).exists() or (SCHEMA_DIR / n).read_text() != t]
    assert not stale, f"run `geotel schemas export`: stale {stale}"


def test_schema_files_are_valid_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    for name in render_schemas():
        jsonschema.Draft202012Validator.check_schema(json.loads((SCHEMA_DIR / name).read_text()))


def test_kinds_discriminate_and_times_become_utc() -> None:
    ping = EVENT_ADAPTER.validate_python({**BASE, "kind": "ping", "lat": 1, "lon": 2})
    assert ping.kind == "ping" and ping.ts.utcoffset().total_seconds() == 0
    assert ping.ts.hour == 7
    ci = EVENT_ADAPTER.validate_python({**BASE, "kind": "check_in", "action": "workday_start"})
    assert ci.kind == "check_in"


@pytest.mark.parametrize("patch, where", [
    ({"kind": "ping", "lat": 91, "lon": 0}, "lat"),
    ({"kind": "ping", "lat": 0, "lon": -181}, "lon"),
    ({"kind": "ping", "lat": 0, "lon": 0, "accuracy_m": -1}, "accuracy_m"),
    ({"kind": "ping", "lat": 0, "lon": 0, "ts": "2026-11-02T08:00:00"}, "ts"),  # naive
    ({"kind": "ping", "lat": float("nan"), "lon": 0}, "lat"),
    ({"kind": "ping", "lat": 0, "lon": 0, "event_id": "not-a-uuid"}, "event_id"),
    ({"kind": "ping", "lat": 0, "lon": 0, "rep_id": "has space"}, "rep_id"),
    ({"kind": "check_in", "action": "visit_start"}, "account_id"),
    ({"kind": "check_in", "action": "nap"}, "action"),
    ({"kind": "teleport"}, "kind"),
    ({"kind": "visit_submission", "visit_id": "v", "account_id": "a", "outcome": "closed",
      "started_at": "2026-11-02T09:00:00Z", "ended_at": "2026-11-02T08:00:00Z"}, "before"),
])
def test_invalid_events_say_why(patch: dict, where: str) -> None:
    with pytest.raises(ValidationError) as exc:
        EVENT_ADAPTER.validate_python({**BASE, **patch})
    assert where in str(exc.value)


def test_visit_submission_round_trip() -> None:
    sub = EVENT_ADAPTER.validate_python({
        **BASE, "kind": "visit_submission", "visit_id": "v1", "account_id": "A1",
        "started_at": "2026-11-02T08:00:00Z", "ended_at": "2026-11-02T08:30:00Z",
        "outcome": "order_placed", "form": {"competitor": "Acme", "share": 30, "needs": ["x"]},
        "photos": [{"photo_id": "p1", "sha256": "a" * 64, "content_type": "image/jpeg",
                    "bytes": 1000}],
        "order": {"currency": "EUR", "total": "12.50",
                  "lines": [{"sku": "S1", "quantity": 1, "unit_price": "12.50"}]},
        "tags": ["competitor:Acme"], "some_future_field": 1})
    again = EVENT_ADAPTER.validate_json(sub.model_dump_json())
    assert again == sub


def test_batch_bounds() -> None:
    ev = {**BASE, "kind": "ping", "lat": 0, "lon": 0}
    assert len(UploadBatch.model_validate({"events": [ev]}).events) == 1
    with pytest.raises(ValidationError):
        UploadBatch.model_validate({"events": []})
    with pytest.raises(ValidationError):
        UploadBatch.model_validate({"events": [ev] * 501})
