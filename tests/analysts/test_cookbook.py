"""Every query of docs/analysts.md runs against simulated field days through the read-only
endpoint and gives a plausible answer: non-empty where the data must have one, values in
sane ranges, and a few answers re-derived independently here."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from simulator.forms import COMPETITORS
from tests.analysts.fielddata import FieldData
from tests.conftest import ROOT, Stack

pytestmark = pytest.mark.integration

DOC = ROOT / "docs" / "analysts.md"
_BLOCK = re.compile(r"^### (.+?)\n(?:(?!^### ).)*?^```sql\n(.*?)^```", re.S | re.M)
QUERIES = [(q.strip(), sql.strip()) for q, sql in _BLOCK.findall(DOC.read_text())]

# Questions whose answer may be empty with two simulated days (no one is 21 days cold;
# simulated reps start before 09:00; GPS confirms nearly every simulated visit).
MAY_BE_EMPTY = {
    "Which accounts are going cold (visited before, but not in the last 21 days)?",
    "Who started late this week (work day began after 09:00 local)?",
    "Which visits could GPS not confirm?",
}


def slug(q: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", q.lower()).strip("-")[:60]


def test_the_cookbook_has_enough_questions() -> None:
    assert len(QUERIES) >= 12
    assert len({q for q, _ in QUERIES}) == len(QUERIES)
    for q in MAY_BE_EMPTY:
        assert q in dict(QUERIES), q


def _check_ranges(row: dict[str, Any]) -> None:
    per_day = "local_date" in row
    for k, v in row.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if k == "lat":
            assert 52.0 <= v <= 53.5, row  # the sample world (Berlin area)
        elif k == "lon":
            assert 12.5 <= v <= 14.5, row
        else:
            assert v >= 0, (k, row)
        hours = k.endswith("_h") and "per_" not in k  # orders_per_field_h is a rate
        if hours:
            assert v <= (16 if per_day else 16 * 7), (k, row)
        if k == "field_h_per_day":
            assert v <= 16, (k, row)
        if k.endswith("_km"):
            assert v <= (500 if per_day or k.startswith(("avg", "max")) else 500 * 30), (k, row)
        if k.endswith("_pct"):
            assert v <= 100.0001, (k, row)
        if k.endswith("_min"):
            assert v <= 16 * 60 * 7, (k, row)
        if k == "avg_speed_kmh":
            assert v <= 130, row


@pytest.mark.parametrize(("question", "sql"), QUERIES, ids=[slug(q) for q, _ in QUERIES])
def test_query_gives_a_plausible_answer(field: tuple[Stack, FieldData], question: str,
                                        sql: str) -> None:
    stack, data = field
    rows = stack.sql(sql)
    if question not in MAY_BE_EMPTY:
        assert rows, f"no rows for {question!r}"
    for row in rows:
        _check_ranges(row)
        if "rep_id" in row and row["rep_id"] is not None:
            assert row["rep_id"] in data.reps, row
        if "local_date" in row:
            # a rep's day is local: east of Greenwich, between local and UTC midnight, the
            # live trail's day is already the day after the UTC date
            day = dt.date.fromisoformat(row["local_date"])
            assert data.days[0] <= day <= data.latest_local_date(), row
    CHECKS.get(question, lambda rows, data, stack: None)(rows, data, stack)


# -- answers re-derived here --------------------------------------------------------------
def _in_field_now(rows: list[dict[str, Any]], data: FieldData, stack: Stack) -> None:
    now = {r["rep_id"] for r in rows if r["in_field_now"]}
    assert now == set(data.live), (now, data.live)


def _reps_now(rows: list[dict[str, Any]], data: FieldData, stack: Stack) -> None:
    assert sum(int(r["reps_now"]) for r in rows) == len(data.live)


def _late(rows: list[dict[str, Any]], data: FieldData, stack: Stack) -> None:
    daily = stack.sql("SELECT rep_id, local_date, tz, toUnixTimestamp64Milli(workday_start) "
                      "AS ms FROM rep_daily WHERE workday_start IS NOT NULL")
    # "this week" is the store's today() (its own clock and zone), not this process's date
    week = dt.date.fromisoformat(str(stack.scalar("SELECT toString(today() - 6)")))
    expected = set()
    for d in daily:
        start = dt.datetime.fromtimestamp(int(d["ms"]) / 1000, ZoneInfo(d["tz"]))
        if start.time() > dt.time(9, 0, 59) and dt.date.fromisoformat(d["local_date"]) >= week:
            expected.add((d["rep_id"], d["local_date"]))
    assert {(r["rep_id"], r["local_date"]) for r in rows} == expected


def _start_end(rows: list[dict[str, Any]], data: FieldData, stack: Stack) -> None:
    assert {r["rep_id"] for r in rows} == set(data.reps)  # every simulated rep worked
    for r in rows:
        assert "06:00" <= r["started"][:5] <= "10:00", r  # simulated starts 07:30-08:45
        assert r["started"][:5] < r["finished"][:5], r


def _week(rows: list[dict[str, Any]], data: FieldData, stack: Stack) -> None:
    truth_visits: dict[str, int] = {}
    for t in data.sim.truth:
        truth_visits[t["rep_id"]] = truth_visits.get(t["rep_id"], 0) + len(t["visits"])
    for r in rows:
        assert r["field_h"] + 0.15 >= r["travel_h"] + r["at_customers_h"], r
        # simulated visits of the past days (+1 for a live visit today), within one a day
        assert abs(int(r["visits"]) - truth_visits[r["rep_id"]]) <= 3, (r, truth_visits)


def _deadletters(rows: list[dict[str, Any]], data: FieldData, stack: Stack) -> None:
    reasons = {r["reason"]: r for r in rows}
    assert reasons["too_late"]["source_topic"].endswith("telemetry.enriched")
    assert reasons["undecodable"]["source_topic"].endswith("telemetry.raw")


def _competitors(rows: list[dict[str, Any]], data: FieldData, stack: Stack) -> None:
    assert {r["competitor"] for r in rows} <= set(COMPETITORS)
    assert any(r["territory_id"] != "(unknown)" for r in rows)
    # every mention in the forms is counted once per visit
    forms = stack.scalar(
        "SELECT count() FROM visits WHERE local_date >= today() - 29 AND account_id IS NOT NULL"
        " AND (form['competitor_seen'] != ''"
        " OR arrayExists(t -> startsWith(t, 'competitor:'), tags))")
    assert sum(int(r["mentions"]) >= 1 for r in rows) >= 1
    assert sum(int(r["mentions"]) for r in rows) >= int(forms)


def _outcomes(rows: list[dict[str, Any]], data: FieldData, stack: Stack) -> None:
    assert abs(sum(float(r["pct"]) for r in rows) - 100.0) < 0.5
    assert "order_placed" in {r["outcome"] for r in rows}


def _coverage(rows: list[dict[str, Any]], data: FieldData, stack: Stack) -> None:
    customers = int(stack.scalar("SELECT count() FROM accounts WHERE kind = 'customer' "
                                 "AND territory_id IS NOT NULL"))
    assert customers > 0 and sum(int(r["accounts"]) for r in rows) == customers
    assert any(int(r["visited_last_30d"]) > 0 for r in rows)
    for r in rows:
        assert int(r["visited_last_30d"]) <= int(r["accounts"])
        assert r["territory_id"].startswith("T"), r


def _foreign(rows: list[dict[str, Any]], data: FieldData, stack: Stack) -> None:
    # rep_territories is the assignment of the territory set in use, and no entry counted
    # is into a territory of the rep's own
    assigned = {(r["rep_id"], r["territory_id"]) for r in stack.sql(
        "SELECT rep_id, territory_id FROM rep_territories")}
    assert assigned == {(rep, t) for rep in data.index.rep_ids()
                        for t in data.index.rep_profile(rep).territory_ids}
    for r in rows:
        assert r["territory_id"] not in data.index.rep_profile(r["rep_id"]).territory_ids, r
        assert int(r["entries"]) >= 1


CHECKS = {
    "Who is in the field right now, and where?": _in_field_now,
    "How many reps are in the field right now, per territory?": _reps_now,
    "Who started late this week (work day began after 09:00 local)?": _late,
    "When did each rep start and finish yesterday (local time)?": _start_end,
    "Field time, travel time and visits per rep this week": _week,
    "Dead letters by reason": _deadletters,
    "Competitor mentions by territory": _competitors,
    "Visit outcomes": _outcomes,
    "Territory coverage: share of the accounts visited in the last 30 days": _coverage,
    "Into which foreign territories did reps go?": _foreign,
}


def test_every_check_names_a_question() -> None:
    assert set(CHECKS) <= {q for q, _ in QUERIES}
