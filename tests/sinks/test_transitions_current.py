"""transitions_current (migration 8): the transitions view shows the current transition of
each id, with retracted ids gone, without merged parts and without the version join; a
populated store is backfilled; privacy redaction and `reps erase` reach it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from processors.transitions import Transition, TransitionKind, transition_id
from sinks.migrations import MIGRATIONS, TRANSITION_COLUMNS, migrate
from sinks.rows import (
    REP_DAILY_COLUMN_NAMES,
    TRANSITION_COLUMN_NAMES,
    TRANSITION_CURRENT_COLUMN_NAMES,
    model_rows,
    transition_current_rows,
)
from sinks.writer import ClickHouseWriter
from tests.sinks.test_segments_current import DAY, REP, T0, summary

pytestmark = pytest.mark.integration
ENTER, EXIT = TransitionKind.territory_enter, TransitionKind.territory_exit
ARRIVE = TransitionKind.account_arrive


def tr(kind: TransitionKind, subject: str, minute: int, version: int, day: dt.date = DAY,
       rep: str = REP, lat: float = 52.5) -> Transition:
    at = T0 + dt.timedelta(minutes=minute) + (day - DAY)
    return Transition(transition_id=transition_id(rep, day, kind.value, subject, at),
                      rep_id=rep, local_date=day, kind=kind, subject_id=subject, at=at,
                      lon=13.4, lat=lat, geo_version=3, version=version)


def ids(ch: Any, sql: str) -> set[uuid.UUID]:
    return {uuid.UUID(str(r[0])) for r in ch.query(sql).result_rows}


def write(w: ClickHouseWriter, token: int, transitions: list[Transition],
          retracted: Sequence[tuple[str, dt.date, int, list[uuid.UUID]]] = ()) -> None:
    w.add_batch("transitions_current", TRANSITION_CURRENT_COLUMN_NAMES,
                transition_current_rows(transitions, retracted), {("sessions", 0): (token, token)})
    w.flush()


def test_tombstone_rows_carry_the_id_and_the_derivation_version() -> None:
    a, b = tr(ENTER, "T1", 0, 5), tr(ARRIVE, "A1", 10, 1)
    rows = transition_current_rows([a], [(REP, DAY, 5, [b.transition_id])])
    col = {n: i for i, n in enumerate(TRANSITION_CURRENT_COLUMN_NAMES)}
    assert len(rows) == 2 and all(len(r) == len(TRANSITION_CURRENT_COLUMN_NAMES) for r in rows)
    live, tomb = rows
    assert (live[col["transition_id"]], live[col["version"]], live[col["is_deleted"]]) == (
        a.transition_id, 5, 0)
    assert (tomb[col["transition_id"]], tomb[col["rep_id"]], tomb[col["local_date"]],
            tomb[col["version"]], tomb[col["is_deleted"]]) == (b.transition_id, REP, DAY, 5, 1)


def test_unmerged_derivations_with_retractions_show_only_the_current_transitions(ch: Any
                                                                                 ) -> None:
    migrate(ch)
    ch.command("SYSTEM STOP MERGES transitions_current")
    enter, arrive = tr(ENTER, "T1", 0, 0), tr(ARRIVE, "A1", 10, 0)
    early = tr(ENTER, "T2", 30, 0)
    moved = tr(ENTER, "T2", 28, 0)  # a late fix moved the first fix of the run
    other_day = tr(ENTER, "T1", 0, 0, day=DAY + dt.timedelta(days=1))
    w = ClickHouseWriter(ch)

    def at(version: int, *trs: Transition) -> list[Transition]:
        return [t.model_copy(update={"version": version}) for t in trs]

    write(w, 1, at(2, enter, early))
    write(w, 2, at(4, enter, arrive, moved), [(REP, DAY, 4, [early.transition_id])])
    write(w, 3, at(4, enter, arrive, moved), [(REP, DAY, 4, [early.transition_id])])
    # the account arrival vanishes (a tombstone whose kind differs from its live row's)
    write(w, 4, at(6, enter, moved), [(REP, DAY, 6, [arrive.transition_id])])
    write(w, 5, at(3, other_day))
    parts = ch.command("SELECT count() FROM system.parts WHERE database = currentDatabase() "
                       "AND table = 'transitions_current' AND active")
    assert parts >= 4

    def check() -> None:
        assert ids(ch, f"SELECT transition_id FROM transitions WHERE local_date = '{DAY}'") == {
            enter.transition_id, moved.transition_id}
        assert ch.query(f"SELECT DISTINCT version FROM transitions WHERE local_date = '{DAY}'"
                        ).result_rows == [(6,)]
        # a filter on a column the tombstone does not carry never brings back the old row
        assert ch.command("SELECT count() FROM transitions WHERE kind = 'account_arrive'") == 0
        assert ids(ch, "SELECT transition_id FROM transitions WHERE kind = 'territory_enter' "
                       f"AND local_date >= '{DAY}'") == {
            enter.transition_id, moved.transition_id, other_day.transition_id}

    check()
    ch.command("SYSTEM START MERGES transitions_current")
    ch.command("OPTIMIZE TABLE transitions_current FINAL")
    check()
    # an id retracted earlier comes back with a later derivation
    write(w, 6, at(8, enter, arrive, moved))
    assert ids(ch, f"SELECT transition_id FROM transitions WHERE local_date = '{DAY}'") == {
        enter.transition_id, arrive.transition_id, moved.transition_id}
    assert [r[0] for r in ch.query("DESCRIBE TABLE transitions").result_rows] == [
        n for n, _ in TRANSITION_COLUMNS]


def test_a_populated_store_is_backfilled_once(ch: Any) -> None:
    assert migrate(ch, [m for m in MIGRATIONS if m.version < 8]) == list(range(1, 8))
    enter, early, moved = tr(ENTER, "T1", 0, 0), tr(ENTER, "T2", 30, 0), tr(ENTER, "T2", 28, 0)
    for version, trs in ((3, [enter, early]), (5, [enter, moved])):
        rows = [t.model_copy(update={"version": version}) for t in trs]
        ch.insert("transitions_all", model_rows(rows, TRANSITION_COLUMN_NAMES),
                  column_names=TRANSITION_COLUMN_NAMES, settings={"async_insert": 0})
        ch.insert("rep_daily_all", model_rows([summary(version)], REP_DAILY_COLUMN_NAMES),
                  column_names=REP_DAILY_COLUMN_NAMES, settings={"async_insert": 0})
    current = {enter.transition_id, moved.transition_id}
    assert ids(ch, "SELECT transition_id FROM transitions") == current
    assert migrate(ch) == [m.version for m in MIGRATIONS if m.version >= 8]
    assert ids(ch, "SELECT transition_id FROM transitions") == current
    assert ch.command("SELECT count() FROM transitions_current") == 2
    assert migrate(ch) == []
    assert ch.command("SELECT count() FROM transitions_current") == 2


def test_redaction_and_erase_reach_transitions_current(ch: Any) -> None:
    from streams.privacy import TRANSITION_TABLES, redaction_batches
    from streams.reps import erase_rep

    migrate(ch)
    other = "rep-2"
    w = ClickHouseWriter(ch)
    for i, rep in enumerate((REP, other)):
        write(w, i, [tr(ENTER, "T1", 0, 3, rep=rep, lat=52.5123),
                         tr(ARRIVE, "A1", 10, 3, rep=rep, lat=52.5123)])
    window = (T0 - dt.timedelta(minutes=5), T0 + dt.timedelta(minutes=15))
    for _, stmts in redaction_batches({REP: ([window], None)}, "coarsen", 2,
                                      transition_tables=TRANSITION_TABLES):
        for sql in stmts:
            if "transitions_current" in sql:
                ch.command(sql, settings={"mutations_sync": 2})
    rows = ch.query("SELECT rep_id, kind, lat FROM transitions ORDER BY rep_id, at").result_rows
    assert rows == [(REP, "territory_enter", 52.51),
                    (other, "territory_enter", 52.5123), (other, "account_arrive", 52.5123)]
    removed = erase_rep(ch, REP)
    assert removed["transitions_current"] == 1
    assert {r[0] for r in ch.query("SELECT rep_id FROM transitions").result_rows} == {other}
