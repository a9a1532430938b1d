"""Redaction at scale (many rep-days, few mutations) and the sweep of closed rep-days that
were never redacted, on a real chDB store."""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from typing import Any

import pytest

from processors.records import SegmentKind
from processors.transitions import Transition
from schemas.derived import Enrichment
from schemas.events import Ping
from sinks.migrations import migrate
from streams.privacy import (
    MUTATION_SETTINGS,
    SEGMENT_TABLES,
    TRANSITION_TABLES,
    PrivacySettings,
    closed_watermarks,
    redact_closed_days,
    redact_rep_days,
    redaction_statements,
    sweep_closed_days,
    unredacted_closed_days,
)
from tests.conftest import sized
from tests.privacy.privacy_data import (
    DAY,
    LAT,
    LON,
    TZ,
    insert_day,
    insert_events,
    local,
    seg,
    summary,
)

pytestmark = pytest.mark.integration
LONG_AGO = PrivacySettings(sweep_lookback_days=3660)  # DAY is a fixed date in the past


def _day_pings(rep: str, day: dt.date, every_min: int) -> list[tuple[Ping, Enrichment]]:
    out = []
    t, end = local(0, day=day), local(0, day=day + dt.timedelta(days=1))
    i = 0
    while t < end:
        p = Ping(event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{rep}|{day}|{i}"),
                 device_id=f"dev-{rep}", rep_id=rep, ts=t, received_at=t,
                 lat=LAT + i * 1e-5, lon=LON + i * 1e-5, accuracy_m=8.0, speed_mps=1.5)
        out.append((p, Enrichment(territory_id="T1", account_id=None,
                                  account_distance_m=None, geo_version=1)))
        t += dt.timedelta(minutes=every_min)
        i += 1
    return out


def _tr(rep: str, kind: str, at: dt.datetime) -> Transition:
    return Transition(transition_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{rep}{kind}{at}"),
                      rep_id=rep, local_date=DAY, kind=kind,
                      subject_id="T1" if kind.startswith("territory") else "acc-1", at=at,
                      lon=LON, lat=LAT, geo_version=1, version=48)


def _store_reps(ch: Any, n: int, every_min: int = 60) -> list[str]:
    """``n`` reps with one stored day each: work days of varied length, a break for every
    third rep, a day without summary for every seventh, two transitions each."""
    reps = [f"rep-{i:04d}" for i in range(n)]
    evs: list[tuple[Ping, Enrichment]] = []
    for i, rep in enumerate(reps):
        evs += _day_pings(rep, DAY, every_min)
        if i % 7 == 6:
            continue  # no summary: the whole day is off duty
        segs = [seg(SegmentKind.stop, local(0), local(7, 30), rep=rep, place_id="home-1"),
                seg(SegmentKind.visit, local(9), local(10), rep=rep, place_id="acc-1")]
        if i % 3 == 0:
            segs.append(seg(SegmentKind.break_, local(12), local(12, 45), rep=rep,
                            lon=None, lat=None))
        insert_day(ch, summary(rep, start=local(7 + i % 3), end=local(16 + i % 4)), segs,
                   [_tr(rep, "territory_enter", local(6, 30)),
                    _tr(rep, "account_arrive", local(21))])
    insert_events(ch, evs)
    return reps


def _snapshot(ch: Any) -> tuple[list[Any], ...]:
    return (
        ch.query("SELECT rep_id, ts, lat, lon, accuracy_m, speed_mps FROM events_all "
                 "ORDER BY rep_id, ts").result_rows,
        ch.query("SELECT rep_id, start, lat, lon, place_id, place_distance_m FROM segments_all "
                 "ORDER BY rep_id, start").result_rows,
        ch.query("SELECT rep_id, kind, at, lat FROM transitions_all ORDER BY rep_id, at"
                 ).result_rows,
        ch.query("SELECT rep_id, ts, lat, lon FROM rep_last_position ORDER BY rep_id"
                 ).result_rows,
    )


def _mutations(ch: Any) -> int:
    return int(ch.command("SELECT count() FROM system.mutations "
                          "WHERE database = currentDatabase()"))


def test_batched_redaction_equals_one_rep_at_a_time(ch: Any) -> None:
    """The batched statements change exactly what the per-rep statements change."""
    migrate(ch)
    reps = _store_reps(ch, 12, every_min=20)
    before = _snapshot(ch)
    # the per-rep way (one statement per table and rep), on a copy of the tables
    from streams.privacy import closed_day_windows

    priv = PrivacySettings()
    per_rep_stmts = []
    for rep in reps:
        w = closed_day_windows(ch, rep, TZ, [DAY], priv.include_breaks)[DAY]
        per_rep_stmts.append(redaction_statements(rep, w[0], "coarsen", 2,
                                                  event_windows=w[1]))
    # batched, with a small statement size so several batches are needed
    n0 = _mutations(ch)
    statements = redact_rep_days(ch, {r: (TZ, [DAY]) for r in reps}, priv, max_chars=6_000)
    batched = _snapshot(ch)
    assert batched != before
    assert _mutations(ch) - n0 <= statements < 4 * len(reps)
    # undo-free comparison: apply the per-rep statements to the redacted store: nothing
    # changes (idempotent), and the per-rep statements alone on a fresh store give the same
    for stmts in per_rep_stmts:
        for sql in stmts:
            ch.command(sql, settings=MUTATION_SETTINGS)
    assert _snapshot(ch)[:3] == batched[:3]


