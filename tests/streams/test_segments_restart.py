"""Through the real stack: a rep-day changed after a worker restart loses the segments and
transitions its new derivation no longer has (the rebuilt state learns the stored ids and
tombstones them). The restart also brings a new in-memory broker, so the sessions stage
reads ``telemetry.enriched`` from offset 0 without a committed offset while the topic no
longer holds the morning: it must rebuild the rep from the store (not take the cold-start
shortcut it took on the first start) and derive the whole day."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.conftest import Stack, ping, wait_for

pytestmark = pytest.mark.integration
REP, DEV = "rep-restart", "dev-restart"
L1 = (52.5200, 13.4000)
L2 = (52.5400, 13.4400)


def _track(start: dt.datetime, minutes: int, at: tuple[float, float],
           to: tuple[float, float] | None = None) -> list[dict[str, object]]:
    out = []
    for i in range(minutes * 2):  # a fix every 30 s
        f = i / max(1, minutes * 2 - 1) if to else 0.0
        lat = at[0] + ((to[0] - at[0]) * f if to else 0.0)
        lon = at[1] + ((to[1] - at[1]) * f if to else 0.0)
        out.append(ping(DEV, REP, start + dt.timedelta(seconds=30 * i), lat=lat, lon=lon))
    return out


def _ids(stack: Stack, sql: str, column: str = "segment_id") -> set[str]:
    return {str(r[column]) for r in stack.sql(sql)}


def _transitions(stack: Stack, sql: str) -> set[str]:
    return _ids(stack, sql, "transition_id")


def test_segments_retracted_after_a_restart_leave_the_segments_view(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.start()
    try:
        stack.load_sample_world()  # L1 and L2 lie in a territory: the day has transitions
        token = stack.add_device(REP, DEV)
        day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        t0 = dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC)
        first = (_track(t0, 30, L1) + _track(t0 + dt.timedelta(minutes=30), 15, L1, L2)
                 + _track(t0 + dt.timedelta(minutes=45), 30, L2))
        assert stack.post(token, first).json()["accepted"] == len(first)
        wait_for(lambda: int(stack.scalar(
            f"SELECT max(version) FROM rep_daily WHERE rep_id = '{REP}'")) == len(first), 90,
            "the day derived")
        stack.wait_derived()
        before = _ids(stack, f"SELECT segment_id FROM segments WHERE rep_id = '{REP}'")
        assert before
        trs_before = _transitions(stack, "SELECT transition_id FROM transitions "
                                         f"WHERE rep_id = '{REP}'")
        assert trs_before
        sessions = stack.health()["components"]["sessions"]
        assert (sessions["skipped_rebuilds"], sessions["rebuilt_reps"]) == (1, 0)  # cold start
        stack.stop()

        stack.start()  # a new worker (and broker): the rep's state is rebuilt from the store
        # Earlier fixes at L1: the first stop now starts earlier, so its id changes.
        earlier = _track(t0 - dt.timedelta(minutes=20), 20, L1)
        assert stack.post(token, earlier).json()["accepted"] == len(earlier)
        total = len(first) + len(earlier)
        wait_for(lambda: int(stack.scalar(
            f"SELECT max(version) FROM rep_daily WHERE rep_id = '{REP}'")) == total, 90,
            "the changed day derived")
        stack.wait_derived()
        after = _ids(stack, f"SELECT segment_id FROM segments WHERE rep_id = '{REP}'")
        current = _ids(stack, f"""SELECT segment_id FROM segments_all FINAL
            WHERE rep_id = '{REP}' AND (rep_id, local_date, version) IN
                  (SELECT rep_id, local_date, version FROM rep_daily)""")
        retracted = before - current
        assert retracted, "the later fixes should have changed a segment id"
        assert after == current
        assert not retracted & after
        tombstones = _ids(stack, "SELECT segment_id FROM segments_current "
                                 f"WHERE rep_id = '{REP}' AND is_deleted = 1")
        assert retracted <= tombstones
        # The territory entry moved to the earlier first fix: a new transition id, and the
        # old one is a tombstone in transitions_current.
        trs_after = _transitions(stack, "SELECT transition_id FROM transitions "
                                        f"WHERE rep_id = '{REP}'")
        trs_current = _transitions(stack, f"""SELECT transition_id FROM transitions_all FINAL
            WHERE rep_id = '{REP}' AND (rep_id, local_date, version) IN
                  (SELECT rep_id, local_date, version FROM rep_daily)""")
        trs_retracted = trs_before - trs_current
        assert trs_retracted, "the earlier fixes should have moved the territory entry"
        assert trs_after == trs_current
        assert _transitions(stack, "SELECT transition_id FROM transitions_current "
                                   f"WHERE rep_id = '{REP}' AND is_deleted = 1"
                            ) >= trs_retracted
        sessions = stack.health()["components"]["sessions"]
        assert (sessions["skipped_rebuilds"], sessions["rebuilt_reps"]) == (0, 1)
        assert int(stack.scalar(f"SELECT events FROM rep_daily WHERE rep_id = '{REP}'")) == total
    finally:
        stack.stop()
