"""`geotel simulate` and `geotel demo`: simulated reps posting to a running pipeline."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from schemas.errors import GeotelError
from streams.devices import DeviceRecord, issue
from streams.settings import Profile, Settings

#: Called with (events answered so far, events to send) as uploads finish.
Progress = Callable[[int, int], None]


class DemoError(GeotelError, RuntimeError):
    """The demo could not run (the pipeline did not start, uploads failed)."""


def sample_world(s: Settings) -> Path:
    """The directory of the sample territories and accounts that the demo and `geotel
    simulate` use: ``data_dir/sample``, written on first use by the seeded generator
    (``geo.sample``; the same bytes as the checkout's ``data/sample``), so an installed
    package needs no data files beside it."""
    world = s.data_dir / "sample"
    if (world / "territories.geojson").exists() and (world / "accounts.geojson").exists():
        return world
    from geo.sample import generate

    s.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=s.data_dir, prefix=".sample-"))
    try:
        generate(tmp)
        shutil.rmtree(world, ignore_errors=True)  # a half-written one from an older run
        tmp.rename(world)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return world


@dataclass
class SimReport:
    events_sent: int
    accepted: int
    rejected: int
    duplicates: int
    elapsed_s: float
    reject_reasons: dict[str, int]
    stored_s: float | None = None


def _base_url(s: Settings) -> str:
    host = "127.0.0.1" if s.web_host in ("0.0.0.0", "::") else s.web_host  # noqa: S104
    return f"http://{host}:{s.web_port}"


def check_running(s: Settings) -> None:
    """Fail at once, in one line, when nothing answers on the web port (instead of retrying
    every upload)."""
    url = _base_url(s) + "/health"
    try:
        httpx.get(url, timeout=3)
    except httpx.HTTPError as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__
        raise DemoError(f"no pipeline answers at {url} ({reason}); start it with `geotel up`"
                        ) from exc


def register(s: Settings, devices: list[tuple[str, str]]) -> dict[str, str]:
    """Issue a token per (device, rep), publish them, and wait until ingest knows them."""
    from streams.broker import port_open
    from streams.runtime import journal, publish_devices

    now = dt.datetime.now(dt.UTC)
    tokens: dict[str, str] = {}
    recs: list[DeviceRecord] = []
    for dev, rep in devices:
        tok, rec = issue(dev, rep, now)
        tokens[dev] = tok
        recs.append(rec)
    if s.profile is Profile.embedded:
        journal(s).append(recs)
    if s.profile is Profile.external or port_open("127.0.0.1", s.kafka.embedded_port):
        publish_devices(s, recs)
    # Wait until ingest knows every one of these tokens. A count of known tokens is not
    # enough: with devices registered before, the count is already reached while the new
    # tokens are still on their way (uploads then got 401). An empty upload is the probe:
    # 401 for an unknown token, 400 empty_batch for a known one, and nothing is stored.
    deadline = time.monotonic() + 30
    url = _base_url(s) + "/v1/events"
    pending = dict(tokens)
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            for dev, tok in list(pending.items()):
                try:
                    r = client.post(url, json={"events": []},
                                    headers={"Authorization": f"Bearer {tok}"})
                except httpx.HTTPError:
                    break
                if r.status_code in (401, 503):
                    break
                del pending[dev]
            if not pending:
                return tokens
            time.sleep(0.3)
    raise DemoError(f"ingest at {url} did not load {len(pending)} of the {len(recs)} device "
                    "tokens within 30 s")


def run_simulation(
    s: Settings, *, reps: int, days: int, start_date: dt.date, speedup: float, seed: int,
    noise: str, truth: Path | None, concurrency: int = 16, world: Path | None = None,
    progress: Progress | None = None,
) -> SimReport:
    """Simulate ``reps`` x ``days`` field days and post them to the running pipeline.
    ``noise`` is ``clean`` or ``realistic``."""
    from simulator.client import post_uploads
    from simulator.noise import NoiseProfile
    from simulator.run import simulate

    profiles = {"realistic": NoiseProfile.realistic, "clean": NoiseProfile.clean}
    if noise not in profiles:
        raise DemoError(f"unknown noise profile {noise!r}: {' or '.join(profiles)}")
    check_running(s)
    sim = simulate(world or sample_world(s), reps, days, start_date, seed, profiles[noise]())
    if truth is not None:
        sim.write_truth(truth)
    tokens = register(s, sim.devices)
    total = sim.event_count
    done = 0

    def finished(n_events: int) -> None:
        nonlocal done
        done += n_events
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    stats = asyncio.run(post_uploads(_base_url(s), sim.uploads, tokens, speedup=speedup,
                                     concurrency=concurrency, start_at=None,
                                     on_upload=finished))
    if stats.uploads_failed:
        raise DemoError(f"{stats.uploads_failed} uploads failed: {stats.errors[:3]}")
    return SimReport(stats.events_sent, stats.accepted, stats.rejected, stats.duplicates,
                     stats.elapsed_s, dict(stats.reject_reasons))


def _sql(s: Settings, query: str) -> list[dict[str, Any]]:
    r = httpx.post(_base_url(s) + "/v1/sql", json={"sql": query, "format": "json"}, timeout=60)
    if r.status_code != 200:
        raise DemoError(f"query failed: {r.text[:500]}")
    return list(r.json()["data"])


def wait_geo(s: Settings, timeout_s: float = 60) -> int:
    """Wait until the worker uses a territory index; return its version."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        v = httpx.get(_base_url(s) + "/health", timeout=5).json()["components"].get("geo", {})
        if v.get("version"):
            return int(v["version"])
        time.sleep(0.25)
    raise DemoError(f"the worker did not load the territory set within {timeout_s}s")


def wait_stored(s: Settings, expected_rows: int, timeout_s: float = 120) -> float:
    """Wait until the worker's sink has written ``expected_rows``; return the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        h = httpx.get(_base_url(s) + "/health", timeout=5).json()
        if h["components"]["sink"]["rows"] >= expected_rows:
            return time.monotonic() - t0
        time.sleep(0.25)
    raise DemoError(f"the worker did not store {expected_rows} rows within {timeout_s}s")


def start_pipeline(s: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "up"],
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=os.environ.copy())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"`geotel up` exited with {proc.returncode}; see {log_path}")
        try:
            h = httpx.get(_base_url(s) + "/health", timeout=2).json()
            if h["status"] == "ok" and h["components"]["consumer"]["assigned"]:
                return proc
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    stop_pipeline(proc)
    raise DemoError(f"the pipeline did not become healthy in 90 s; see {log_path}")


def stop_pipeline(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()
    return proc.returncode


PER_REP_SQL = """
SELECT rep_id,
       formatDateTime(min(ts), '%H:%i') AS first_event_utc,
       formatDateTime(max(ts), '%H:%i') AS last_event_utc,
       countIf(kind = 'ping') AS pings,
       countIf(kind = 'check_in' AND action = 'visit_start') AS visits_checked_in,
       countIf(kind = 'visit_submission') AS visit_forms,
       round(sumIf(order_total, kind = 'visit_submission'), 2) AS orders_total,
       uniqExactIf(territory_id, territory_id IS NOT NULL) AS territories
FROM events
WHERE toDate(ts) >= '{start}' AND toDate(ts) < '{end}'
GROUP BY rep_id
ORDER BY rep_id
"""


DAILY_SQL = """
SELECT rep_id, tz, toUnixTimestamp(workday_start) AS start, workday_start_inferred,
       toUnixTimestamp(workday_end) AS end, workday_end_inferred,
       round(workday_s / 3600, 2) AS workday_h,
       round(field_s / 3600, 2) AS field_h,
       round(travel_s / 3600, 2) AS travel_h,
       round(customer_s / 3600, 2) AS at_customers_h,
       round(break_s / 60) AS break_min,
       round(distance_m / 1000, 1) AS km,
       visits, verified_visits AS verified,
       round(out_territory_s / 60) AS outside_territory_min
FROM rep_daily
WHERE local_date = '{day}'
ORDER BY rep_id
"""


def figures(s: Settings, day: dt.date) -> list[tuple[str, list[dict[str, Any]]]]:
    """Per-rep tables for the demo's day."""
    end = day + dt.timedelta(days=1)
    rows = _sql(s, PER_REP_SQL.format(start=day.isoformat(), end=end.isoformat()))
    daily = [_local_times(r) for r in _sql(s, DAILY_SQL.format(day=day.isoformat()))]
    return [(f"events per rep on {day} (UTC)", rows),
            (f"work days on {day} (local time; * = inferred, no check-in)", daily)]


def _local_times(row: dict[str, Any]) -> dict[str, Any]:
    # ClickHouse's toTimeZone wants a constant zone; each rep has its own.
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(row.pop("tz"))
    for key in ("start", "end"):
        inferred = row.pop(f"workday_{key}_inferred")
        ts = row[key]
        row[key] = ("-" if ts is None else
                    dt.datetime.fromtimestamp(int(ts), tz).strftime("%H:%M")
                    + ("*" if inferred else ""))
    return row


def wait_derived(s: Settings, timeout_s: float = 60) -> None:
    """Wait until the sessions stage has nothing left to derive."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        comp = httpx.get(_base_url(s) + "/health", timeout=5).json()["components"]
        st = comp.get("sessions")
        if st is None or (st["dirty_reps"] == 0 and st["pending_messages"] == 0):
            return
        time.sleep(0.5)
    raise DemoError(f"sessions still deriving after {timeout_s}s")
