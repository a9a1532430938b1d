"""Web views of the worker: ingest, health, read-only SQL, Prometheus metrics.

Also the device-registry tail: a background task reading the compacted ``geotel.devices``
topic from the beginning, so every ingest process sees every token.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
import orjson
from aiokafka.structs import TopicPartition
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import journal as upload_journal
from streams.auth import bearer_ok
from streams.batch_consumer import LogResetWatch, caught_up, record_probe
from streams.broker import make_consumer
from streams.devices import DeviceRegistry, decode, device_key
from streams.ingest import IngestHandler, TokenBucket
from streams.openapi import register_openapi
from streams.query import QueryError

log = logging.getLogger(__name__)


class RegistryTail:
    """Keeps a DeviceRegistry up to date from the devices topic."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.registry = DeviceRegistry()
        self.caught_up = False
        self.log_reset = LogResetWatch(record_probe(lambda: make_consumer(pipeline.settings)))
        self.key = device_key(pipeline.settings)
        self.ignored = 0  # records without a valid signature

    async def run(self) -> None:
        topic = self.pipeline.devices_topic_name
        while True:
            consumer = make_consumer(self.pipeline.settings)
            try:
                await consumer.start()
                parts = consumer.partitions_for_topic(topic)
                while not parts:
                    await asyncio.sleep(0.5)
                    await consumer._client.force_metadata_update()  # topic may be new
                    parts = consumer.partitions_for_topic(topic)
                tps = [TopicPartition(topic, p) for p in parts]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                while True:
                    batch = await consumer.getmany(timeout_ms=500)
                    # Tokens issued after an in-memory broker restart sit below the old
                    # position; without this they would stay unknown to this process.
                    await self.log_reset.check(consumer, tps, batch)
                    for records in batch.values():
                        for r in records:
                            if r.value is None:
                                continue
                            try:
                                self.registry.apply(decode(r.value, self.key))
                            except Exception as exc:
                                self.ignored += 1
                                log.error("ignoring a device record at %s/%s: %s",
                                          r.partition, r.offset, exc)
                    if not self.caught_up and await caught_up(consumer, tps):
                        self.caught_up = True
                        log.info("device registry loaded: %d tokens", len(self.registry))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("device registry tail failed, retrying: %r", exc)
                await asyncio.sleep(1.0)
            finally:
                await consumer.stop()


def _late_cutoff(pipeline: Any, rep: str) -> Any:
    """Events of ``rep`` older than this are ``too_late`` for this process's sessions stage
    (None where it does not hold the rep, or runs no sessions stage)."""
    stage = getattr(pipeline, "sessions", None)
    return stage.late_cutoff(rep) if stage is not None else None