def test_per_rep_statements_alone_give_the_batched_result(ch: Any) -> None:
    migrate(ch)
    reps = _store_reps(ch, 12, every_min=20)
    from streams.privacy import closed_day_windows

    for rep in reps:
        w = closed_day_windows(ch, rep, TZ, [DAY], True)[DAY]
        for sql in redaction_statements(rep, w[0], "coarsen", 2, event_windows=w[1]):
            ch.command(sql, settings=MUTATION_SETTINGS)
    per_rep = _snapshot(ch)[:3]
    redact_rep_days(ch, {r: (TZ, [DAY]) for r in reps}, PrivacySettings(), max_chars=6_000)
    assert _snapshot(ch)[:3] == per_rep  # the batch finds nothing left to change


@pytest.mark.long
def test_a_thousand_rep_days_take_a_bounded_number_of_mutations(ch: Any) -> None:
    n = sized(1000, 300)  # rep-days: 1,000 under `make test-slow`
    migrate(ch)
    reps = _store_reps(ch, n)
    n0 = _mutations(ch)
    t0 = time.monotonic()
    redact_rep_days(ch, {r: (TZ, [DAY]) for r in reps}, PrivacySettings())
    took = time.monotonic() - t0
    mutations = _mutations(ch) - n0
    # one statement per table for up to ~100 rep-days (200 kB of SQL), against 4-6 per
    # rep-day one at a time (60 for 1,000 rep-days)
    assert mutations <= 6 * math.ceil(n / 100), mutations
    print(f"RESULT batched_redaction rep_days={n} mutations={mutations} seconds={took:.1f}")
    off = ch.command("SELECT countIf(accuracy_m IS NOT NULL AND (toHour(ts, 'Europe/Berlin') < 6 "
                     "OR toHour(ts, 'Europe/Berlin') >= 21)) FROM events_all")
    assert off == 0  # off duty for every work day above
    on = ch.command("SELECT countIf(accuracy_m IS NOT NULL) FROM events_all "
                    "WHERE toHour(ts, 'Europe/Berlin') = 10")
    assert on == n - n // 7  # 10:00 is on duty wherever there is a work day
    assert ch.command("SELECT count() FROM closed_rep_days FINAL") == n
    assert set(closed_watermarks(ch, reps[:5])) == set(reps[:5])


def test_sweep_redacts_closed_days_that_were_never_redacted(ch: Any) -> None:
    migrate(ch)
    # s1: a later ping moved its own watermark past DAY's end + 36 h; s2: idle since DAY;
    # s3: closed and redacted at close already
    for rep in ("s1", "s2", "s3"):
        insert_events(ch, _day_pings(rep, DAY, 30))
        insert_day(ch, summary(rep, start=local(8), end=local(17)), [])
    later = _day_pings("s1", DAY + dt.timedelta(days=2), 60)[13:14]  # DAY+2 13:00
    insert_events(ch, later)
    assert redact_closed_days(ch, "s3", TZ, [DAY], LONG_AGO) > 0
    full = "SELECT countIf(accuracy_m IS NOT NULL) FROM events_all WHERE rep_id = '{}'"
    assert [ch.command(full.format(r)) for r in ("s1", "s2", "s3")] == [48 + 1, 48, 18]

    found = unredacted_closed_days(ch, LONG_AGO, 36 * 3600)
    assert set(found) == {"s1"} and found["s1"][1] == [DAY]
    n0 = _mutations(ch)
    assert sweep_closed_days(ch, LONG_AGO, 36 * 3600)[0] == 1
    seg_tables = len(SEGMENT_TABLES)
    # events, photos, segments (each table), transitions x2 (each table), and the delete
    # of the rep's last-position rollup row (rebuilt: no exact off-duty state stays)
    assert _mutations(ch) - n0 == 3 + seg_tables + 2 * len(TRANSITION_TABLES)
    assert ch.command(full.format("s1")) == 18 + 1
    assert ch.command(full.format("s2")) == 48  # not closed by its own watermark

    # the session stage's idle clock closes s2's day (late events can no longer be taken)
    clock = {r: local(0, day=DAY + dt.timedelta(days=3)) for r in ("s2", "s3")}
    days, _ = sweep_closed_days(ch, LONG_AGO, 36 * 3600, clock=clock.get)
    assert days == 1 and ch.command(full.format("s2")) == 18
    assert closed_watermarks(ch, ["s2"])["s2"] == clock["s2"]
    # a rep a session stage holds open is left to the stage
    assert sweep_closed_days(ch, LONG_AGO, 36 * 3600, clock=clock.get,
                             skip=lambda r: True) == (0, 0)

    # idempotent: nothing left, nothing run
    n1 = _mutations(ch)
    assert sweep_closed_days(ch, LONG_AGO, 36 * 3600, clock=clock.get) == (0, 0)
    assert _mutations(ch) == n1
    # a stricter mode later: days redacted in a weaker one are swept again
    drop = PrivacySettings(off_duty_positions="drop", sweep_lookback_days=3660)
    assert sweep_closed_days(ch, drop, 36 * 3600, clock=clock.get)[0] == 3
    assert ch.command("SELECT countIf(lat IS NULL) FROM events_all") == 3 * 30
    assert sweep_closed_days(ch, drop, 36 * 3600, clock=clock.get) == (0, 0)
