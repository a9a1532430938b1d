"""``POST /v1/events``: the phones' upload endpoint.

Contract (docs/ingest.md): ``Authorization: Bearer <device token>``, JSON body
``{"events": [...]}`` with 1 to 500 events. The answer is 202 with one result per event
(``accepted``, ``duplicate`` or ``rejected`` with a reason), so a phone drops what was
rejected and retries nothing else. Accepted events are on ``telemetry.raw`` (key device_id),
acknowledged by the broker, BEFORE the 202 is sent (in the embedded profile ``produce`` also
has them fsynced to the upload journal first: streams/journal.py); if that fails or takes
longer than ``kafka.produce_timeout_s`` the answer is 503 with Retry-After and nothing is
accepted.
A token writes only as its own device and rep.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from processors.event_lint import lint_event
from processors.intake import TimeLimits, check_upload
from schemas.events import MAX_BATCH_EVENTS
from streams.devices import DeviceRegistry, Identity
from streams.metrics import Metrics

log = logging.getLogger(__name__)

Produce = Callable[[bytes, bytes], Awaitable[Any]]


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None


class TokenBucket:
    """Per-device rate limit: ``rate`` events/s sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, n: int) -> float:
        """Take ``n`` tokens; return 0 on success, else seconds to wait before retrying."""
        now = self.clock()
        level, last = self._state.get(key, (self.burst, now))
        level = min(self.burst, level + (now - last) * self.rate)
        if n > level:
            self._state[key] = (level, now)
            return max(0.1, (n - level) / self.rate)
        self._state[key] = (level - n, now)
        if len(self._state) > 200_000:  # bounded: forget devices idle long enough to be full
            cutoff = now - self.burst / self.rate
            self._state = {k: v for k, v in self._state.items() if v[1] >= cutoff}
        return 0.0


def _error(status: int, reason: str, detail: str, **headers: str) -> Reply:
    return Reply(status, {"error": reason, "detail": detail}, headers or None)


