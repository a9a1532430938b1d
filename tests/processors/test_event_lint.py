"""Fields ingest does not store are named, never dropped silently (processors/event_lint.py)."""

from __future__ import annotations

from typing import Any

from processors.event_lint import lint_event

BASE = {"device_id": "d-1", "rep_id": "r-1", "ts": "2026-11-02T08:00:00Z"}


def _texts(item: Any) -> list[str]:
    return [w.text() for w in lint_event(item)[1]]


def test_known_fields_only_say_nothing() -> None:
    ping = {**BASE, "event_id": "8c0c2b8e-4f39-4c43-9d0e-6a4ad0f5d1a1", "kind": "ping",
            "lat": 1.0, "lon": 2.0, "accuracy_m": 5, "battery_pct": 81, "is_mock": False}
    assert lint_event(ping) == (ping, [])
    check_in = {**BASE, "kind": "check_in", "action": "workday_start",
                "position": {"lat": 1.0, "lon": 2.0, "accuracy_m": 3}}
    assert lint_event(check_in) == (check_in, [])


def test_a_submission_with_answers_instead_of_form() -> None:
    sub = {**BASE, "kind": "visit_submission", "visit_id": "v-1", "account_id": "a-1",
           "outcome": "other", "answers": {"q1": "yes"},
           "order": {"currency": "EUR", "total": "1", "lines": [
               {"sku": "S", "quantity": 1, "unit_price": "1", "discount": 0.1}]},
           "photos": [{"photo_id": "p", "position": {"lat": 1, "lon": 2, "alt": 3}}]}
    assert _texts(sub) == [
        "answers: unknown field, not stored (did you mean form?)",
        "order.lines.0.discount: unknown field, not stored",
        "photos.0.position.alt: unknown field, not stored"]


def test_a_check_in_with_a_top_level_position() -> None:
    ci = {**BASE, "kind": "check_in", "action": "workday_start", "lat": 52.5, "lon": 13.4,
          "accuracy_m": 8}
    assert _texts(ci) == [
        "lat: unknown field, not stored (did you mean position.lat?)",
        "lon: unknown field, not stored (did you mean position.lon?)",
        "accuracy_m: unknown field, not stored (did you mean position.accuracy_m?)"]


def test_a_fractional_battery_is_taken_out_with_a_reason() -> None:
    ping = {**BASE, "kind": "ping", "lat": 1.0, "lon": 2.0, "battery_pct": 0.87}
    item, warns = lint_event(ping)
    assert "battery_pct" not in item and item["lat"] == 1.0
    assert [w.problem for w in warns] == ["ambiguous_unit"]
    assert "fraction" in warns[0].message and "87" in warns[0].message
    for ok in (0, 1, 1.0, 55.5, 100):  # percentages, and 0: kept as sent
        assert lint_event({**ping, "battery_pct": ok}) == ({**ping, "battery_pct": ok}, [])


def test_unknown_kinds_and_non_objects_are_left_to_the_schema() -> None:
    for item in ("x", 3, None, {"kind": "teleport", "foo": 1}, {"foo": 1}):
        assert lint_event(item) == (item, [])


def test_warnings_are_bounded() -> None:
    ping = {**BASE, "kind": "ping", "lat": 1.0, "lon": 2.0, **{f"x{i}": i for i in range(500)}}
    warns = lint_event(ping)[1]
    assert len(warns) == 20 and warns[-1].text() == "*: 481 more fields not stored"
