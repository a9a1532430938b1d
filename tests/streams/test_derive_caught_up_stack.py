"""Through the real stack: once the sessions stage has read its input to the end, a rep-day
with new events is derived at once, not a derivation interval later."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from tests.conftest import Stack, ping, wait_for

pytestmark = pytest.mark.integration


def test_caught_up_input_is_derived_without_waiting_for_the_interval(tmp_path: Path) -> None:
    stack = Stack(tmp_path, extra_env={"GEOTEL_WORKER__DERIVE_INTERVAL_S": "600"})
    stack.start()
    try:
        token = stack.add_device("rep-now", "dev-now")
        # yesterday 09:00 UTC: every event in one rep-day, whatever the hour of the run
        t0 = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).replace(
            hour=9, minute=0, second=0, microsecond=0)
        version = "SELECT max(version) FROM rep_daily WHERE rep_id = 'rep-now'"
        for part, n in ((0, 30), (1, 12)):  # a first upload, then more of the same day
            evs = [ping("dev-now", "rep-now", t0 + dt.timedelta(minutes=40 * part + i))
                   for i in range(n)]
            sent = time.monotonic()
            assert stack.post(token, evs).status_code == 202
            want = 30 if part == 0 else 42  # the version is the day's number of events
            wait_for(lambda want=want: (stack.scalar(version) or 0) >= want, 120,
                     "the rep-day is derived")
            took = time.monotonic() - sent
            assert took < 60, took  # the interval is 600 s
            print(f"RESULT derive_caught_up upload_to_rep_daily_s={took:.1f}")
    finally:
        stack.stop()
