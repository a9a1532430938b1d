"""The live map's status rules (pure) and its data endpoint against simulated reps: the live
reps get the status they act out, and replayed instants of yesterday agree with the
simulator's ground truth."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest

from streams.map import MapParams, RepFacts, parse_at, rep_status
from tests.analysts.fielddata import FieldData
from tests.conftest import Stack

T = dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


@pytest.mark.parametrize(("facts", "status"), [
    (RepFacts(), "off_duty"),
    (RepFacts(fix_ts=T - 30 * MIN), "off_duty"),  # stale
    (RepFacts(fix_ts=T - MIN, day_action="workday_end"), "off_duty"),
    (RepFacts(fix_ts=T - MIN, workday_start=T + 10 * MIN), "off_duty"),
    (RepFacts(fix_ts=T - MIN, workday_end=T - 5 * MIN, workday_end_inferred=False), "off_duty"),
    (RepFacts(fix_ts=T - MIN, workday_end=T - 5 * MIN, workday_end_inferred=True), "stopped"),
    (RepFacts(fix_ts=T - MIN, moved_m=400.0), "travelling"),
    (RepFacts(fix_ts=T - MIN, speed_mps=12.0), "travelling"),
    (RepFacts(fix_ts=T - MIN, visit_action="visit_start", visit_action_ts=T - 2 * MIN,
              moved_m=400.0), "visiting"),  # the drive in is still in the motion window
    (RepFacts(fix_ts=T - MIN, visit_action="visit_start", visit_action_ts=T - 40 * MIN,
              moved_m=400.0), "travelling"),  # left without checking out
    (RepFacts(fix_ts=T - MIN, visit_action="visit_end", visit_action_ts=T - 2 * MIN),
     "stopped"),
    (RepFacts(fix_ts=T - MIN, visit_segment_end=T - 2 * MIN), "visiting"),  # auto visit
    (RepFacts(fix_ts=T - MIN, break_action="break_start"), "stopped"),
])
def test_rep_status_rules(facts: RepFacts, status: str) -> None:
    assert rep_status(facts, T, MapParams()) == status


def test_parse_at() -> None:
    assert parse_at(None) is None and parse_at("now") is None
    assert parse_at("2026-11-02T10:00:00Z") == T
    assert parse_at("2026-11-02T11:00:00+01:00") == T
    assert parse_at("2026-11-02T10:00:00") == T  # naive is UTC


def _truth_status(rec: dict[str, Any], t: dt.datetime) -> str:
    def p(s: str) -> dt.datetime:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))

    if t < p(rec["workday_start"]) or t >= p(rec["workday_end"]):
        return "off_duty"
    for s in rec["stops"]:
        if p(s["start"]) <= t < p(s["end"]):
            return "visiting" if s["kind"] == "visit" else "stopped"
    return "travelling"


@pytest.mark.integration
def test_live_reps_have_the_status_they_act_out(mapstack: tuple[Stack, FieldData]) -> None:
    stack, data = mapstack
    body = stack.http.get("/v1/map.json").json()
    reps = {r["rep_id"]: r for r in body["reps"]}
    for rep, mode in data.live.items():
        assert reps[rep]["status"] == mode, reps[rep]
        # the trail's last fix is at data.now: its age is the time since (a busy machine
        # can take minutes between the upload and this request)
        since = (dt.datetime.now(dt.UTC) - data.now).total_seconds()
        assert 0 <= reps[rep]["last_fix_age_s"] <= since + 5, (reps[rep], since)
        assert reps[rep]["territory_id"] is not None  # the index knows where they are
        assert 0 < reps[rep]["field_minutes"] <= 30
    # the others worked yesterday: off duty now, drawn at their last position
    for rep in set(data.reps) - set(data.live):
        assert reps[rep]["status"] == "off_duty"
        assert reps[rep]["lon"] is not None and reps[rep]["field_minutes"] == 0
    counts = body["counts"]
    assert counts["status"] == {"visiting": 1, "travelling": 1, "stopped": 1,
                                "off_duty": len(data.reps) - 3}
    assert sum(counts["territory"].values()) == 3
    feats = body["territories"]["features"]
    assert len(feats) == data.index.n_territories
    assert sum(f["properties"]["reps_now"] for f in feats) == 3
    assert all(f["geometry"]["type"] in ("Polygon", "MultiPolygon") for f in feats)
    # the page polls without outlines once it has them
    assert stack.http.get("/v1/map.json?territories=0").json()["territories"] is None
    assert stack.http.get("/v1/map.json?at=yesterday").status_code == 400


@pytest.mark.integration
def test_replayed_statuses_agree_with_the_ground_truth(mapstack: tuple[Stack, FieldData]
                                                       ) -> None:
    stack, data = mapstack
    day = data.days[0]
    agree: Counter[bool] = Counter()
    seen: Counter[str] = Counter()
    for minute in range(6 * 60, 17 * 60, 15):
        t = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), dt.UTC)
        body = stack.http.get("/v1/map.json", params={"at": t.isoformat(),
                                                      "territories": "0"}).json()
        got = {r["rep_id"]: r["status"] for r in body["reps"]}
        for rec in data.sim.truth:
            expected = _truth_status(rec, t)
            agree[got.get(rec["rep_id"], "off_duty") == expected] += 1
            seen[expected] += 1
    share = agree[True] / sum(agree.values())
    assert share >= 0.85, (share, agree)
    assert all(seen[s] > 0 for s in ("visiting", "travelling", "stopped", "off_duty"))
