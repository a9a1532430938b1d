"""Through the real stack: the day of a rep who stopped uploading closes (and is
redacted) when other reps' events move its partition's event time past the day's end +
lateness, without any further upload of the rep."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Stack, ping, wait_for

pytestmark = pytest.mark.integration
BERLIN = ZoneInfo("Europe/Berlin")


def test_an_idle_reps_day_closes_and_is_redacted(tmp_path: Path) -> None:
    stack = Stack(tmp_path, extra_env={
        "GEOTEL_KAFKA__TOPIC_PARTITIONS": "1",  # both reps on one partition
        "GEOTEL_WORKER__DERIVE_INTERVAL_S": "0.25"})  # idle after 5 s without uploads
    stack.start()
    try:
        idle = stack.add_device("rep-idle", "dev-idle")
        busy = stack.add_device("rep-busy", "dev-busy")
        # The rep's zone comes from its position (Berlin): one local day of pings, so one
        # rep-day (a UTC day would straddle two local days).
        local = (dt.datetime.now(BERLIN) - dt.timedelta(days=3)).date()
        day = dt.datetime.combine(local, dt.time(0), BERLIN).astimezone(dt.UTC)
        end = dt.datetime.combine(local + dt.timedelta(days=1), dt.time(0), BERLIN)
        n = int((end - day).total_seconds() // 600)  # 138 to 150 on a DST change
        evs = [ping("dev-idle", "rep-idle", day + dt.timedelta(minutes=10 * i))
               for i in range(n)]
        assert stack.post(idle, evs).status_code == 202
        full = ("SELECT countIf(accuracy_m IS NOT NULL) FROM events_all "
                "WHERE rep_id = 'rep-idle'")
        wait_for(lambda: stack.scalar(full) == n, 60, "the idle rep's events are stored")
        wait_for(lambda: stack.scalar("SELECT count() FROM rep_daily WHERE rep_id = "
                                      "'rep-idle'") == 1, 60, "its day is derived")
        time.sleep(6)  # a few idle checks: nothing moved the partition's event time
        assert stack.scalar("SELECT count() FROM closed_rep_days") == 0

        t0 = time.monotonic()
        now = dt.datetime.now(dt.UTC)
        assert stack.post(busy, [ping("dev-busy", "rep-busy", now - dt.timedelta(seconds=s))
                                 for s in (60, 30, 0)]).status_code == 202
        wait_for(lambda: stack.scalar(
            "SELECT count() FROM closed_rep_days WHERE rep_id = 'rep-idle'") == 1, 60,
            "the idle rep's day closes")
        took = time.monotonic() - t0
        # one place all day, no check-ins: no work day, so every position is off duty
        assert stack.scalar(full) == 0
        assert stack.scalar("SELECT count() FROM events WHERE rep_id = 'rep-idle' "
                            "AND lat IS NOT NULL") == n  # coarsened, not removed
        assert stack.scalar("SELECT countIf(accuracy_m IS NOT NULL) FROM events_all "
                            "WHERE rep_id = 'rep-busy'") == 3
        assert stack.scalar("SELECT count() FROM closed_rep_days WHERE rep_id = "
                            "'rep-busy'") == 0
        print(f"RESULT idle_close closed_and_redacted_s={took:.1f}")
    finally:
        stack.stop()
