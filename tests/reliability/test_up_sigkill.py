"""``geotel up`` (embedded broker, worker, chDB: one process group, as a user starts it) is
SIGKILLed three times while several phones upload, and started again each time on the same
data directory. Every event that was answered 202 is stored exactly once, and the daily
figures equal those of a clean run of the same events.

The embedded broker keeps its log in memory: what it held when the group was killed is gone.
The upload journal (streams/journal.py) had each of those uploads on disk before its 202,
and the next ``geotel up`` replays it. The broker dies with its parent (a restart on the
same port works at once).

Short form in ``make test``; the long one (more devices and events, longer) is marked slow.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from streams.devices import issue
from streams.runtime import journal, publish_devices
from streams.settings import Settings
from tests.conftest import Stack, wait_for
from tests.reliability.conftest import FAST_GROUP, NO_RATE_LIMIT, pings, sql_in

pytestmark = pytest.mark.integration

KILLS = 3
#: Short journal segments and frequent trim checks, so trimming happens within the test.
JOURNAL = {"GEOTEL_INGEST__JOURNAL_SEGMENT_S": "2", "GEOTEL_INGEST__JOURNAL_TRIM_INTERVAL_S": "1"}
DAILY = ("rep_id, local_date, version, workday_start, workday_end, workday_s, field_s, "
         "travel_s, customer_s, stopped_other_s, unknown_s, distance_m, visits, pings_kept")


@dataclass
class Phone:
    """Uploads its batches in order, paced over ``duration_s``; an upload that is not
    answered 202 (refused connection, reset, 503) is sent again, same events, until
    ``give_up_s`` has passed: what a phone does while the service restarts."""

    base: str
    batches: list[tuple[str, list[dict[str, Any]]]]
    tokens: dict[str, str]
    duration_s: float
    give_up_s: float = 180.0
    accepted: list[str] = field(default_factory=list)
    retries: int = 0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base, timeout=20) as http:
                t0 = time.monotonic()
                for i, (dev, evs) in enumerate(self.batches):
                    delay = t0 + i * self.duration_s / len(self.batches) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    self._post(http, dev, evs)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def _post(self, http: httpx.Client, dev: str, evs: list[dict[str, Any]]) -> None:
        body = orjson.dumps({"events": evs})
        headers = {"Authorization": f"Bearer {self.tokens[dev]}",
                   "Content-Type": "application/json"}
        deadline = time.monotonic() + self.give_up_s
        while time.monotonic() < deadline:
            try:
                resp = http.post("/v1/events", content=body, headers=headers)
            except httpx.HTTPError:
                self.retries += 1
                time.sleep(0.3)
                continue
            if resp.status_code == 202:
                results = resp.json()["results"]
                assert all(r["status"] == "accepted" for r in results), results
                self.accepted.extend(r["event_id"] for r in results)
                return
            assert resp.status_code == 503, resp.text
            self.retries += 1
            time.sleep(min(2.0, float(resp.headers.get("Retry-After", "1"))))
        raise AssertionError(f"an upload of {dev} was not accepted in {self.give_up_s}s")


def _upload(stack: Stack, plan: dict[str, list[list[dict[str, Any]]]], tokens: dict[str, str],
            phones: int, duration_s: float) -> list[Phone]:
    """Start ``phones`` uploader threads, the devices dealt among them."""
    devs = sorted(plan)
    out = []
    for k in range(phones):
        mine = devs[k::phones]
        batches = [(d, b) for i in range(max(len(plan[d]) for d in mine)) for d in mine
                   if i < len(plan[d]) for b in [plan[d][i]]]
        out.append(Phone(stack.base, batches, tokens, duration_s))
    for p in out:
        threading.Thread(target=p.run, name="phone", daemon=True).start()
    return out


def _finish(phones: list[Phone], timeout_s: float) -> list[str]:
    for p in phones:
        assert p.done.wait(timeout_s), "an uploader did not finish"
        if p.error is not None:
            raise p.error
    return [e for p in phones for e in p.accepted]


def _stored_once(stack: Stack, ids: list[str]) -> tuple[int, int]:
    """``count()`` and ``uniqExact(event_id)`` of ``events`` over ``ids`` (in chunks: the
    SQL endpoint limits the query size)."""
    count = uniq = 0
    for i in range(0, len(ids), 400):
        row = stack.sql(f"SELECT count() AS n, uniqExact(event_id) AS u FROM events "
                        f"WHERE event_id IN ({sql_in(ids[i:i + 400])})")[0]
        count, uniq = count + int(row["n"]), uniq + int(row["u"])
    return count, uniq


def _daily(stack: Stack, reps: list[str]) -> list[dict[str, Any]]:
    quoted = ",".join(f"'{r}'" for r in reps)
    return stack.sql(f"SELECT {DAILY} FROM rep_daily FINAL WHERE rep_id IN ({quoted}) "
                     "ORDER BY rep_id, local_date")


def _add_devices(stack: Stack, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Register devices as ``geotel devices add`` does (journal, then the devices topic),
    without a process per device. Returns device_id -> token."""
    settings = Settings(_env_file=None, data_dir=stack.root / "var",  # type: ignore[call-arg]
                        kafka={"embedded_port": stack.kafka_port})
    before = stack.health()["components"]["devices"]["tokens"]
    issued = [issue(d, r, dt.datetime.now(dt.UTC)) for d, r in pairs]
    recs = [rec for _, rec in issued]
    journal(settings).append(recs)
    publish_devices(settings, recs)
    wait_for(lambda: stack.health()["components"]["devices"]["tokens"] >= before + len(recs),
             30, "the devices reach ingest")
    return {rec.device_id: tok for tok, rec in issued}