class IngestHandler:
    def __init__(
        self,
        registry: DeviceRegistry,
        produce: Produce,
        metrics: Metrics,
        limits: TimeLimits,
        *,
        max_body_bytes: int,
        produce_timeout_s: float,
        rate: TokenBucket,
        ready: Callable[[], bool] = lambda: True,
        late_cutoff: Callable[[str], dt.datetime | None] = lambda rep: None,
    ) -> None:
        self.registry = registry
        self.produce = produce
        self.metrics = metrics
        self.limits = limits
        self.max_body_bytes = max_body_bytes
        self.produce_timeout_s = produce_timeout_s
        self.rate = rate
        self.ready = ready
        # The rep's watermark minus sessions.lateness_s, where this process knows it (its
        # sessions stage holds the rep): an older event would be dead-lettered as too_late,
        # so it is refused here instead of answered `accepted` (docs/privacy.md).
        self.late_cutoff = late_cutoff

    async def handle(self, authorization: str | None, content_length: int | None,
                     read_body: Callable[[], Awaitable[bytes]]) -> Reply:
        reply = await self._handle(authorization, content_length, read_body)
        self.metrics.ingest_requests.labels(status=str(reply.status)).inc()
        return reply

    async def _handle(self, authorization: str | None, content_length: int | None,
                      read_body: Callable[[], Awaitable[bytes]]) -> Reply:
        if not self.ready():
            return _error(503, "starting", "the device registry is still loading",
                          **{"Retry-After": "2"})
        token = None
        if authorization and authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
        ident = self.registry.authenticate(token)
        if ident is None:
            return _error(401, "unauthorized", "missing, unknown or revoked device token",
                          **{"WWW-Authenticate": "Bearer"})
        if content_length is not None and content_length > self.max_body_bytes:
            return _error(413, "body_too_large", f"body of {content_length} bytes; at most "
                          f"{self.max_body_bytes}")
        try:
            body = await read_body()
        except TimeoutError:
            return _error(408, "body_timeout", "the request body did not arrive in time")
        except Exception as exc:  # aiohttp raises HTTPRequestEntityTooLarge past client_max_size
            if "too large" in str(exc).lower() or getattr(exc, "status", None) == 413:
                return _error(413, "body_too_large", f"at most {self.max_body_bytes} bytes")
            return _error(400, "unreadable_body", f"{type(exc).__name__}: {exc}"[:300])
        if len(body) > self.max_body_bytes:
            return _error(413, "body_too_large", f"at most {self.max_body_bytes} bytes")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, "invalid_json", f"body is not UTF-8 JSON: {exc}"[:300])
        if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
            return _error(400, "bad_shape", 'expected {"events": [ ... ]}')
        items: list[Any] = doc["events"]
        if not items:
            return _error(400, "empty_batch", "no events")
        if len(items) > MAX_BATCH_EVENTS:
            return _error(413, "batch_too_large", f"{len(items)} events; at most "
                          f"{MAX_BATCH_EVENTS} per request")
        wait = self.rate.take(ident.device_id, len(items))
        if wait > 0:
            return _error(429, "rate_limited", f"device {ident.device_id} is over its rate",
                          **{"Retry-After": str(math.ceil(wait))})
        return await self.accept(ident, items)

    async def accept(self, ident: Identity, items: list[Any]) -> Reply:
        """Judge and publish at most ``MAX_BATCH_EVENTS`` events of one device: 202 with a
        result per event, or 503 when the broker did not take them (nothing accepted)."""
        received_at = dt.datetime.now(dt.UTC)
        # Fields that will not be stored are named in the answer and counted (silent loss
        # before); an ambiguous unit is taken out of the event rather than stored wrong.
        linted = [lint_event(item) for item in items]
        checked, rejects = check_upload([item for item, _ in linted], received_at,
                                        self.limits)
        results: list[dict[str, Any] | None] = [None] * len(items)
        for rj in rejects:
            results[rj.index] = {"index": rj.index, "event_id": rj.event_id,
                                 "status": "rejected", "reason": rj.reason,
                                 "detail": rj.detail}
        accepted: list[int] = []
        bodies: list[bytes] = []
        seen: set[str] = set()
        cutoff = self.late_cutoff(ident.rep_id)
        for ev in checked:
            i, eid = ev.index, ev.event_id
            if ev.device_id != ident.device_id or ev.rep_id != ident.rep_id:
                self.metrics.spoof_attempts.inc()
                which = "device_id" if ev.device_id != ident.device_id else "rep_id"
                results[i] = {"index": i, "event_id": eid, "status": "rejected",
                              "reason": "identity_mismatch",
                              "detail": f"{which} does not match the device token"}
                continue
            if eid in seen:
                results[i] = {"index": i, "event_id": eid, "status": "duplicate",
                              "reason": "duplicate_in_batch"}
                continue
            if cutoff is not None:
                when = ev.when
                if when is not None and when < cutoff:
                    results[i] = {"index": i, "event_id": eid, "status": "rejected",
                                  "reason": "too_late",
                                  "detail": f"{when.isoformat()} is more than the lateness "
                                  f"bound before the rep's newest event (events before "
                                  f"{cutoff.isoformat()} no longer count)"}
                    continue
            seen.add(eid)
            accepted.append(i)
            # The checked event, not the raw item: unknown fields are dropped (they could be
            # nested beyond what a JSON encoder accepts), times are UTC.
            bodies.append(ev.body)
            results[i] = {"index": i, "event_id": eid, "status": "accepted"}
        if accepted:
            payload = b'{"events":[' + b",".join(bodies) + b"]}"
            try:
                fut = await asyncio.wait_for(self.produce(ident.device_id.encode(), payload),
                                             self.produce_timeout_s)
                await asyncio.wait_for(asyncio.shield(fut), self.produce_timeout_s)
            except Exception as exc:
                log.warning("broker did not acknowledge an upload of %d events: %r",
                            len(accepted), exc)
                self.metrics.ingest_events.labels(outcome="unavailable").inc(len(accepted))
                return _error(503, "broker_unavailable", "the events were not stored; retry",
                              **{"Retry-After": "5"})
        for i, (item, warns) in enumerate(linted):
            if warns:
                res = results[i]
                if res is None:  # every linted item has a result; nothing to annotate
                    continue
                res["warnings"] = [w.text() for w in warns]
                for w in warns:
                    self.metrics.field_warnings.labels(kind=item["kind"],
                                                       problem=w.problem).inc()
        n_rej = len(items) - len(accepted)
        self.metrics.ingest_events.labels(outcome="accepted").inc(len(accepted))
        self.metrics.ingest_events.labels(outcome="rejected").inc(n_rej)
        return Reply(202, {"accepted": len(accepted), "rejected": n_rej, "results": results})
