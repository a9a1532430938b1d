"""Post simulated uploads to the ingest endpoint, paced like the phones would send them.

Pacing maps simulated time onto wall time: an upload with ``send_at`` is sent
``(send_at - start_at) / speedup`` seconds after the call starts. Retries follow what a
well-behaved phone does: back off on 429/502/503/504 and on connection errors, honour
``Retry-After``, give up after a bounded number of attempts. Uploads of one device go out in
order (a phone has one upload queue), different devices in parallel up to ``concurrency``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from simulator.uploads import Upload

RETRY_STATUSES = frozenset({429, 502, 503, 504})
SUCCESS_STATUSES = frozenset({200, 202})


@dataclass
class UploadStats:
    uploads: int = 0  # uploads attempted
    uploads_ok: int = 0  # answered 200/202
    uploads_failed: int = 0  # gave up (retries exhausted) or answered with a non-retryable error
    events_sent: int = 0  # events in successful uploads
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    retries: int = 0
    http_status: Counter[int] = field(default_factory=Counter)  # every response, retries included
    reject_reasons: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # last error of each failed upload (capped)
    elapsed_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Retry(Exception):
    def __init__(self, reason: str, after_s: float | None = None) -> None:
        super().__init__(reason)
        self.after_s = after_s


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


async def post_uploads(
    base_url: str,
    uploads: Iterable[Upload],
    tokens: dict[str, str],
    speedup: float,
    concurrency: int,
    start_at: dt.datetime | None,
    *,
    max_attempts: int = 5,
    backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
    timeout_s: float = 30.0,
    session: aiohttp.ClientSession | None = None,
    on_upload: Callable[[int], None] | None = None,
) -> UploadStats:
    """POST every upload to ``{base_url}/v1/events``; return what the server said.

    ``tokens`` maps device id to bearer token; ``speedup`` 0 or ``inf`` sends as fast as
    possible; ``start_at`` is the simulated instant that maps to "now" (default: the first
    upload's ``send_at``). Uploads must be ordered by ``send_at`` for pacing to hold.
    ``on_upload`` is called with the number of events of each upload once it is answered
    or given up (a progress bar).
    """
    url = base_url.rstrip("/") + "/v1/events"
    stats = UploadStats()
    paced = speedup > 0 and math.isfinite(speedup)
    sem = asyncio.Semaphore(max(1, concurrency))
    device_locks: dict[str, asyncio.Lock] = {}
    jitter = random.Random(0)  # backoff jitter need not be secret, only spread out
    own_session = session is None
    client = session or aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        connector=aiohttp.TCPConnector(limit=max(1, concurrency)),
    )
    loop = asyncio.get_running_loop()
    wall0 = loop.time()
    t0 = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()

    async def one(up: Upload, lock: asyncio.Lock) -> None:
        try:
            async with lock:
                await _post_with_retries(client, url, up, tokens, stats, max_attempts,
                                         backoff_s, max_backoff_s, jitter)
            if on_upload is not None:
                on_upload(len(up.events))
        finally:
            sem.release()

    try:
        for up in uploads:
            if paced:
                sim0 = start_at or up.send_at
                start_at = sim0
                delay = (up.send_at - sim0).total_seconds() / speedup - (loop.time() - wall0)
                if delay > 0:
                    await asyncio.sleep(delay)
            await sem.acquire()
            lock = device_locks.setdefault(up.device_id, asyncio.Lock())
            task = asyncio.create_task(one(up, lock))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        if own_session:
            await client.close()
    stats.elapsed_s = time.perf_counter() - t0
    return stats


async def _post_with_retries(
    client: aiohttp.ClientSession, url: str, up: Upload, tokens: dict[str, str],
    stats: UploadStats, max_attempts: int, backoff_s: float, max_backoff_s: float,
    jitter: random.Random,
) -> None:
    stats.uploads += 1
    headers = {"Authorization": f"Bearer {tokens.get(up.device_id, '')}"}
    body = {"events": up.events}
    last = ""
    for attempt in range(1, max_attempts + 1):
        try:
            async with client.post(url, json=body, headers=headers) as resp:
                stats.http_status[resp.status] += 1
                if resp.status in SUCCESS_STATUSES:
                    _count(stats, await resp.json(content_type=None), len(up.events))
                    stats.uploads_ok += 1
                    return
                text = (await resp.text())[:200]
                if resp.status not in RETRY_STATUSES:
                    last = f"HTTP {resp.status}: {text}"
                    break  # 4xx: resending the same body cannot help
                raise _Retry(f"HTTP {resp.status}", _retry_after(resp.headers.get("Retry-After")))
        except (TimeoutError, _Retry, aiohttp.ClientError) as exc:
            last = str(exc) or type(exc).__name__
            if attempt == max_attempts:
                break
            stats.retries += 1
            wait = exc.after_s if isinstance(exc, _Retry) else None
            if wait is None:
                wait = min(max_backoff_s, backoff_s * 2 ** (attempt - 1)) * jitter.uniform(0.5, 1)
            await asyncio.sleep(min(wait, max_backoff_s))
    stats.uploads_failed += 1
    if len(stats.errors) < 100:
        stats.errors.append(f"{up.device_id} {up.send_at.isoformat()}: {last}")


def _count(stats: UploadStats, body: Any, n_events: int) -> None:
    stats.events_sent += n_events
    results = body.get("results") if isinstance(body, dict) else None
    if not results:
        # A server that only reports totals: trust them.
        stats.accepted += int(body.get("accepted", 0)) if isinstance(body, dict) else 0
        stats.rejected += int(body.get("rejected", 0)) if isinstance(body, dict) else 0
        return
    for r in results:
        status = r.get("status")
        if status == "accepted":
            stats.accepted += 1
        elif status == "duplicate":
            stats.duplicates += 1
        else:
            stats.rejected += 1
            stats.reject_reasons[str(r.get("reason") or "unknown")] += 1
