"""The rules stage through the real stack: a planted long break and a long work day (with
small limits) come out once each as raised and resolved records on field.alerts (valid
against the exported schema) and in the ``alerts`` table; after a restart, with the rep-day
derived again, nothing is published or stored a second time."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from typing import Any

import pytest

from processors.alert_rules import alert_id
from tests.analysts.test_topic_contracts import read_topic, validator
from tests.conftest import Stack, ping, wait_for

pytestmark = pytest.mark.integration

REP, DEVICE = "alert-rep-1", "alert-dev-1"
BREAK_MAX_S, WORKDAY_MAX_S = 600, 3600
# Two days before the test runs (events must be younger than ingest.max_event_age_s), in
# UTC: the rep is in no territory, so its day is the UTC day. The start is early enough
# never to be late.
DAY = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date()
T0 = dt.datetime.combine(DAY, dt.time(8, 0), tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def stamp(minutes: float) -> str:
    return at(minutes).strftime("%Y-%m-%d %H:%M:%S")


def check_in(action: str, t: dt.datetime) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "device_id": DEVICE, "rep_id": REP,
            "kind": "check_in", "action": action, "ts": t.isoformat(),
            "position": {"lat": 52.52, "lon": 13.40, "accuracy_m": 10.0}}


def day_events() -> list[dict[str, Any]]:
    """08:00 start, a break 09:00-09:20 (limit 10 min), 10:00 end (2 h, limit 1 h); pings
    at one place every two minutes."""
    pings = [ping(DEVICE, REP, at(m)) for m in range(0, 121, 2)]
    return [check_in("workday_start", at(0)), *pings, check_in("break_start", at(60)),
            check_in("break_end", at(80)), check_in("workday_end", at(120))]


def alert_rows(stack: Stack) -> list[dict[str, Any]]:
    return stack.sql(f"SELECT alert_id, state, rule, at, detail FROM alerts_all "
                     f"WHERE rep_id = '{REP}' ORDER BY rule, state")


def stored_break_id(stack: Stack) -> str:
    rows = stack.sql(f"SELECT segment_id FROM segments WHERE rep_id = '{REP}' "
                     f"AND kind = 'break'")
    assert len(rows) == 1, rows
    return str(rows[0]["segment_id"])


def derived_after(stack: Stack, version: int) -> int:
    """Wait until the rep-day is stored at a version above ``version`` (the sessions stage
    publishes it on field.* after storing it), then until the sessions and rules stages
    read everything; the version stored."""
    def stored() -> int:
        return int(stack.scalar(f"SELECT max(version) FROM rep_daily WHERE rep_id = '{REP}'")
                   or 0)

    wait_for(lambda: stored() > version, 60, f"the rep-day derived past version {version}")
    stack.wait_derived()
    stack.wait_alerts()
    return stored()


@pytest.fixture(scope="module")
def alert_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    stack = Stack(tmp_path_factory.mktemp("alerts"), {
        "GEOTEL_ALERTS__BREAK_MAX_S": str(BREAK_MAX_S),
        "GEOTEL_ALERTS__WORKDAY_MAX_S": str(WORKDAY_MAX_S)})
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def test_planted_alerts_are_published_and_stored_once_across_a_restart(
        alert_stack: Stack) -> None:
    stack = alert_stack
    token = stack.add_device(REP, DEVICE)
    assert stack.post_as_phone(token, day_events()).status_code == 202
    version = derived_after(stack, 0)

    # the table: each alert raised and resolved once, at the event times the rules give
    rows = alert_rows(stack)
    assert [(r["rule"], r["state"]) for r in rows] == [
        ("long_break", "raised"), ("long_break", "resolved"),
        ("long_workday", "raised"), ("long_workday", "resolved")], rows
    brk = str(alert_id(REP, DAY, "long_break", stored_break_id(stack)))
    work = str(alert_id(REP, DAY, "long_workday", ""))
    assert {r["alert_id"] for r in rows} == {brk, work}
    times = {(r["rule"], r["state"]): r["at"][:19] for r in rows}
    assert times == {("long_break", "raised"): stamp(70), ("long_break", "resolved"): stamp(80),
                     ("long_workday", "raised"): stamp(60),
                     ("long_workday", "resolved"): stamp(120)}
    assert json.loads(rows[0]["detail"])["limit_s"] == BREAK_MAX_S

    # the topic: the same four records, each valid against schemas/json/field_alert.json
    msgs = [json.loads(v) for v in read_topic(stack.bootstrap, "field.alerts")]
    check = validator("field.alerts")
    for m in msgs:
        errors = list(check.iter_errors(m))
        assert not errors, errors[0].message
    assert Counter((m["alert_id"], m["state"]) for m in msgs) == Counter(
        {(brk, "raised"): 1, (brk, "resolved"): 1, (work, "raised"): 1,
         (work, "resolved"): 1})
    assert {m["rep_id"] for m in msgs} == {REP}

    # restart: the embedded broker comes back empty; one more ping re-derives the rep-day
    # from the store, and the new process's rules stage evaluates it again (ledger
    # restored from the alerts table): nothing is published or stored again.
    stack.stop()
    stack.start()
    assert stack.post_as_phone(token, [ping(DEVICE, REP, at(111))]).status_code == 202
    derived_after(stack, version)
    wait_for(lambda: stack.health()["components"]["alerts"]["evaluations"] >= 1, 60,
             "the restarted rules stage evaluated the rep-day")
    health = stack.health()["components"]["alerts"]
    assert health["restored_rep_days"] >= 1 and health["published"] == 0, health
    assert read_topic(stack.bootstrap, "field.alerts") == []
    assert stack.scalar(f"SELECT count() FROM alerts_all WHERE rep_id = '{REP}'") == 4
    assert alert_rows(stack) == rows
