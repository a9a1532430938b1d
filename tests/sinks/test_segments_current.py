"""segments_current (migration 4) and visits_current (migration 6): the segments and visits
views show the current segment of each id, with retracted ids gone, without merged parts,
visits with the form facts their segment carries, and a populated store is backfilled."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from processors.records import RepDay, Segment, SegmentKind, VisitSource, day_id, segment_id
from schemas.events import VisitOutcome
from sinks.migrations import MIGRATIONS, migrate
from sinks.rows import (
    REP_DAILY_COLUMN_NAMES,
    SEGMENT_COLUMN_NAMES,
    SEGMENT_CURRENT_COLUMN_NAMES,
    model_rows,
    segment_current_rows,
)
from sinks.writer import ClickHouseWriter

pytestmark = pytest.mark.integration
REP = "rep-1"
DAY = dt.date(2026, 11, 2)
T0 = dt.datetime(2026, 11, 2, 7, tzinfo=dt.UTC)
FORM = uuid.UUID("00000000-0000-4000-8000-000000000001")


def seg(kind: SegmentKind, start_min: int, version: int, day: dt.date = DAY,
        key: str = "", **facts: Any) -> Segment:
    start = T0 + dt.timedelta(minutes=start_min) + (day - DAY)
    visit = kind is SegmentKind.visit
    facts = {"outcome": VisitOutcome.order_placed, "tags": ("x",), **facts} if visit else {}
    return Segment(segment_id=segment_id(REP, day, kind.value, start, key), rep_id=REP,
                   local_date=day, kind=kind, start=start, end=start + dt.timedelta(minutes=20),
                   duration_s=1200.0, workday_s=1200.0, lon=13.4, lat=52.5,
                   place_id="A1" if visit else None,
                   visit_source=VisitSource.check_in if visit else None,
                   verified=True if visit else None,
                   submission_event_id=FORM if visit else None, version=version, **facts)


def update(version: int, segments: list[Segment], retracted: Sequence[Segment] = (),
           day: dt.date = DAY) -> Any:
    return SimpleNamespace(rep_id=REP, local_date=day, version=version,
                           segments=tuple(s.model_copy(update={"version": version})
                                          for s in segments),
                           retracted=tuple(s.segment_id for s in retracted))


def summary(version: int, day: dt.date = DAY) -> RepDay:
    return RepDay(day_id=day_id(REP, day), rep_id=REP, local_date=day, tz="UTC",
                  workday_start=None, workday_end=None, workday_start_inferred=False,
                  workday_end_inferred=False, workday_s=0, field_s=0, travel_s=0,
                  customer_s=0, stopped_other_s=0, unknown_s=0, break_s=0, office_home_s=0,
                  in_territory_s=0, out_territory_s=0, distance_m=0, visits=0,
                  verified_visits=0, unverified_visits=0, auto_visits=0, pings_kept=0,
                  pings_dropped={}, clock_offset_s=0, events=version, version=version)


def ids(ch: Any, sql: str) -> set[uuid.UUID]:
    return {uuid.UUID(str(r[0])) for r in ch.query(sql).result_rows}


def schema(ch: Any) -> list[tuple[Any, ...]]:
    return list(ch.query("SELECT name, create_table_query FROM system.tables "
                         "WHERE database = currentDatabase() ORDER BY name").result_rows)


def test_segment_current_rows_carry_tombstones_at_the_derivation_version() -> None:
    a, b = seg(SegmentKind.stop, 0, 1), seg(SegmentKind.travel, 20, 1)
    rows = segment_current_rows([update(7, [a], retracted=[b])])
    assert len(rows) == 2 and all(len(r) == len(SEGMENT_CURRENT_COLUMN_NAMES) for r in rows)
    col = {n: i for i, n in enumerate(SEGMENT_CURRENT_COLUMN_NAMES)}
    live, tomb = rows
    assert (live[col["segment_id"]], live[col["version"]], live[col["is_deleted"]]) == (
        a.segment_id, 7, 0)
    assert (tomb[col["segment_id"]], tomb[col["rep_id"]], tomb[col["local_date"]],
            tomb[col["version"]], tomb[col["is_deleted"]]) == (b.segment_id, REP, DAY, 7, 1)
    # A visit row carries its form, the values as text as in visit_forms.
    v = seg(SegmentKind.visit, 40, 1, order_currency="EUR", order_total=Decimal("12.5"),
            form={"n": 3, "ok": True, "needs": ["a"]}, notes="hi", photo_count=2)
    (row,) = segment_current_rows([update(7, [v])])
    assert {c: row[col[c]] for c in ("outcome", "order_currency", "order_total", "tags", "form",
                                     "notes", "photo_count", "is_deleted")} == {
        "outcome": "order_placed", "order_currency": "EUR", "order_total": Decimal("12.5"),
        "tags": ["x"], "form": {"n": "3", "ok": "true", "needs": '["a"]'}, "notes": "hi",
        "photo_count": 2, "is_deleted": 0}


def test_migrations_run_twice_on_empty_and_backfill_a_populated_store(ch: Any) -> None:
    # A store created before migration 4, holding two derivations of a day.
    assert migrate(ch, [m for m in MIGRATIONS if m.version < 4]) == [1, 2, 3]
    a, b, c = (seg(SegmentKind.stop, 0, 0), seg(SegmentKind.travel, 20, 0),
               seg(SegmentKind.visit, 40, 0))
    moved = seg(SegmentKind.travel, 25, 0)
    no_form = seg(SegmentKind.visit, 60, 0).model_copy(update={"submission_event_id": None})
    ch.command("INSERT INTO visit_forms (event_id, rep_id, account_id, visit_id, started_at, "
               "ended_at, outcome, tags, order_currency, order_total) VALUES "
               f"('{FORM}', '{REP}', 'A1', 'v1', now64(3), now64(3), 'order_placed', ['x'], "
               "'EUR', 12.5)")
    for version, segs in ((3, [a, b, c]), (5, [a, moved, c, no_form])):
        ch.insert("segments_all", model_rows(update(version, segs).segments,
                                             SEGMENT_COLUMN_NAMES),
                  column_names=SEGMENT_COLUMN_NAMES, settings={"async_insert": 0})
        ch.insert("rep_daily_all", model_rows([summary(version)], REP_DAILY_COLUMN_NAMES),
                  column_names=REP_DAILY_COLUMN_NAMES, settings={"async_insert": 0})
    current = {a.segment_id, moved.segment_id, c.segment_id, no_form.segment_id}
    assert ids(ch, "SELECT segment_id FROM segments") == current
    assert migrate(ch) == [m.version for m in MIGRATIONS if m.version >= 4]
    assert ids(ch, "SELECT segment_id FROM segments") == current
    # The backfill of visits_current joined the form of the visit that has one.
    rows = ch.query("SELECT segment_id, outcome, tags, order_currency, toString(order_total) "
                    "FROM visits ORDER BY start").result_rows
    assert [(uuid.UUID(str(r[0])), *r[1:]) for r in rows] == [
        (c.segment_id, "order_placed", ["x"], "EUR", "12.5"),
        (no_form.segment_id, None, [], None, None)]
    assert ch.command("SELECT count() FROM segments_current") == 4
    assert ch.command("SELECT count() FROM visits_current") == 2
    assert ch.command("SELECT uniqExact(version) FROM segments") == 1
    tables = schema(ch)
    assert migrate(ch) == []
    assert schema(ch) == tables
    assert ch.command("SELECT count() FROM segments_current") == 4
    # Both views keep the columns analysts query.
    seg_cols = [r[0] for r in ch.query("DESCRIBE TABLE segments").result_rows]
    assert seg_cols == SEGMENT_COLUMN_NAMES
    vis_cols = {r[0] for r in ch.query("DESCRIBE TABLE visits").result_rows}
    assert {"account_id", "source", "verified", "outcome", "tags", "form"} <= vis_cols


def test_empty_store_migrates_once(ch: Any) -> None:
    assert migrate(ch) == [m.version for m in MIGRATIONS]
    tables = schema(ch)
    assert migrate(ch) == []
    assert schema(ch) == tables
    assert ch.command("SELECT count() FROM segments") == 0


def test_unmerged_derivations_with_retractions_show_only_the_current_segments(ch: Any) -> None:
    migrate(ch)
    for table in ("segments_current", "visits_current"):
        ch.command(f"SYSTEM STOP MERGES {table}")
    stop, travel, prov = (seg(SegmentKind.stop, 0, 0), seg(SegmentKind.travel, 20, 0),
                          seg(SegmentKind.stop, 40, 0))
    visit = seg(SegmentKind.visit, 40, 0, key="A1")
    # A later submission edits the form (same visit id, new facts).
    edited = visit.model_copy(update={"outcome": VisitOutcome.follow_up, "tags": (),
                                      "form": {"competitor_seen": "Acme"},
                                      "order_currency": "EUR", "order_total": Decimal("7.25")})
    wrong = seg(SegmentKind.visit, 100, 0, key="A2")  # a visit a later derivation drops
    moved = seg(SegmentKind.travel, 22, 0)
    other_day = seg(SegmentKind.stop, 0, 0, day=DAY + dt.timedelta(days=1))
    other_visit = seg(SegmentKind.visit, 30, 0, day=DAY + dt.timedelta(days=1), key="A1")
    derivations = [
        update(2, [stop, travel, prov]),
        update(4, [stop, travel, visit, wrong], retracted=[prov]),  # the stop became a visit
        update(6, [stop, moved, edited], retracted=[travel, wrong]),  # a late fix, a new form
        update(6, [stop, moved, edited], retracted=[travel, wrong]),  # a rebuilt state
        update(8, [stop, moved, edited, prov]),  # an id retracted earlier comes back
        update(3, [other_day, other_visit], day=other_day.local_date),
    ]
    w = ClickHouseWriter(ch)
    for i, u in enumerate(derivations):  # one insert (one part) per derivation
        w.add_batch("segments_current", SEGMENT_CURRENT_COLUMN_NAMES, segment_current_rows([u]),
                    {("sessions", 0): (i, i)})
        w.flush()
    for table in ("segments_current", "visits_current"):
        parts = ch.command("SELECT count() FROM system.parts WHERE database = currentDatabase() "
                           f"AND table = '{table}' AND active")
        assert parts >= len(derivations) - 1  # nothing merged (an identical re-insert may fold)
    # visits_current holds the visits and the tombstones only.
    assert ch.command("SELECT countIf(is_deleted = 0 AND kind != 'visit') FROM visits_current"
                      ) == 0

    def visits() -> list[tuple[Any, ...]]:
        rows = ch.query("SELECT segment_id, local_date, account_id, outcome, tags, form, "
                        "order_currency, toString(order_total) FROM visits "
                        "ORDER BY local_date, start").result_rows
        return [(uuid.UUID(str(r[0])), *r[1:]) for r in rows]

    def check() -> None:
        assert ids(ch, f"SELECT segment_id FROM segments WHERE local_date = '{DAY}'") == {
            stop.segment_id, moved.segment_id, visit.segment_id, prov.segment_id}
        assert ch.query(f"SELECT DISTINCT version FROM segments WHERE local_date = '{DAY}'"
                        ).result_rows == [(8,)]
        assert ids(ch, "SELECT segment_id FROM segments WHERE local_date > "
                       f"'{DAY}'") == {other_day.segment_id, other_visit.segment_id}
        assert visits() == [
            (visit.segment_id, DAY, "A1", "follow_up", [], {"competitor_seen": "Acme"}, "EUR",
             "7.25"),
            (other_visit.segment_id, other_visit.local_date, "A1", "order_placed", ["x"], {},
             None, None)]

    check()
    # The same answers once merged (tombstones of ids no live row follows stay hidden).
    for table in ("segments_current", "visits_current"):
        ch.command(f"SYSTEM START MERGES {table}")
        ch.command(f"OPTIMIZE TABLE {table} FINAL")
    check()
    # A rep-day whose last derivation retracted everything shows nothing.
    gone = update(9, [], retracted=[other_day, other_visit], day=other_day.local_date)
    w.add_batch("segments_current", SEGMENT_CURRENT_COLUMN_NAMES, segment_current_rows([gone]),
                {("sessions", 0): (9, 9)})
    w.flush()
    assert ch.command(f"SELECT count() FROM segments WHERE local_date > '{DAY}'") == 0
    assert [v[0] for v in visits()] == [visit.segment_id]


def test_redaction_and_erase_reach_visits_current(ch: Any) -> None:
    """A mutation of segments_current does not reach visits_current (its materialized view
    fires on inserts only): the privacy redaction and `reps erase` name both tables."""
    from streams.privacy import SEGMENT_TABLES, redaction_batches
    from streams.reps import erase_rep

    migrate(ch)
    other = "rep-2"
    visit = seg(SegmentKind.visit, 40, 0, key="A1").model_copy(
        update={"lat": 52.5123, "lon": 13.4567, "place_distance_m": 30.0})
    w = ClickHouseWriter(ch)
    for i, rep in enumerate((REP, other)):
        u = update(3, [visit.model_copy(update={"rep_id": rep})])
        u.rep_id = rep
        w.add_batch("segments_current", SEGMENT_CURRENT_COLUMN_NAMES, segment_current_rows([u]),
                    {("sessions", 0): (i, i)})
        w.flush()
    tables = list(SEGMENT_TABLES)
    existing = {r[0] for r in ch.query("SELECT name FROM system.tables "
                                       "WHERE database = currentDatabase()").result_rows}
    assert {"segments_current", "visits_current"} <= set(tables) <= existing
    window = (visit.start - dt.timedelta(minutes=5), visit.end + dt.timedelta(minutes=5))
    for _, stmts in redaction_batches({REP: ([window], None)}, "coarsen", 2,
                                      segment_tables=tables):
        for sql in stmts:
            if "events_all" not in sql and "transitions_all" not in sql:
                ch.command(sql, settings={"mutations_sync": 2})
    rows = ch.query("SELECT rep_id, lat, lon, distance_m, outcome FROM visits ORDER BY rep_id"
                    ).result_rows
    assert rows == [(REP, 52.51, 13.46, None, "order_placed"),
                    (other, 52.5123, 13.4567, 30.0, "order_placed")]

    removed = erase_rep(ch, REP)
    assert removed["segments_current"] == 1 and removed["visits_current"] == 1
    assert ch.query("SELECT rep_id FROM visits").result_rows == [(other,)]
    assert ch.command(f"SELECT count() FROM segments WHERE rep_id = '{REP}'") == 0
