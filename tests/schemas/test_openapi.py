"""The OpenAPI document (streams/openapi.py): a valid OpenAPI 3.1 document by a maintained
validator, and every HTTP example of the docs validates against it."""

from __future__ import annotations

import asyncio
import datetime as dt
import typing
import uuid
from typing import Any

import orjson
import pytest
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel

from processors.intake import TimeLimits
from schemas.derived import IngestResponse
from schemas.events import UploadBatch
from schemas.http import EraseRequest, ErrorResponse, SqlFormat, SqlRequest
from streams.devices import DeviceRegistry, issue
from streams.ingest import IngestHandler, TokenBucket
from streams.metrics import Metrics
from streams.openapi import openapi_document, openapi_json
from streams.query import FORMATS
from tests.conftest import ROOT
from tests.schemas.openapi_examples import body_schema, errors, http_examples

DOCS = [ROOT / "docs" / "ingest.md", ROOT / "docs" / "analysts.md"]
#: The request model each documented request body is also checked with.
REQUEST_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("POST", "/v1/events"): UploadBatch, ("POST", "/v1/sql"): SqlRequest,
    ("POST", "/v1/admin/erase"): EraseRequest}
EXAMPLES = [ex for f in DOCS for ex in http_examples(f)]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document(version="1.2.3")


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validate_openapi(doc)  # raises on any violation of the OpenAPI 3.1 schema
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == "1.2.3"
    validate_openapi(orjson.loads(openapi_json()))  # what /openapi.json serves


def test_the_document_covers_the_api(doc: dict[str, Any]) -> None:
    assert set(doc["paths"]) == {"/v1/events", "/v1/sql", "/v1/map.json", "/v1/admin/erase",
                                 "/v1/map/rep.json", "/map/config.json",
                                 "/health", "/metrics", "/map", "/openapi.json",
                                 "/v1/owntracks", "/v1/osmand/{token}", "/v1/traccar/{token}",
                                 "/v1/overland", "/v1/gpslogger"}
    ops = [op for item in doc["paths"].values() for op in item.values()]
    assert len({op["operationId"] for op in ops}) == len(ops)
    # Traccar Client gets the empty answer Traccar's own server gives
    empty = {"/v1/osmand/{token}", "/v1/traccar/{token}"}
    json_ops = [p for p in doc["paths"]
                if (p.startswith("/v1/") or p == "/health") and p not in empty]
    for p in empty:
        assert set(doc["paths"][p]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    for p in json_ops:
        for op in doc["paths"][p].values():
            assert "application/json" in op["responses"][min(op["responses"])]["content"], p
    assert set(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(doc["paths"]["/map"]["get"]["responses"]["200"]["content"]) == {"text/html"}


def test_the_sql_formats_are_the_endpoints(doc: dict[str, Any]) -> None:
    assert set(typing.get_args(SqlFormat)) == set(FORMATS)
    content = doc["paths"]["/v1/sql"]["post"]["responses"]["200"]["content"]
    assert set(content) == {ctype for _, ctype in FORMATS.values()}


def test_the_docs_have_examples_of_each_endpoint() -> None:
    seen = {(ex.method, ex.path, ex.status) for ex in EXAMPLES}
    assert {("POST", "/v1/events", None), ("POST", "/v1/events", 202),
            ("POST", "/v1/sql", None), ("POST", "/v1/admin/erase", None)} <= seen
    kinds = {e["kind"] for ex in EXAMPLES if ex.path == "/v1/events" and ex.status is None
             for e in ex.body["events"]}
    assert kinds == {"ping", "check_in", "visit_submission"}


@pytest.mark.parametrize("ex", EXAMPLES, ids=[f"{ex.where}-{ex.path}-{ex.status or 'request'}"
                                              for ex in EXAMPLES])
def test_every_documented_example_validates(doc: dict[str, Any], ex: Any) -> None:
    problems = errors(doc, body_schema(doc, ex), ex.body)
    assert not problems, f"{ex.where}: {problems}"
    model = REQUEST_MODELS.get((ex.method, ex.path)) if ex.status is None else None
    if model is not None:  # and the server's own model accepts it too
        model.model_validate(ex.body)


def test_a_broken_example_would_fail(doc: dict[str, Any]) -> None:
    (ex,) = [e for e in EXAMPLES if e.path == "/v1/events" and e.status is None][:1]
    schema = body_schema(doc, ex)
    ping = next(e for e in ex.body["events"] if e["kind"] == "ping")
    # event_id is optional (derived when absent), but a malformed one is an error
    for broken in ({**ping, "lat": 91}, {k: v for k, v in ping.items() if k != "device_id"},
                   {**ping, "event_id": "not-a-uuid"}, {**ping, "kind": "teleport"}):
        assert errors(doc, schema, {"events": [broken]}), broken
    assert errors(doc, schema, {"events": []})
    sql = body_schema(doc, next(e for e in EXAMPLES if e.path == "/v1/sql"))
    assert errors(doc, sql, {"sql": "SELECT 1", "format": "xml"})


# -- the ingest handler's real answers match the document -------------------------------
def _handler(rate: float = 1000.0) -> tuple[IngestHandler, str]:
    reg = DeviceRegistry()
    token, rec = issue("phone-42", "rep-0001", dt.datetime.now(dt.UTC))
    reg.apply(rec)

    async def produce(key: bytes, value: bytes) -> Any:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    return IngestHandler(reg, produce, Metrics(), TimeLimits(), max_body_bytes=10_000,
                         produce_timeout_s=1.0, rate=TokenBucket(rate, 5)), token


def _event(**kw: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {"event_id": str(uuid.uuid4()), "device_id": "phone-42", "rep_id": "rep-0001",
            "kind": "ping", "ts": now.isoformat(), "lat": 52.5, "lon": 13.4, **kw}


def test_the_ingest_handlers_answers_match_the_document(doc: dict[str, Any]) -> None:
    handler, token = _handler()
    ev = _event()
    cases = [
        (f"Bearer {token}", {"events": [ev, ev, _event(rep_id="rep-other"), _event(lat=99)]}),
        (f"Bearer {token}", b"not json"),
        (None, {"events": [_event()]}),
        (f"Bearer {token}", {"events": [_event()] * 6}),  # over the burst of 5: 429
        (f"Bearer {token}", b"x" * 20_000),
    ]
    statuses = []
    for auth, body in cases:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)

        async def read(raw: bytes = raw) -> bytes:
            return raw

        reply = asyncio.run(handler.handle(auth, len(raw), read))
        statuses.append(reply.status)
        schema = doc["paths"]["/v1/events"]["post"]["responses"][str(reply.status)]
        problems = errors(doc, schema["content"]["application/json"]["schema"],
                          orjson.loads(orjson.dumps(reply.body)))
        assert not problems, (reply.status, reply.body, problems)
        model = IngestResponse if reply.status == 202 else ErrorResponse
        model.model_validate(reply.body)
    assert statuses == [202, 400, 401, 429, 413]