def _journal_files(stack: Stack) -> int:
    return len(list((stack.root / "var" / "uploads").glob("*/*.seg")))


def _run(tmp_path: Path, *, devices: int, per_device: int, batch: int, phones: int,
         duration_s: float) -> None:
    seed = int(os.environ.get("GEOTEL_CRASH_SEED", random.SystemRandom().randrange(10**6)))
    rng = random.Random(seed)
    env = {**NO_RATE_LIMIT, **FAST_GROUP, **JOURNAL}
    pairs = [(f"dev-up-{i:02d}", f"rep-up-{i:02d}") for i in range(devices)]
    reps = [r for _, r in pairs]
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2)
    plan = {d: [evs[i:i + batch] for i in range(0, per_device, batch)]
            for d, r in pairs for evs in [pings(d, r, per_device, start, step_s=2.0)]}

    (tmp_path / "crash").mkdir()
    (tmp_path / "clean").mkdir()
    stack = Stack(tmp_path / "crash", extra_env=env)
    stack.start(timeout_s=120)
    try:
        tokens = _add_devices(stack, pairs)
        t0 = time.monotonic()
        uploaders = _upload(stack, plan, tokens, phones, duration_s)
        slots = sorted(rng.uniform(0.15, 0.85) * duration_s for _ in range(KILLS))
        kills: list[dict[str, Any]] = []
        for at in slots:
            wait = t0 + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            stored = int(stack.scalar("SELECT count() FROM events"))
            accepted = sum(len(p.accepted) for p in uploaders)
            segments = _journal_files(stack)
            stack.stop(signal.SIGKILL)  # the whole process group of `geotel up`
            killed_at = time.monotonic() - t0
            t1 = time.monotonic()
            stack.start(timeout_s=120)
            kills.append({"at_s": round(killed_at, 1), "accepted_before": accepted,
                          "stored_before": stored, "journal_segments": segments,
                          "restart_s": round(time.monotonic() - t1, 1),
                          "uploads_running": not all(p.done.is_set() for p in uploaders)})
        ids = _finish(uploaders, duration_s * 4 + 600)
        n = devices * per_device
        assert len(ids) == n, (len(ids), n)  # every upload was answered 202 in the end
        assert any(k["accepted_before"] > k["stored_before"] for k in kills), (
            "no kill caught 202'd events not yet stored: the drill proved nothing", kills)

        wait_for(lambda: int(stack.scalar("SELECT count() FROM events")) >= n, 240,
                 f"all {n} accepted events are stored", 1.0)
        time.sleep(2)  # anything still in flight would show up as an excess now
        count, uniq = _stored_once(stack, ids)
        assert (count, uniq) == (n, n), (count, uniq, n)
        total = stack.sql("SELECT count() AS n, uniqExact(event_id) AS u FROM events")[0]
        assert (int(total["n"]), int(total["u"])) == (n, n), total
        stack.wait_derived(180)
        crashed = _daily(stack, reps)
        wait_for(lambda: _journal_files(stack) <= 1, 60,
                 "the journal is trimmed behind what is stored", 1.0)
        left = _journal_files(stack)
    finally:
        stack.stop()

    clean = Stack(tmp_path / "clean", extra_env=env)
    clean.start(timeout_s=120)
    try:
        tokens = _add_devices(clean, pairs)
        _finish(_upload(clean, plan, tokens, phones, 0.0), 600)
        wait_for(lambda: int(clean.scalar("SELECT count() FROM events")) >= n, 240,
                 "the clean run stored everything", 1.0)
        clean.wait_derived(180)
        expected = _daily(clean, reps)
    finally:
        clean.stop()
    assert expected, "the clean run derived no days"
    assert crashed == expected
    print(f"RESULT up_sigkill seed={seed} events={n} devices={devices} kills={kills} "
          f"stored count={count} uniqExact={uniq} rep_days={len(expected)} "
          f"journal_segments_left={left} retries={sum(p.retries for p in uploaders)}")


def test_up_sigkilled_three_times_every_202_stored_once(tmp_path: Path) -> None:
    _run(tmp_path, devices=6, per_device=400, batch=25, phones=3, duration_s=20.0)


@pytest.mark.slow
def test_up_sigkilled_three_times_every_202_stored_once_long(tmp_path: Path) -> None:
    _run(tmp_path, devices=16, per_device=3000, batch=50, phones=8, duration_s=150.0)
