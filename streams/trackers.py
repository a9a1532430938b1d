"""Endpoints for the tracker apps people already use (docs/ingest.md, "Tracker apps").

``/v1/owntracks`` (OwnTracks HTTP mode), ``/v1/osmand/{token}`` and its alias
``/v1/traccar/{token}`` (Traccar Client: OsmAnd query strings up to v8, JSON from v9),
``/v1/overland`` (Overland for iOS) and ``/v1/gpslogger`` (GPSLogger's custom URL). Thin
glue: the token is found where the app can put it, the protocol is converted by
``processors.adapters``, the events are judged and published by ``IngestHandler.accept``
exactly as ``/v1/events`` does (batches over 500 points in several uploads), and the app
gets the answer it expects: a 2xx once its points are on the broker (a point that can never
be valid is counted and dead-lettered, not resent forever), 401 for a bad token and 429/503
with Retry-After when it should send the same points again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from processors import adapters
from schemas.events import MAX_BATCH_EVENTS
from streams.devices import Identity
from streams.ingest import IngestHandler

log = logging.getLogger(__name__)

#: app -> (converter input: "json" or "params", WWW-Authenticate scheme on a 401)
APPS: dict[str, tuple[str, str]] = {
    "owntracks": ("json", 'Basic realm="geotel"'),
    "osmand": ("params", "Bearer"),
    "overland": ("json", "Bearer"),
    "gpslogger": ("params", 'Basic realm="geotel"'),
}


@dataclass
class AppRequest:
    method: str
    authorization: str | None
    path_token: str | None
    query: Mapping[str, str]
    content_type: str
    content_length: int | None
    read_body: Callable[[], Awaitable[bytes]]


@dataclass
class AppReply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] | None = None


def _json(status: int, doc: object, **headers: str) -> AppReply:
    return AppReply(status, orjson.dumps(doc), headers=headers or None)


def _error(status: int, reason: str, detail: str, **headers: str) -> AppReply:
    return _json(status, {"error": reason, "detail": detail}, **headers)


def request_token(req: AppRequest) -> str | None:
    """The device token: in the URL path (Traccar Client, which can send nothing else), as a
    Bearer token, or as the password of HTTP Basic (OwnTracks, GPSLogger; the user name is
    free). Never from the query string: URLs end up in logs and histories, and the path is
    the one exception, only where the app leaves no choice."""
    if req.path_token:
        return req.path_token
    auth = (req.authorization or "").strip()
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if auth[:6].lower() == "basic ":
        try:
            user, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode(
                "utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user
    return None


class TrackerIngest:
    def __init__(self, ingest: IngestHandler) -> None:
        self.ingest = ingest
        m = ingest.metrics
        self.requests, self.points = m.ingest_app_requests, m.ingest_app_points

    async def handle(self, app: str, req: AppRequest) -> AppReply:
        reply = await self._handle(app, req)
        self.requests.labels(app=app, status=str(reply.status)).inc()
        return reply

    async def _handle(self, app: str, req: AppRequest) -> AppReply:
        ingest = self.ingest
        if not ingest.ready():
            return _error(503, "starting", "the device registry is still loading",
                          **{"Retry-After": "2"})
        kind, scheme = APPS[app]
        ident = ingest.registry.authenticate(request_token(req))
        if ident is None:
            return _error(401, "unauthorized", "missing, unknown or revoked device token",
                          **{"WWW-Authenticate": scheme})
        limit = ingest.max_body_bytes
        if req.content_length is not None and req.content_length > limit:
            return _error(413, "body_too_large", f"at most {limit} bytes")
        try:
            body = await req.read_body()
        except TimeoutError:
            return _error(408, "body_timeout", "the request body did not arrive in time")
        except Exception as exc:
            return _error(400, "unreadable_body", f"{type(exc).__name__}: {exc}"[:300])
        if len(body) > limit:
            return _error(413, "body_too_large", f"at most {limit} bytes")
        try:
            conv = self._convert(app, kind, req, body, ident)
        except ValueError as exc:
            return _error(400, "bad_shape", str(exc)[:300])
        if conv is None:  # OwnTracks posts an empty body when a friend is deleted
            return self._answer(app, 0, 0, 0)
        n = len(conv.events)
        if n:
            wait = ingest.rate.take(ident.device_id, n)
            if wait > 0:
                return _error(429, "rate_limited", f"device {ident.device_id} is over its rate",
                              **{"Retry-After": str(math.ceil(wait))})
        accepted = duplicate = 0
        # Points the app will not resend (it gets a success) but that cannot be stored go to
        # telemetry.raw as they are, so the worker dead-letters them with their reason
        # (telemetry.deadletter and the deadletters table): visible, not silently gone.
        dead: list[Any] = [self._unconverted(app, ident, req, body, i, why)
                           for i, why in conv.rejects]
        for start in range(0, n, MAX_BATCH_EVENTS):
            chunk = conv.events[start:start + MAX_BATCH_EVENTS]
            r = await ingest.accept(ident, chunk)
            if r.status != 202:  # the broker did not take them: the app must resend
                return AppReply(r.status, orjson.dumps(r.body), headers=r.headers)
            for j, res in enumerate(r.body["results"]):
                if res["status"] == "accepted":
                    accepted += 1
                elif res["status"] == "duplicate":
                    duplicate += 1
                else:
                    dead.append(chunk[j])
        rejected = len(dead)
        if dead:
            await self._dead_letter(app, ident, dead)
        self.points.labels(app=app, outcome="accepted").inc(accepted)
        self.points.labels(app=app, outcome="duplicate").inc(duplicate)
        self.points.labels(app=app, outcome="rejected").inc(rejected)
        self.points.labels(app=app, outcome="skipped").inc(conv.skipped)
        return self._answer(app, accepted, rejected, duplicate)

    @staticmethod
    def _unconverted(app: str, ident: Identity, req: AppRequest, body: bytes, index: int,
                     why: str) -> dict[str, Any]:
        """A point the adapter could not convert, as the worker will dead-letter it: the
        app, the reason and what the app sent (the point of a batch, else the request)."""
        point: Any
        try:
            doc = orjson.loads(body) if body.strip() else dict(req.query)
        except orjson.JSONDecodeError:
            doc = body.decode("utf-8", "replace")[:10_000]
        point = doc
        if isinstance(doc, dict):
            many = doc.get("locations") if app == "overland" else doc.get("location")
            if isinstance(many, list) and 0 <= index < len(many):
                point = many[index]
        return {"kind": f"{app}_point", "device_id": ident.device_id, "rep_id": ident.rep_id,
                "error": why, "point": point}

    async def _dead_letter(self, app: str, ident: Identity, items: list[Any]) -> None:
        for item in items[:3]:
            log.warning("%s: a point of device %s cannot be stored: %s", app,
                        ident.device_id, item.get("error") if "error" in item else item)
        payload = orjson.dumps({"events": items}, default=str)
        ingest = self.ingest
        try:
            fut = await asyncio.wait_for(ingest.produce(ident.device_id.encode(), payload),
                                         ingest.produce_timeout_s)
            await asyncio.wait_for(asyncio.shield(fut), ingest.produce_timeout_s)
        except Exception as exc:  # the valid points are stored; these stay counted and logged
            log.warning("%s: %d invalid points of device %s not dead-lettered: %r", app,
                        len(items), ident.device_id, exc)

    @staticmethod
    def _convert(app: str, kind: str, req: AppRequest, body: bytes, ident: Identity
                 ) -> adapters.Converted | None:
        dev, rep = ident.device_id, ident.rep_id
        doc: Any = None
        if body.strip() and (kind == "json" or body.lstrip()[:1] in (b"{", b"[")):
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"body is not UTF-8 JSON: {exc}") from None
        if app == "owntracks":
            return None if doc is None else adapters.owntracks(doc, dev, rep)
        if app == "overland":
            if doc is None:
                raise ValueError('expected {"locations": [...]}')
            conv = adapters.overland(doc, dev, rep)
            if conv.rejects and conv.rejects[0][0] == -1:
                raise ValueError(conv.rejects[0][1])
            return conv
        if app == "osmand" and isinstance(doc, dict) and "location" in doc:
            return adapters.traccar_json(doc, dev, rep)  # Traccar Client v9+
        if doc is not None:
            raise ValueError("expected query or form parameters")
        params = dict(req.query)
        if body.strip():
            try:
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                raise ValueError("form body is not UTF-8") from None
        if app == "osmand":
            return adapters.osmand(params, dev, rep)
        return adapters.gpslogger(params, dev, rep)

    @staticmethod
    def _answer(app: str, accepted: int, rejected: int, duplicate: int) -> AppReply:
        if app == "owntracks":
            return _json(200, [])  # the app reads a list of messages to show; none
        if app == "overland":
            # Overland deletes the batch only on "result": "ok"; anything else is resent.
            return _json(200, {"result": "ok", "accepted": accepted, "rejected": rejected,
                               "duplicate": duplicate})
        if app == "osmand":
            return AppReply(200, b"", content_type="text/plain")
        return _json(200, {"accepted": accepted, "rejected": rejected, "duplicate": duplicate})


def register_trackers(app: Any, ingest: IngestHandler, body_timeout_s: float) -> TrackerIngest:
    """The tracker-app views on the Faust web app (beside ``/v1/events``)."""
    from faust.web import Request, Response, View

    trackers = TrackerIngest(ingest)

    def route(name: str, path: str) -> None:
        async def serve(view: View, request: Request, token: str | None) -> Response:
            req: Any = request
            reply = await trackers.handle(name, AppRequest(
                method=req.method, authorization=req.headers.get("Authorization"),
                path_token=token, query=req.query, content_type=req.content_type or "",
                content_length=req.content_length,
                read_body=lambda: asyncio.wait_for(req.read(), body_timeout_s)))
            return view.bytes(reply.body, content_type=reply.content_type,
                              status=reply.status, headers=reply.headers)

        class Tracker(View):
            async def get(self, request: Request, token: str | None = None) -> Response:
                return await serve(self, request, token)

            async def post(self, request: Request, token: str | None = None) -> Response:
                return await serve(self, request, token)

        app.page(path, name=f"tracker:{path}")(Tracker)

    route("owntracks", "/v1/owntracks")
    route("osmand", "/v1/osmand/{token}")
    route("osmand", "/v1/traccar/{token}")
    route("overland", "/v1/overland")
    route("gpslogger", "/v1/gpslogger")
    return trackers
