"""Redaction statements on a real chDB store: only off-duty positions of the rep change."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import pytest

from processors.records import SegmentKind
from processors.transitions import Transition
from sinks.migrations import migrate
from streams.privacy import (
    MUTATION_SETTINGS,
    SEGMENT_TABLES,
    TRANSITION_TABLES,
    PrivacySettings,
    day_bounds,
    interval_is_off_duty,
    off_duty_windows,
    redact_closed_days,
    redaction_statements,
)
from tests.privacy.privacy_data import (
    DAY,
    LAT,
    LON,
    TZ,
    insert_day,
    insert_events,
    local,
    pings,
    seg,
    summary,
)

pytestmark = pytest.mark.integration
BOUNDS = day_bounds(DAY, TZ)


def _tr(kind: str, at: dt.datetime, rep: str = "r1") -> Transition:
    return Transition(transition_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{rep}{kind}{at}"),
                      rep_id=rep, local_date=DAY, kind=kind,
                      subject_id="T1" if kind.startswith("territory") else "acc-1", at=at,
                      lon=LON, lat=LAT, geo_version=1, version=48)


def _store(ch: Any) -> None:
    migrate(ch)
    for rep in ("r1", "r2"):
        evs = pings(rep)
        insert_events(ch, evs)
        insert_events(ch, evs[:10])  # a resend, not merged yet: both copies are redacted
        day = summary(rep, start=local(8), end=local(17))
        insert_day(ch, day, [
            seg(SegmentKind.stop, local(0), local(7, 50), rep=rep, place_id="home-1"),
            seg(SegmentKind.visit, local(9), local(10), rep=rep, place_id="acc-1"),
            seg(SegmentKind.break_, local(12), local(12, 30), rep=rep, lon=None, lat=None),
            seg(SegmentKind.stop, local(17, 30), local(23), rep=rep, place_id="home-1"),
        ], [_tr("territory_enter", local(7, 55), rep), _tr("account_arrive", local(9), rep),
            _tr("account_arrive", local(20), rep)])


def _events(ch: Any, table: str = "events") -> list[tuple[Any, ...]]:
    return ch.query(f"SELECT rep_id, ts, lat, lon, accuracy_m, speed_mps, heading_deg, "
                    f"altitude_m, territory_id, geo_account_id, geo_account_distance_m "
                    f"FROM {table} ORDER BY rep_id, ts, received_at").result_rows


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _off(t: dt.datetime) -> bool:
    return not (local(8) <= _utc(t) < local(17)) or local(12) <= _utc(t) < local(12, 30)


def test_coarsen_redacts_only_the_reps_off_duty_positions(ch: Any) -> None:
    _store(ch)
    before = _events(ch, "events_all")
    seg_tables = len(SEGMENT_TABLES)  # segments_all and the current-version tables
    # events, photos, segments (every segments table), 2 on each transitions table, + last
    # position (2)
    assert redact_closed_days(ch, "r1", TZ, [DAY], PrivacySettings()) == (
        4 + seg_tables + 2 * len(TRANSITION_TABLES))
    after = _events(ch, "events_all")
    assert len(after) == len(before)
    changed = 0
    for b, a in zip(before, after, strict=True):
        assert a[:2] == b[:2] and a[8] == "T1"  # same row, territory kept
        if b[0] == "r1" and _off(b[1]):
            changed += 1
            assert (a[2], a[3]) == (round(b[2], 2), round(b[3], 2))
            assert a[4:8] == (None, None, None, None) and a[9:] == (None, None)
        else:
            assert a == b
    assert changed == 16 + 14 + 1 + 10  # before 8:00, 17:00-24:00, the break, resends

    # the FINAL view agrees with the table: one row per event, the redacted values
    final = _events(ch)
    assert len(final) == 2 * 48
    assert {r for r in final} == {r for r in after}

    r1 = ch.query("SELECT kind, lat, place_id, lon, place_distance_m FROM segments "
                  "WHERE rep_id = 'r1' ORDER BY start").result_rows
    assert [r[0] for r in r1] == ["stop", "visit", "break", "stop"]
    assert r1[0][1:] == (round(LAT, 2), None, round(LON, 2), None)  # home at night
    assert r1[1][1:3] == (LAT, "acc-1")  # the on-duty visit is untouched
    assert r1[3][1:3] == (round(LAT, 2), None)
    r2 = ch.query("SELECT lat FROM segments WHERE rep_id = 'r2' AND lat IS NOT NULL"
                  ).result_rows
    assert {r[0] for r in r2} == {LAT}

    trs = ch.query("SELECT rep_id, kind, toHour(at, 'Europe/Berlin'), lat FROM transitions "
                   "ORDER BY rep_id, at").result_rows
    assert trs == [("r1", "territory_enter", 7, round(LAT, 2)),
                   ("r1", "account_arrive", 9, LAT),
                   ("r2", "territory_enter", 7, LAT), ("r2", "account_arrive", 9, LAT),
                   ("r2", "account_arrive", 20, LAT)]

    # the rep's latest ping (23:30, off duty) no longer shows at full precision
    last = dict(ch.query("SELECT rep_id, (lat, lon) FROM rep_last_position").result_rows)
    assert last["r1"] == (round(LAT + 47e-5, 2), round(LON + 47e-5, 2))
    assert last["r2"][0] == LAT + 47e-5

    # idempotent
    redact_closed_days(ch, "r1", TZ, [DAY], PrivacySettings())
    assert _events(ch, "events_all") == after


def test_drop_keeps_the_territory_and_an_on_duty_last_position(ch: Any) -> None:
    _store(ch)
    redact_closed_days(ch, "r1", TZ, [DAY], PrivacySettings(off_duty_positions="drop",
                                                           include_breaks=False))
    rows = _events(ch)
    for r in rows:
        if r[0] == "r1" and not (local(8) <= _utc(r[1]) < local(17)):
            assert (r[2], r[3], r[4], r[8]) == (None, None, None, "T1")
        else:
            assert r[2] is not None
    last = ch.query("SELECT ts, lat FROM rep_last_position WHERE rep_id = 'r1'").result_rows
    assert _utc(last[0][0]) == local(16, 30) and last[0][1] is not None
    # territory rollup untouched: the same pings per hour
    assert ch.command("SELECT sum(pings) FROM territory_hourly") == 96


def test_keep_changes_nothing(ch: Any) -> None:
    _store(ch)
    before = _events(ch, "events_all")
    assert redact_closed_days(ch, "r1", TZ, [DAY], PrivacySettings(off_duty_positions="keep")) == 0
    assert _events(ch, "events_all") == before


def test_day_without_summary_is_redacted_whole(ch: Any) -> None:
    migrate(ch)
    insert_events(ch, pings("r3"))
    redact_closed_days(ch, "r3", TZ, [DAY], PrivacySettings())
    assert ch.command("SELECT countIf(accuracy_m IS NOT NULL) FROM events") == 0


def test_clock_offset_shifts_event_windows(ch: Any) -> None:
    migrate(ch)
    insert_events(ch, pings("r4"))
    # the phone ran 30 min slow: corrected time = ts + 1800 s, so the 17:00 corrected end
    # of the work day is ts 16:30
    insert_day(ch, summary("r4", start=local(8), end=local(17), clock_offset_s=1800.0), [])
    redact_closed_days(ch, "r4", TZ, [DAY], PrivacySettings())
    kept = [_utc(r[0]) for r in ch.query("SELECT ts FROM events WHERE accuracy_m IS NOT NULL "
                                         "ORDER BY ts").result_rows]
    assert kept[0] == local(7, 30) and kept[-1] == local(16)


def test_sql_interval_rule_matches_python(ch: Any) -> None:
    migrate(ch)
    rng = random.Random(5)
    w = off_duty_windows(summary(start=local(8), end=local(17)),
                         [seg(SegmentKind.break_, local(12), local(12, 30))], BOUNDS, True)
    segs = []
    for _ in range(300):
        a = BOUNDS[0] + dt.timedelta(minutes=rng.randrange(0, 24 * 60))
        b = a + dt.timedelta(minutes=rng.choice([0, 1, 5, 30, 90, 400]))
        segs.append(seg(SegmentKind.stop, a, min(b, BOUNDS[1]), rep="r5"))
    segs = list({s.segment_id: s for s in segs}.values())
    insert_day(ch, summary("r5"), segs)
    for sql in redaction_statements("r5", w, "drop", 2):
        ch.command(sql, settings=MUTATION_SETTINGS)
    got = {str(r[0]) for r in ch.query("SELECT segment_id FROM segments_all "
                                       "WHERE lat IS NULL").result_rows}
    want = {str(s.segment_id) for s in segs if interval_is_off_duty(s.start, s.end, w)}
    assert got == want and 0 < len(want) < len(segs)
