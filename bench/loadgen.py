"""A load generator for ``POST /v1/events``: many devices, batches of events, aiohttp.

Devices are registered the way `geotel devices add` does it (a token per device, published on
the devices topic), and the generator waits until the ingest process has loaded them. Bodies
are built before the clock starts so the generator spends its CPU on HTTP, not on JSON.

Two modes: ``closed`` (``concurrency`` requests always in flight: the most the server takes)
and ``paced`` (requests started at a fixed rate, bounded in flight: for latency at a load).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import orjson
from common import wait_for

LON0, LAT0 = 13.40, 52.52  # inside the sample world


@dataclass
class Device:
    device_id: str
    rep_id: str
    token: str


def register_devices(settings: Any, base: str, n: int, prefix: str = "bench") -> list[Device]:
    """Issue and publish ``n`` device tokens; wait until ``base``'s ingest knows them."""
    from streams.devices import issue
    from streams.runtime import publish_devices

    now = dt.datetime.now(dt.UTC)
    devices, recs = [], []
    for i in range(n):
        dev, rep = f"{prefix}-dev-{i:05d}", f"{prefix}-rep-{i:05d}"
        token, rec = issue(dev, rep, now)
        devices.append(Device(dev, rep, token))
        recs.append(rec)
    with httpx.Client() as http:
        before = int(http.get(base + "/health", timeout=5).json()["components"]["devices"]
                     ["tokens"])
        publish_devices(settings, recs)
        wait_for(lambda: int(http.get(base + "/health", timeout=5).json()["components"]
                             ["devices"]["tokens"]) >= before + n, 60, "device tokens loaded")
    return devices


def ping_body(dev: Device, n_events: int, rng: random.Random,
              now: dt.datetime) -> tuple[bytes, list[str]]:
    """A body of ``n_events`` pings of one device over the last hour; returns the ids too."""
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n_events)]
    t0 = now - dt.timedelta(minutes=60)
    lon = LON0 + rng.uniform(-0.15, 0.15)
    lat = LAT0 + rng.uniform(-0.08, 0.08)
    events = []
    for k, eid in enumerate(ids):
        lon += rng.gauss(0, 0.0003)
        lat += rng.gauss(0, 0.0002)
        events.append({"event_id": eid, "device_id": dev.device_id, "rep_id": dev.rep_id,
                       "kind": "ping",
                       "ts": (t0 + dt.timedelta(seconds=30 * k)).isoformat(),
                       "lat": round(lat, 6), "lon": round(lon, 6),
                       "accuracy_m": round(rng.uniform(4, 25), 1), "provider": "gps",
                       "speed_mps": round(abs(rng.gauss(5, 4)), 1),
                       "battery_pct": round(rng.uniform(20, 100), 1)})
    return orjson.dumps({"events": events}), ids


@dataclass
class LoadStats:
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    latencies_s: list[float] = field(default_factory=list)
    status: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # the generator's own CPU time

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.elapsed_s if self.elapsed_s else 0.0


Body = tuple[str, bytes]  # (token, body)
OnAccepted = Callable[[int, float], None]  # (index of the body, time the 202 arrived)


async def _post(session: aiohttp.ClientSession, url: str, body: Body, stats: LoadStats,
                record: bool) -> bool:
    token, data = body
    t = time.perf_counter()
    try:
        async with session.post(url, data=data, headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json"}) as r:
            payload = await r.read()
            status = r.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        if record:
            stats.errors[type(exc).__name__] += 1
        return False
    lat = time.perf_counter() - t
    if record:
        stats.requests += 1
        stats.status[status] += 1
        if status == 202:
            doc = orjson.loads(payload)
            stats.accepted += int(doc["accepted"])
            stats.rejected += int(doc["rejected"])
            stats.latencies_s.append(lat)
    return status == 202


async def closed_loop(base: str, bodies: list[Body], concurrency: int, duration_s: float,
                      warmup_s: float = 1.0) -> LoadStats:
    """``concurrency`` requests in flight, cycling over ``bodies``, for ``duration_s`` after a
    warm-up; only requests started after the warm-up and finished in time count."""
    url = base + "/v1/events"
    stats = LoadStats()
    counter = 0
    conn = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        t_measure, t_end = start + warmup_s, start + warmup_s + duration_s

        async def worker() -> None:
            nonlocal counter
            while True:
                now = loop.time()
                if now >= t_end:
                    return
                body = bodies[counter % len(bodies)]
                counter += 1
                record = now >= t_measure
                await _post(session, url, body, stats, record)
                if record and loop.time() > t_end:  # finished late: not in the window
                    stats.requests -= 1

        cpu0 = time.process_time()
        await asyncio.sleep(0)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        stats.cpu_s = time.process_time() - cpu0
        stats.elapsed_s = duration_s
    return stats


async def paced(base: str, bodies: list[Body], rate_per_s: float, max_in_flight: int = 64,
                on_accepted: OnAccepted | None = None) -> LoadStats:
    """Start one request every ``1 / rate_per_s`` seconds, each body once, in order."""
    url = base + "/v1/events"
    stats = LoadStats()
    sem = asyncio.Semaphore(max_in_flight)
    conn = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        cpu0 = time.process_time()
        tasks = []

        async def one(i: int) -> None:
            try:
                ok = await _post(session, url, bodies[i], stats, True)
                if ok and on_accepted is not None:
                    on_accepted(i, time.perf_counter())
            finally:
                sem.release()

        for i in range(len(bodies)):
            delay = t0 + i / rate_per_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await sem.acquire()
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        stats.elapsed_s = loop.time() - t0
        stats.cpu_s = time.process_time() - cpu0
    return stats


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process and its reaped children used so far."""
    import os

    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks
