"""Off-duty windows and topic redaction: pure functions."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
import pytest

from processors.records import SegmentKind
from processors.transitions import Transition
from streams.privacy import (
    PrivacySettings,
    day_bounds,
    event_time_windows,
    in_windows,
    interval_is_off_duty,
    off_duty_windows,
    redact_segments_for_topic,
    redact_transitions_for_topic,
    redaction_statements,
    sql_str,
)
from tests.privacy.privacy_data import DAY, LAT, LON, TZ, local, seg, summary

BOUNDS = day_bounds(DAY, TZ)


def test_settings_defaults_and_validation() -> None:
    p = PrivacySettings()
    assert (p.off_duty_positions, p.coarsen_decimals, p.include_breaks, p.admin_token) == (
        "coarsen", 2, True, None)
    with pytest.raises(ValueError):
        PrivacySettings(off_duty_positions="blur")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PrivacySettings(coarsen_decimals=9)


def test_day_without_work_day_is_off_duty_whole() -> None:
    assert off_duty_windows(None, [], BOUNDS, True) == [BOUNDS]
    assert off_duty_windows(summary(), [], BOUNDS, True) == [BOUNDS]
    assert off_duty_windows(summary(start=local(8)), [], BOUNDS, True) == [BOUNDS]
    # an empty or inverted work day
    assert off_duty_windows(summary(start=local(9), end=local(9)), [], BOUNDS, True) == [BOUNDS]


def test_outside_work_day_and_breaks() -> None:
    s = summary(start=local(8), end=local(17))
    brk = seg(SegmentKind.break_, local(12), local(12, 30), lon=None, lat=None)
    assert off_duty_windows(s, [brk], BOUNDS, True) == [
        (BOUNDS[0], local(8)), (local(12), local(12, 30)), (local(17), BOUNDS[1])]
    assert off_duty_windows(s, [brk], BOUNDS, False) == [
        (BOUNDS[0], local(8)), (local(17), BOUNDS[1])]


def test_breaks_clipped_and_merged() -> None:
    s = summary(start=local(8), end=local(17))
    segs = [seg(SegmentKind.break_, local(7), local(8, 15)),  # overlaps the start
            seg(SegmentKind.break_, local(16, 50), local(18)),  # overlaps the end
            seg(SegmentKind.break_, local(12), local(12, 30)),
            seg(SegmentKind.break_, local(12, 30), local(13)),  # adjacent: merged
            seg(SegmentKind.stop, local(10), local(11))]  # not a break
    assert off_duty_windows(s, segs, BOUNDS, True) == [
        (BOUNDS[0], local(8, 15)), (local(12), local(13)), (local(16, 50), BOUNDS[1])]


def test_work_day_spanning_the_whole_day_leaves_only_breaks() -> None:
    s = summary(start=BOUNDS[0] - dt.timedelta(hours=1), end=BOUNDS[1])
    assert off_duty_windows(s, [], BOUNDS, True) == []


def test_dst_day_has_23_hours() -> None:
    lo, hi = day_bounds(dt.date(2026, 3, 29), TZ)
    assert hi - lo == dt.timedelta(hours=23)
    assert off_duty_windows(None, [], (lo, hi), True) == [(lo, hi)]


def test_interval_rule() -> None:
    w = [(local(17), BOUNDS[1])]
    assert interval_is_off_duty(local(18), local(19), w)
    assert not interval_is_off_duty(local(16, 40), local(17, 10), w)  # a third outside
    assert interval_is_off_duty(local(16, 50), local(17, 10), w)  # half outside
    assert interval_is_off_duty(local(17), local(17), w)  # an instant inside
    assert not interval_is_off_duty(local(16), local(16), w)
    assert in_windows(local(17), w) and not in_windows(BOUNDS[1], w)


def test_event_time_windows_move_work_day_not_day_bounds() -> None:
    s = summary(start=local(8), end=local(17), clock_offset_s=60.0)
    brk = seg(SegmentKind.break_, local(12), local(12, 30))
    assert event_time_windows(s, [brk], BOUNDS, True) == [
        (BOUNDS[0], local(7, 59)), (local(11, 59), local(12, 29)), (local(16, 59), BOUNDS[1])]
    assert event_time_windows(None, [], BOUNDS, True) == [BOUNDS]


def test_segments_for_topic() -> None:
    w = off_duty_windows(summary(start=local(8), end=local(17)), [], BOUNDS, True)
    home = seg(SegmentKind.stop, local(0), local(7, 50), place_id="home-1")
    visit = seg(SegmentKind.visit, local(9), local(10), place_id="acc-1")
    evening = seg(SegmentKind.visit, local(19), local(20), place_id="acc-2")
    out = redact_segments_for_topic([home, visit, evening], w, "coarsen", 2)
    assert (out[0].lat, out[0].lon) == (round(LAT, 2), round(LON, 2))
    assert (out[0].place_id, out[0].place_kind, out[0].place_distance_m) == (None, None, None)
    assert out[1] == visit
    assert out[2].place_id == "acc-2" and out[2].place_distance_m is None  # a visit keeps it
    assert out[2].lat == round(LAT, 2)
    dropped = redact_segments_for_topic([home, visit], w, "drop", 2)
    assert (dropped[0].lat, dropped[0].lon) == (None, None) and dropped[1] == visit
    assert redact_segments_for_topic([home], w, "keep", 2) == [home]
    assert redact_segments_for_topic([home], [], "coarsen", 2) == [home]


def _tr(kind: str, at: dt.datetime) -> Transition:
    return Transition(transition_id=uuid.uuid4(), rep_id="r1", local_date=DAY, kind=kind,
                      subject_id="T1" if kind.startswith("territory") else "acc-1", at=at,
                      lon=LON, lat=LAT, geo_version=1)


def test_transitions_for_topic() -> None:
    w = [(local(17), BOUNDS[1])]
    on = _tr("account_arrive", local(9))
    off_acc = _tr("account_arrive", local(19))
    off_ter = _tr("territory_enter", local(19))
    out = redact_transitions_for_topic([on, off_acc, off_ter], w, "coarsen", 2)
    assert out[0] == on and len(out) == 2
    assert (out[1].kind, out[1].lat) == (off_ter.kind, round(LAT, 2))
    assert redact_transitions_for_topic([off_ter], w, "drop", 2)[0].lat is None


def test_statements_escape_and_skip() -> None:
    w = [(local(17), BOUNDS[1])]
    assert redaction_statements("r1", w, "keep", 2) == []
    assert redaction_statements("r1", [], "coarsen", 2) == []
    stmts = redaction_statements("o'b\\x", w, "coarsen", 2)
    assert len(stmts) == 5 and all("rep_id = 'o\\'b\\\\x'" in s for s in stmts)
    assert sql_str("a'b") == "'a\\'b'"
    with pytest.raises(ValueError):
        redaction_statements("r1", [(dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))],
                             "drop", 2)


def test_open_day_rows_skips_closed_days() -> None:
    from streams.privacy import open_day_rows

    def row(t: dt.datetime, kind: str = "ping", started: dt.datetime | None = None) -> dict:
        return {"ts": t, "kind": kind, "started_at": started, "lat": LAT, "lon": LON}

    nxt = DAY + dt.timedelta(days=1)
    rows = [row(local(10)), row(local(23, 59)),
            row(local(9, day=nxt + dt.timedelta(days=1)), "visit_submission", local(9, day=nxt)),
            row(local(12, day=nxt + dt.timedelta(days=1)))]
    # watermark: DAY+2 12:00; DAY closes at DAY+1 00:00 + 36 h = DAY+2 12:00
    assert open_day_rows(rows, TZ, 36 * 3600) == rows[2:]
    assert open_day_rows(rows, TZ, 36 * 3600 + 1) == rows
    assert open_day_rows([], TZ, 10) == []
    # a ping whose position `drop` removed belongs to a closed day (and is no valid event)
    dropped = {"ts": local(12, day=nxt + dt.timedelta(days=1)), "kind": "ping",
               "started_at": None}
    assert open_day_rows([*rows, dropped], TZ, 36 * 3600 + 1) == rows


def test_payload_of_an_event_that_never_counts_is_coarsened() -> None:
    from streams.privacy import redact_payload

    doc = {"kind": "visit_submission", "lat": 52.512345, "lon": 13.398765, "accuracy_m": 5.0,
           "position": {"lat": 1.234567, "lon": 2.345678},
           "photos": [{"photo_id": "p", "position": {"lat": 3.456789, "lon": 4.567891}}]}
    out = orjson.loads(redact_payload(orjson.dumps(doc), "coarsen", 2))
    assert (out["lat"], out["lon"], out["accuracy_m"]) == (52.51, 13.4, None)
    assert out["position"] == {"lat": 1.23, "lon": 2.35}
    assert out["photos"][0]["position"] == {"lat": 3.46, "lon": 4.57}
    dropped = orjson.loads(redact_payload(orjson.dumps(doc), "drop", 2))
    assert dropped["lat"] is None and dropped["photos"][0]["position"]["lat"] is None
    assert redact_payload(b"not json", "coarsen", 2) == b"not json"
    assert redact_payload(orjson.dumps(doc), "keep", 2) == orjson.dumps(doc)
