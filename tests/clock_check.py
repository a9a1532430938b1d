"""Run tests with the clock moved: near UTC midnight, near the sample world's local midnight
(Europe/Berlin) and on the two daylight-saving changes.

    python tests/clock_check.py [--at NAME ...] [pytest arguments, e.g. -n 2]

Without test paths among the pytest arguments, the suites of SUITES run.

libfaketime (Debian package ``faketime``) is preloaded into pytest and so into every process
a test starts (the broker, ``geotel up``, Chromium): each instant is one *offset* from the
real clock, so all processes agree on the time and the clock keeps running (a run that starts
a few minutes before midnight crosses it). The monotonic clock is not moved, so timeouts
stay real; a small shim (compiled here, it needs ``cc``) keeps Python's ``time.sleep()``
working under libfaketime.

What is not moved: chDB reads the clock without the C library, so the store's ``now()`` and
``today()`` stay real. The two midnight instants are therefore put on the real UTC date
(today 23:35 UTC, and eight minutes before Berlin's next midnight): the store's ``today()``
agrees with the test's UTC date, as it does in production; the one cookbook question that
measures a ping's age with the store's ``now64()`` is left out. The DST instants are on
other dates: the EU changes nearest after 60 days ago (dst_change), so dead letters written
at the moved time are not past the 90-day TTL the store judges by its real clock (the fixed
2026 dates used before made every dead letter expire as it was written). The test that
compares the store's ``today()`` with the test's clock (the analyst cookbook, whose queries
are relative to ``today()``) is left out of those two runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")
#: The suites whose tests make data relative to the clock or compare with it.
SUITES = ["tests/processors", "tests/simulator", "tests/sinks", "tests/streams",
          "tests/analysts", "tests/map", "tests/privacy", "tests/reliability/test_deadletters.py",
          "tests/reliability/test_hostile_input.py"]
#: Compares the store's today() (not moved, see above) with the test's date.
STORE_CLOCK = ["tests/analysts/test_cookbook.py"]
#: Compares a ping's age by the store's now64() (not moved) with the test's clock.
STORE_NOW = ["tests/analysts/test_cookbook.py::test_query_gives_a_plausible_answer"
             "[who-is-in-the-field-right-now-and-where]"]


def instants(now: dt.datetime) -> dict[str, tuple[dt.datetime, bool]]:
    """name -> (instant, on the real UTC date)."""
    today = now.date()
    berlin_midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0), BERLIN)
    local = berlin_midnight.astimezone(dt.UTC) - dt.timedelta(minutes=8)
    if local.date() != today:  # keep the store's today() right
        local += dt.timedelta(days=1)
    return {
        # Berlin is already on the next day; the run stays before UTC midnight
        "utc-midnight": (dt.datetime.combine(today, dt.time(23, 35), dt.UTC), True),
        "local-midnight": (local, True),
        # 02:00 CET -> 03:00 CEST at 01:00 UTC; 03:00 CEST -> 02:00 CET at 01:00 UTC
        "dst-spring": (dst_change(now, 3) - dt.timedelta(minutes=8), False),
        "dst-autumn": (dst_change(now, 10) - dt.timedelta(minutes=8), False),
    }


def dst_change(now: dt.datetime, month: int) -> dt.datetime:
    """The EU change of ``month`` (3 or 10: the last Sunday, 01:00 UTC) nearest after 60
    days before ``now``: dead letters written then are not yet past the store's 90-day TTL,
    which the store judges by its real clock (before, the fixed 2026 dates made every dead
    letter expire as it was written)."""
    for year in (now.year - 1, now.year, now.year + 1):
        last = dt.date(year, month + 1, 1) - dt.timedelta(days=1)
        sunday = last - dt.timedelta(days=(last.weekday() - 6) % 7)
        at = dt.datetime.combine(sunday, dt.time(1), dt.UTC)
        if at >= now - dt.timedelta(days=60):
            return at
    raise ValueError(month)


#: libfaketime 0.9.10, told not to fake the monotonic clock (so timeouts stay real), still
#: shifts an absolute CLOCK_MONOTONIC deadline by its offset: Python's time.sleep() fails with
#: EINVAL. Preloaded before it, this sends such sleeps straight to the kernel.
MONOTONIC_SLEEP = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req,
                    struct timespec *rem) {
    if (clk == CLOCK_MONOTONIC) {
        long r = syscall(SYS_clock_nanosleep, clk, flags, req, rem);
        return r == -1 ? errno : 0;
    }
    int (*next)(clockid_t, int, const struct timespec *, struct timespec *) =
        dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clk, flags, req, rem);
}
"""


def monotonic_sleep_library(tmp: Path) -> str:
    src, lib = tmp / "monotonic_sleep.c", tmp / "monotonic_sleep.so"
    src.write_text(MONOTONIC_SLEEP)
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl"],
                   check=True)
    return str(lib)


def faketime_library() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
                   + glob.glob("/usr/lib/faketime/libfaketimeMT.so.1"))
    if not found:
        sys.exit("libfaketime is missing: sudo apt-get install faketime")
    return found[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    now = dt.datetime.now(dt.UTC)
    names = list(instants(now))
    parser.add_argument("--at", action="append", choices=names,
                        help="an instant (repeatable; default: all)")
    args, pytest_args = parser.parse_known_args()
    tmp = Path(tempfile.mkdtemp(prefix="clock-check-"))
    preload = f"{monotonic_sleep_library(tmp)}:{faketime_library()}"
    failed = []
    for name in args.at or names:
        at, same_date = instants(dt.datetime.now(dt.UTC))[name]
        offset = int((at - dt.datetime.now(dt.UTC)).total_seconds())
        env = {**os.environ, "LD_PRELOAD": preload, "FAKETIME": f"{offset:+d}",
               "FAKETIME_DONT_FAKE_MONOTONIC": "1"}  # timeouts and sleeps stay real
        # Chromium (the map's browser test) timed out under libfaketime; the map's statuses
        # and data are checked without it (tests/map/test_map_status.py).
        paths = [a for a in pytest_args if not a.startswith("-") and (ROOT / a.split("::")[0]
                                                                      ).exists()]
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "not slow and not browser",
               *pytest_args, *([] if paths else SUITES)]
        cmd += [f"--deselect={p}" for p in STORE_NOW]
        if not same_date:
            cmd += [f"--ignore={p}" for p in STORE_CLOCK]
        print(f"== {name}: clock at {at.isoformat()} (Berlin "
              f"{at.astimezone(BERLIN).isoformat()})", flush=True)
        if subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode != 0:
            failed.append(name)
    print("clock check: " + (f"FAILED at {', '.join(failed)}" if failed else "passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
