from __future__ import annotations

import asyncio
import datetime as dt
import socket
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from simulator.client import UploadStats, post_uploads
from simulator.uploads import Upload

T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)


def _upload(i: int, n: int = 3, device: str = "dev-rep-0001", at_s: float = 0.0) -> Upload:
    events = [{"event_id": f"00000000-0000-0000-0000-{i:06d}{k:06d}", "kind": "ping"}
              for k in range(n)]
    return Upload(T0 + dt.timedelta(seconds=at_s), device, "rep-0001", events)


class FakeIngest:
    """Answers like the ingest service: 503 for the first ``fail_first`` requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.requests = 0
        self.seen: set[str] = set()
        self.auth: list[str] = []
        self.arrivals: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.arrivals.append(asyncio.get_running_loop().time())
        self.auth.append(request.headers.get("Authorization", ""))
        if self.requests <= self.fail_first:
            return web.Response(status=503, headers={"Retry-After": "0"}, text="busy")
        if request.headers.get("Authorization") != "Bearer tok-1":
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.json()
        results: list[dict[str, Any]] = []
        for i, e in enumerate(body["events"]):
            if e["event_id"].endswith("000002"):
                results.append({"index": i, "event_id": e["event_id"], "status": "rejected",
                                "reason": "bad_position"})
            elif e["event_id"] in self.seen:
                results.append({"index": i, "event_id": e["event_id"], "status": "duplicate"})
            else:
                self.seen.add(e["event_id"])
                results.append({"index": i, "event_id": e["event_id"], "status": "accepted"})
        accepted = sum(r["status"] == "accepted" for r in results)
        return web.json_response({"accepted": accepted, "rejected": len(results) - accepted,
                                  "results": results}, status=202)


async def _run(ingest: FakeIngest, uploads: list[Upload], **kw: Any) -> UploadStats:
    app = web.Application()
    app.router.add_post("/v1/events", ingest.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("/")).rstrip("/")
        args = {"speedup": 0.0, "concurrency": 4, "start_at": None} | kw
        return await post_uploads(base, uploads, {"dev-rep-0001": "tok-1"}, **args)
    finally:
        await server.close()


def test_counts_accepted_rejected_and_duplicates() -> None:
    ingest = FakeIngest()
    ups = [_upload(1), _upload(2), _upload(1)]  # the third is a resend of the first
    stats = asyncio.run(_run(ingest, ups))
    assert stats.uploads == stats.uploads_ok == 3
    assert (stats.accepted, stats.duplicates, stats.rejected) == (4, 2, 3)
    assert stats.reject_reasons == {"bad_position": 3}
    assert stats.events_sent == 9
    assert set(ingest.auth) == {"Bearer tok-1"}


def test_retries_on_503_honouring_retry_after() -> None:
    ingest = FakeIngest(fail_first=3)
    stats = asyncio.run(_run(ingest, [_upload(1)], concurrency=1))
    assert stats.uploads_ok == 1 and stats.retries == 3
    assert stats.http_status == {503: 3, 202: 1}
    assert stats.accepted == 2


def test_gives_up_after_max_attempts() -> None:
    ingest = FakeIngest(fail_first=100)
    stats = asyncio.run(_run(ingest, [_upload(1)], max_attempts=3))
    assert ingest.requests == 3
    assert stats.uploads_failed == 1 and stats.uploads_ok == 0
    assert "503" in stats.errors[0]


def test_non_retryable_status_is_not_retried() -> None:
    ingest = FakeIngest()
    stats = asyncio.run(_run(ingest, [Upload(T0, "dev-unknown", "rep-0001", [{"x": 1}])]))
    assert ingest.requests == 1
    assert stats.uploads_failed == 1 and stats.http_status == {401: 1}


def test_connection_errors_are_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    stats = asyncio.run(post_uploads(
        f"http://127.0.0.1:{port}", [_upload(1)], {"dev-rep-0001": "tok-1"}, speedup=0,
        concurrency=1, start_at=None, max_attempts=3, backoff_s=0.01))
    assert stats.retries == 2 and stats.uploads_failed == 1


def test_pacing_follows_send_at() -> None:
    ingest = FakeIngest()
    ups = [_upload(i, n=1, at_s=60.0 * i) for i in range(4)]  # a minute apart
    stats = asyncio.run(_run(ingest, ups, speedup=300.0))  # 0.2 s apart on the wall clock
    gaps = [b - a for a, b in zip(ingest.arrivals, ingest.arrivals[1:], strict=False)]
    assert all(0.15 < g < 0.4 for g in gaps), gaps
    assert stats.uploads_ok == 4
