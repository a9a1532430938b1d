"""The broker goes away under a running worker (with ingest) and comes back on the same port.

While it is away, an upload is answered 503 with ``Retry-After`` (and a JSON error): never
a 2xx for events the broker did not acknowledge. The embedded broker keeps everything in
memory, so the restarted one is empty: topics are created again and the device records
re-published from the journal (what ``geotel up`` does at start). Then ingest and the
worker must reconnect by themselves: new uploads get 202 and land in ClickHouse.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.devices import issue
from streams.runtime import publish_devices
from tests.conftest import wait_for
from tests.reliability.conftest import NO_RATE_LIMIT, SplitStack, pings, sql_in

pytestmark = pytest.mark.integration


def _count(stack: SplitStack, ids: list[str]) -> int:
    return int(stack.scalar(f"SELECT count() FROM events WHERE event_id IN ({sql_in(ids)})"))


def _outage_then_restart(stack: SplitStack, figures: dict[str, Any]
                         ) -> tuple[str, list[dict[str, Any]], list[str]]:
    """Upload 8 messages, kill the broker, upload 4 more (503), restart it, and resend until
    ingest answers 202. Returns the token, the refused events and the ids accepted after."""
    dev, rep = "dev-bo-1", "rep-bo-1"
    token = stack.add_device(rep, dev)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=10)
    before = pings(dev, rep, 400, start)
    for i in range(0, 400, 50):  # 8 messages on the device's partition
        assert stack.post(token, before[i:i + 50]).status_code == 202
    # Device records that are not in the journal (issued elsewhere, say): the restarted
    # broker's devices log is shorter than the one the running tail has read.
    loaded = stack.tokens_loaded()
    publish_devices(stack.settings, [issue(f"dev-bo-x{k}", "rep-bo-x", dt.datetime.now(dt.UTC))[1]
                                     for k in range(3)])
    wait_for(lambda: stack.tokens_loaded() == loaded + 3, 20, "the extra devices are loaded")
    wait_for(lambda: _count(stack, [e["event_id"] for e in before]) == 400, 60,
             "the events uploaded before the outage are stored")

    stack.broker.kill()
    t_down = time.monotonic()
    refused: list[dict[str, Any]] = []
    answers: list[int] = []
    for k in range(4):
        evs = pings(dev, rep, 50, start + dt.timedelta(hours=1, minutes=k))
        try:
            resp = stack.post(token, evs, timeout=30)
        except httpx.HTTPError as exc:  # no answer at all is acceptable, a 2xx is not
            answers.append(0)
            figures.setdefault("no_answer", []).append(repr(exc))
            continue
        answers.append(resp.status_code)
        assert resp.status_code == 503, (resp.status_code, resp.text)
        assert resp.headers.get("Retry-After"), resp.headers
        body = resp.json()
        assert body["error"] and body["detail"]
        refused.extend(evs)
    figures["outage_answers"] = answers
    figures["outage_s"] = round(time.monotonic() - t_down, 1)

    stack.start_broker()  # empty: topics again, devices from the journal
    t_up = time.monotonic()
    resent = refused[:100]  # as the phone would after Retry-After
    accepted: list[str] = []

    def ingest_back() -> bool:
        accepted.clear()
        resp = stack.post(token, resent, timeout=30)
        if resp.status_code != 202:
            assert resp.status_code == 503, (resp.status_code, resp.text)
            return False
        accepted.extend(r["event_id"] for r in resp.json()["results"]
                        if r["status"] == "accepted")
        return True

    wait_for(ingest_back, 90, "ingest answers 202 again after the broker restart", 1.0)
    figures["ingest_back_s"] = round(time.monotonic() - t_up, 1)
    # A device registered now lands below the tail's old position in the devices log: the
    # tail must notice the log went backwards and read it again (or the token is refused).
    stack.add_device("rep-bo-2", "dev-bo-2")
    figures["t_up"] = t_up
    return token, refused, accepted


def test_broker_outage_answers_503_and_ingest_reconnects(tmp_path: Path) -> None:
    stack = SplitStack(tmp_path, extra_env={**NO_RATE_LIMIT,
                                            "GEOTEL_KAFKA__PRODUCE_TIMEOUT_S": "3"})
    stack.start()
    figures: dict[str, Any] = {}
    try:
        _, _, accepted = _outage_then_restart(stack, figures)
        assert len(accepted) == 100
        figures.pop("t_up")
        print(f"RESULT broker_outage {figures}")
    finally:
        stack.stop()


@pytest.mark.slow  # about a minute; run it with -m slow
def test_worker_stores_uploads_accepted_after_a_broker_restart(tmp_path: Path) -> None:
    """After the in-memory broker restarts, the running worker keeps its fetch positions
    from the old broker, and Tansu answers a fetch beyond the end with no records (not
    OFFSET_OUT_OF_RANGE). The worker notices the log went backwards and reads it again
    from its start (streams/app.py ``_check_log_reset``); before that, the new messages
    below the old position were skipped in about half of the runs."""
    stack = SplitStack(tmp_path, extra_env={**NO_RATE_LIMIT,
                                            "GEOTEL_KAFKA__PRODUCE_TIMEOUT_S": "3"})
    stack.start()
    figures: dict[str, Any] = {}
    try:
        dev, rep = "dev-bo-1", "rep-bo-1"
        token, refused, accepted = _outage_then_restart(stack, figures)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)
        uploads = [list(accepted)]
        for k in range(3):  # fewer messages than the partition held before the outage
            evs = pings(dev, rep, 20, start + dt.timedelta(minutes=k))
            assert stack.post(token, evs).status_code == 202
            uploads.append([e["event_id"] for e in evs])
        ids = [i for u in uploads for i in u]
        try:
            wait_for(lambda: _count(stack, ids) == len(ids), 60,
                     "events accepted after the restart are stored (the worker reconnected)",
                     1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; stored per upload after the restart (the resend "
                                 f"first): {[_count(stack, u) for u in uploads]}") from exc
        figures["stored_again_s"] = round(time.monotonic() - figures.pop("t_up"), 1)
        figures["partitions_read_again"] = stack.worker.log_tail(10**6).count(
            "reading it again from")
        # answered 503 and never resent: if the producer still delivered them after the 503,
        # storing them once is harmless (same event_id); a phone resends them anyway
        figures["refused_not_resent_but_stored"] = _count(
            stack, [e["event_id"] for e in refused[100:]])
        assert int(stack.scalar("SELECT count() FROM events")) == int(stack.scalar(
            "SELECT uniqExact(event_id) FROM events"))
        print(f"RESULT broker_outage_worker {figures}")
    finally:
        stack.stop()