def register_web(pipeline: Any, *, ingest: bool = True, sql: bool = True) -> RegistryTail | None:
    """Add the views to ``pipeline.app``; start the registry tail when ingest is served."""
    app: faust.App = pipeline.app
    settings = pipeline.settings
    tail: RegistryTail | None = None

    if ingest:
        tail = RegistryTail(pipeline)
        raw_topic = pipeline.raw_topic

        async def produce(key: bytes, value: bytes) -> Any:
            return await raw_topic.send(key=key, value=value)

        handler = IngestHandler(
            tail.registry, upload_journal.for_ingest(settings, produce), pipeline.metrics,
            pipeline.limits,
            max_body_bytes=settings.ingest.max_body_bytes,
            produce_timeout_s=settings.kafka.produce_timeout_s,
            rate=TokenBucket(settings.ingest.rate_limit_events_per_s,
                             settings.ingest.rate_limit_burst_events),
            ready=lambda: tail is not None and tail.caught_up,
            late_cutoff=lambda rep: _late_cutoff(pipeline, rep),
        )
        pipeline.ingest_handler = handler
        pipeline.registry_tail = tail

        @app.task
        async def _devices() -> None:
            assert tail is not None
            await tail.run()

        @app.page("/v1/events")
        class Events(View):
            async def post(self, request: Request) -> Response:
                req: Any = request
                reply = await handler.handle(
                    req.headers.get("Authorization"), req.content_length,
                    lambda: asyncio.wait_for(req.read(), settings.web.body_timeout_s))
                return self.json(reply.body, status=reply.status, headers=reply.headers)

        from streams.trackers import register_trackers

        pipeline.tracker_ingest = register_trackers(app, handler, settings.web.body_timeout_s)

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            body = pipeline.health()
            # 503 until the process can serve (device registry loaded), so a readiness probe
            # or load balancer sends no uploads to a process that would refuse them.
            ok = body["status"] in ("ok", "degraded")
            return self.json(body, status=200 if ok else 503)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            pipeline.refresh_gauges()
            data = generate_latest(pipeline.metrics.registry)
            return self.bytes(data, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    if pipeline.geo_enabled:
        from streams.geosets import GeoSetTail

        geo_tail = GeoSetTail(pipeline, pipeline.enricher)
        pipeline.geo_tail = geo_tail

        @app.task
        async def _geosets() -> None:
            await geo_tail.run()

    if sql and (pipeline.analyst is not None or _store_of(pipeline) is not None):
        register_sql(pipeline)

    if pipeline.clickhouse is not None:
        from streams.reps import handle_admin_erase

        @app.page("/v1/admin/erase")
        class AdminErase(View):
            async def post(self, request: Request) -> Response:
                req: Any = request
                status, body = await handle_admin_erase(
                    pipeline, req.headers.get("Authorization"), await req.read())
                return self.json(body, status=status)

    from streams.map import register_map

    register_map(pipeline)
    register_openapi(app)
    return tail


#: Largest /v1/sql request body.
MAX_SQL_BODY_BYTES = 256 * 1024


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (a longer one is cut there)."""
    chunks, n = [], 0
    while n < limit:
        chunk = await request.content.read(limit - n)
        if not chunk:
            break
        chunks.append(chunk)
        n += len(chunk)
    return b"".join(chunks)


def _store_of(pipeline: Any) -> Any:
    from sinks.store_client import StoreClient

    return pipeline.clickhouse if isinstance(pipeline.clickhouse, StoreClient) else None


def register_sql(pipeline: Any) -> None:
    """``POST /v1/sql``: analyst queries (streams/query.py), Bearer query token, a deadline."""
    app: faust.App = pipeline.app
    settings = pipeline.settings
    token = settings.query.token
    deadline_s = settings.query.max_execution_s + 5.0
    store = _store_of(pipeline)

    def run(query: str, fmt: str) -> tuple[bytes, str]:
        if pipeline.analyst is not None:
            result: tuple[bytes, str] = pipeline.analyst.run(query, fmt)
            return result
        return store.analyst(query, fmt)  # type: ignore[no-any-return]

    @app.page("/v1/sql")
    class Sql(View):
        async def post(self, request: Request) -> Response:
            req: Any = request
            if token is not None and not bearer_ok(req.headers.get("Authorization"), [token]):
                return self.json({"error": "unauthorized"}, status=401,
                                 headers={"WWW-Authenticate": "Bearer"})
            if (req.content_length or 0) > MAX_SQL_BODY_BYTES:
                return self.json({"error": "too_large",
                                  "detail": f"at most {MAX_SQL_BODY_BYTES} bytes"}, status=413)
            try:
                raw = await asyncio.wait_for(read_body(req, MAX_SQL_BODY_BYTES + 1),
                                             settings.web.body_timeout_s)
                if len(raw) > MAX_SQL_BODY_BYTES:
                    return self.json({"error": "too_large",
                                      "detail": f"at most {MAX_SQL_BODY_BYTES} bytes"},
                                     status=413)
                doc = orjson.loads(raw)
                query, fmt = doc["sql"], doc.get("format", "json")
                if not isinstance(query, str) or not isinstance(fmt, str):
                    raise TypeError("sql and format are strings")
            except TimeoutError:
                return self.json({"error": "timeout", "detail": "request body too slow"},
                                 status=408)
            except Exception:
                return self.json({"error": "bad_request",
                                  "detail": 'expected {"sql": "...", "format": "json"}'},
                                 status=400)
            loop = asyncio.get_running_loop()
            try:
                body, ctype = await asyncio.wait_for(
                    loop.run_in_executor(pipeline.analyst_executor, run, query, fmt),
                    deadline_s)
            except QueryError as exc:
                headers = {"Retry-After": "1"} if exc.status == 429 else None
                return self.json({"error": exc.code, "detail": str(exc)}, status=exc.status,
                                 headers=headers)
            except TimeoutError:
                return self.json({"error": "timeout", "detail": f"no answer within "
                                  f"{deadline_s:.0f} s"}, status=504)
            return self.bytes(body, content_type=ctype)
