"""The worker is SIGKILLed three times at random moments while phones upload; afterwards
every accepted event is in ClickHouse exactly once as analysts query it.

The broker (started here) and a separate ``geotel ingest`` process stay up, so uploads go on
while the worker is down and a backlog builds; only the worker process group is killed (a
SIGKILL of ``geotel up`` would take the in-memory broker, and all its data, with it).

CI variant: 50,000 events. The full variant, 500,000 events::

    GEOTEL_FULL_CRASH=1 .venv/bin/pytest tests/reliability/test_worker_crash.py -m slow -s

Set ``GEOTEL_CRASH_SEED`` to replay the same kill moments.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import wait_for
from tests.reliability.conftest import NO_RATE_LIMIT, SplitStack, pings

pytestmark = pytest.mark.integration

DEVICES = 20
BATCH = 500
KILLS = 3


@dataclass
class Uploader:
    """Posts every batch until it is answered 202, paced over ``duration_s``, as phones
    would: a failed or unanswered upload is sent again with the same events."""

    http: httpx.Client
    batches: list[tuple[str, list[dict[str, object]]]]
    tokens: dict[str, str]
    duration_s: float
    accepted: set[str] = field(default_factory=set)
    retries: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            t0 = time.monotonic()
            for i, (dev, evs) in enumerate(self.batches):
                delay = t0 + i * self.duration_s / len(self.batches) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._post(dev, evs)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def _post(self, dev: str, evs: list[dict[str, object]]) -> None:
        body = orjson.dumps({"events": evs})
        headers = {"Authorization": f"Bearer {self.tokens[dev]}",
                   "Content-Type": "application/json"}
        for _ in range(60):
            try:
                resp = self.http.post("/v1/events", content=body, headers=headers)
            except httpx.HTTPError:
                self.retries += 1
                time.sleep(0.5)
                continue
            self.statuses[resp.status_code] = self.statuses.get(resp.status_code, 0) + 1
            if resp.status_code == 202:
                self.accepted.update(r["event_id"] for r in resp.json()["results"]
                                     if r["status"] == "accepted")
                return
            assert resp.status_code in (429, 503), resp.text
            self.retries += 1
            time.sleep(float(resp.headers.get("Retry-After", "1")))
        raise AssertionError(f"upload of {dev} never accepted")


def _run(tmp_path: Path, n_events: int, duration_s: float) -> None:
    seed = int(os.environ.get("GEOTEL_CRASH_SEED", random.SystemRandom().randrange(10**6)))
    rng = random.Random(seed)
    stack = SplitStack(tmp_path, separate_ingest=True, extra_env=NO_RATE_LIMIT)
    stack.start()
    try:
        pairs = [(f"dev-cr-{i:02d}", f"rep-cr-{i:02d}") for i in range(DEVICES)]
        tokens = stack.add_devices(pairs)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        per_dev = n_events // DEVICES
        by_dev = {d: pings(d, r, per_dev, start, step_s=1.0) for d, r in pairs}
        batches = [(d, by_dev[d][i:i + BATCH]) for i in range(0, per_dev, BATCH)
                   for d, _ in pairs]
        up = Uploader(stack.ingest_http, batches, tokens, duration_s)
        thread = threading.Thread(target=up.run, name="uploader", daemon=True)
        t0 = time.monotonic()
        thread.start()

        # kill moments: random, spread over the upload, each after the previous restart
        slots = sorted(rng.uniform(0.1, 0.9) * duration_s for _ in range(KILLS))
        kills: list[dict[str, float]] = []
        for at in slots:
            wait = t0 + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            stored = int(stack.scalar("SELECT count() FROM events_all"))
            stack.worker.kill()  # SIGKILL to the worker's process group
            killed_at = time.monotonic() - t0
            restart_s = stack.start_worker()
            kills.append({"at_s": round(killed_at, 1), "rows_before": stored,
                          "healthy_again_s": round(restart_s, 1)})
        thread.join(timeout=duration_s * 4 + 300)
        assert up.done.is_set(), "the uploader did not finish"
        if up.error is not None:
            raise up.error
        upload_s = time.monotonic() - t0
        n = len(up.accepted)
        assert n == per_dev * DEVICES

        t_drain = time.monotonic()
        wait_for(lambda: int(stack.scalar("SELECT count() FROM events")) >= n, 300,
                 f"all {n} accepted events are stored", 1.0)
        drain_s = time.monotonic() - t_drain
        time.sleep(2)  # anything still in flight would show up as an excess now
        count = int(stack.scalar("SELECT count() FROM events"))
        uniq = int(stack.scalar("SELECT uniqExact(event_id) FROM events"))
        raw_rows = int(stack.scalar("SELECT count() FROM events_all"))
        assert count == n, (count, n)
        assert uniq == n, (uniq, n)
        sample = rng.sample(sorted(up.accepted), 500)
        quoted = ",".join(f"'{i}'" for i in sample)
        assert int(stack.scalar(f"SELECT count() FROM events WHERE event_id IN ({quoted})")) == 500
        print(f"RESULT worker_crash seed={seed} events={n} uploads={len(batches)} "
              f"upload_s={upload_s:.1f} kills={kills} upload_retries={up.retries} "
              f"statuses={up.statuses} drained_after_upload_s={drain_s:.1f} "
              f"events_all_rows={raw_rows} (replayed duplicates folded by the view: "
              f"{raw_rows - n})")
    finally:
        stack.stop()


def test_worker_sigkilled_three_times_50k_events_exactly_once(tmp_path: Path) -> None:
    _run(tmp_path, 50_000, duration_s=30.0)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("GEOTEL_FULL_CRASH") != "1",
                    reason="the 500,000-event run: `make test-crash-long` (GEOTEL_FULL_CRASH=1). "
                    "KNOWN TO FAIL since 2026-12-07: 442,500 of 500,000 accepted events "
                    "stored 300 s after the uploads (docs/reliability.md); not in CI until fixed")
def test_worker_sigkilled_three_times_500k_events_exactly_once(tmp_path: Path) -> None:
    _run(tmp_path, 500_000, duration_s=120.0)
