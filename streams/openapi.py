"""``GET /openapi.json``: the OpenAPI 3.1 document of the HTTP API, generated from the
request and response models (schemas/events.py, schemas/derived.py, schemas/http.py), so
the document cannot drift from what the views validate and answer. Pure apart from
:func:`register_openapi`."""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from schemas.derived import IngestResponse
from schemas.events import MAX_BATCH_EVENTS, UploadBatch
from schemas.http import (
    EraseRequest,
    EraseResponse,
    ErrorResponse,
    Health,
    MapRepDay,
    MapSnapshot,
    SqlJsonResponse,
    SqlRequest,
)

REF = "#/components/schemas/{model}"
#: Models in the document, and whether they are read (requests) or written (responses).
MODELS: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
    (UploadBatch, "validation"), (SqlRequest, "validation"), (EraseRequest, "validation"),
    (IngestResponse, "serialization"), (ErrorResponse, "serialization"),
    (SqlJsonResponse, "serialization"), (EraseResponse, "serialization"),
    (Health, "serialization"), (MapSnapshot, "serialization"), (MapRepDay, "serialization"),
)
#: Content types of ``POST /v1/sql`` per ``format`` (streams/query.py FORMATS).
SQL_CONTENT = {"application/x-ndjson": "jsonl", "text/csv": "csv",
               "text/tab-separated-values": "tsv", "application/vnd.apache.parquet": "parquet",
               "text/plain": "table"}


def _version() -> str:
    try:
        return metadata.version("geotel")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ref}}}


def _errors(refs: dict[Any, Any], *statuses: tuple[int, str]) -> dict[str, Any]:
    err = refs[(ErrorResponse, "serialization")]["$ref"]
    out: dict[str, Any] = {}
    for status, why in statuses:
        resp: dict[str, Any] = {"description": why, "content": _json(err)}
        if status in (429, 503):
            resp["headers"] = {"Retry-After": {"description": "Seconds to wait before "
                                               "resending the same request.",
                                               "schema": {"type": "integer"}}}
        out[str(status)] = resp
    return out


def _tracker_paths(refs: dict[Any, Any]) -> dict[str, Any]:
    """The tracker-app endpoints (streams/trackers.py): bodies are the apps' own protocols
    (docs/ingest.md, "Tracker apps"), so they are described, not modelled."""
    obj = {"type": "object"}
    token = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "The device token (the app can send nothing else: HTTPS only)."}
    errors = _errors(refs, (400, "Not the app's protocol."),
                     (401, "Missing, unknown or revoked device token (the app retries)."),
                     (413, "Body over the size limit."), (429, "The device is over its rate."),
                     (503, "Broker did not acknowledge in time, or starting."))
    ok = {"description": "The points are on the broker (points that can never be valid are "
                         "counted in geotel_ingest_app_points_total, not resent)."}

    def op(name: str, summary: str, body: dict[str, Any] | None, answer: dict[str, Any],
           security: list[dict[str, list[str]]], params: list[dict[str, Any]] | None = None,
           methods: tuple[str, ...] = ("post",)) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in methods:
            o: dict[str, Any] = {
                "summary": summary, "operationId": f"{m}{name}", "tags": ["trackers"],
                "description": "docs/ingest.md, 'Tracker apps'.", "security": security,
                "responses": {"200": {**ok, **answer}, **errors}}
            if params:
                o["parameters"] = params
            if body is not None and m == "post":
                o["requestBody"] = {"required": False, "content": body}
            out[m] = o
        return out

    osm_params: list[dict[str, Any]] = [token, *({"name": n, "in": "query", "required": False,
                            "schema": {"type": "string"}} for n in (
        "id", "timestamp", "lat", "lon", "location", "speed", "bearing", "altitude",
        "accuracy", "batt"))]
    form = {"application/x-www-form-urlencoded": {"schema": obj}}
    empty = {"content": {"text/plain": {"schema": {"type": "string", "maxLength": 0}}}}
    counts = {"content": {"application/json": {"schema": {"type": "object", "properties": {
        k: {"type": "integer"} for k in ("accepted", "rejected", "duplicate")}}}}}
    return {
        "/v1/owntracks": op("OwnTracks", "OwnTracks HTTP mode: one message", {
            "application/json": {"schema": obj}}, {"content": {"application/json": {
                "schema": {"type": "array", "maxItems": 0}}}},
            [{"deviceBasic": []}, {"deviceToken": []}]),
        "/v1/osmand/{token}": op("OsmAnd", "Traccar Client (OsmAnd query string, or the v9 "
                                 "JSON body)", {"application/json": {"schema": obj}, **form},
                                 empty, [{}], osm_params, ("get", "post")),
        "/v1/traccar/{token}": op("Traccar", "Traccar Client (alias of /v1/osmand/{token})",
                                  {"application/json": {"schema": obj}, **form}, empty, [{}],
                                  osm_params, ("get", "post")),
        "/v1/overland": op("Overland", "Overland: a batch of GeoJSON features", {
            "application/json": {"schema": {"type": "object", "required": ["locations"],
                                            "properties": {"locations": {"type": "array"}}}}},
            {"content": {"application/json": {"schema": {
                "type": "object", "required": ["result"], "properties": {
                    "result": {"const": "ok"}, **{k: {"type": "integer"} for k in (
                        "accepted", "rejected", "duplicate")}}}}}},
            [{"deviceToken": []}]),
        "/v1/gpslogger": op("GpsLogger", "GPSLogger custom URL (%ALL)", form, counts,
                            [{"deviceBasic": []}, {"deviceToken": []}],
                            methods=("get", "post")),
    }


def openapi_document(version: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route geotel serves (an ingest-only process serves
    /v1/events, /health and /metrics; a worker the rest)."""
    refs, defs = models_json_schema(MODELS, ref_template=REF)
    ref = {m: r["$ref"] for (m, _), r in refs.items()}
    text = {"schema": {"type": "string"}}
    bearer = {"type": "http", "scheme": "bearer"}
    paths: dict[str, Any] = {
        "/v1/events": {"post": {
            "summary": f"Upload 1 to {MAX_BATCH_EVENTS} events of one device",
            "description": "docs/ingest.md. A 202 judges every event; accepted events were "
                           "acknowledged by the broker before the answer.",
            "operationId": "postEvents", "tags": ["ingest"],
            "security": [{"deviceToken": []}],
            "requestBody": {"required": True, "content": _json(ref[UploadBatch])},
            "responses": {
                "202": {"description": "One result per event, in order.",
                        "content": _json(ref[IngestResponse])},
                **_errors(refs, (400, "Not JSON, not {\"events\": [...]}, or empty."),
                          (401, "Missing, unknown or revoked device token."),
                          (413, f"Body over the size limit, or over {MAX_BATCH_EVENTS} events."),
                          (429, "The device is over its rate."),
                          (503, "Broker did not acknowledge in time, or starting.")),
            }}},
        "/v1/sql": {"post": {
            "summary": "One read-only SQL statement (analysts)",
            "description": "docs/analysts.md, 'What the endpoint runs'. Only an allowlist: "
                           "tables of the geotel database, numbers/values/zeros, reviewed "
                           "functions; no SETTINGS, FORMAT or INTO OUTFILE clause. Limits "
                           "(rows, bytes, time, memory) cannot be changed by the query.",
            "operationId": "postSql", "tags": ["analysts"],
            "security": [{"queryToken": []}, {}],
            "requestBody": {"required": True, "content": _json(ref[SqlRequest])},
            "responses": {
                "200": {"description": "The result in the requested format.",
                        "content": {**_json(ref[SqlJsonResponse]),
                                    **{ct: text for ct in SQL_CONTENT}}},
                **_errors(refs, (400, "Bad request, bad format or the query failed."),
                          (401, "Missing or wrong query token."),
                          (403, "Refused by the allowlist; `detail` says why."),
                          (413, "Request body over 256 KiB."),
                          (429, "As many queries as allowed are running."),
                          (504, "No answer within the time limit.")),
            }}},
        "/v1/map.json": {"get": {
            "summary": "Live map data: reps with their status, territories",
            "operationId": "getMapData", "tags": ["map"],
            "security": [{"viewerToken": []}, {"queryToken": []}, {}],
            "parameters": [
                {"name": "at", "in": "query", "required": False,
                 "description": "ISO 8601 time to show (naive means UTC); default now.",
                 "schema": {"type": "string"}},
                {"name": "territories", "in": "query", "required": False,
                 "description": "0 leaves the territory outlines out.",
                 "schema": {"type": "string", "enum": ["0", "1"], "default": "1"}},
                {"name": "paths", "in": "query", "required": False,
                 "description": "1 adds each rep's path of its work day up to `at`.",
                 "schema": {"type": "string", "enum": ["0", "1"], "default": "0"}},
                {"name": "accounts", "in": "query", "required": False,
                 "description": "1 adds the customer accounts and their coverage.",
                 "schema": {"type": "string", "enum": ["0", "1"], "default": "0"}},
                {"name": "alerts", "in": "query", "required": False,
                 "description": "1 adds the alerts of the reps' days (docs/alerts.md).",
                 "schema": {"type": "string", "enum": ["0", "1"], "default": "0"}},
                {"name": "territory", "in": "query", "required": False,
                 "description": "Only the reps assigned to this territory or in it now.",
                 "schema": {"type": "string"}},
                {"name": "region", "in": "query", "required": False,
                 "description": "Only the reps assigned to or in a territory of this region.",
                 "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The snapshot.", "content": _json(ref[MapSnapshot])},
                **_errors(refs, (400, "at is not an ISO 8601 time."),
                          (401, "Missing or wrong viewer or query token."),
                          (503, "The store is unavailable.")),
            }}},
        "/v1/map/rep.json": {"get": {
            "summary": "One rep's day for the map: timeline, daily figures, visit forms",
            "operationId": "getMapRepDay", "tags": ["map"],
            "security": [{"viewerToken": []}, {"queryToken": []}, {}],
            "parameters": [
                {"name": "rep", "in": "query", "required": True,
                 "description": "The rep id.", "schema": {"type": "string"}},
                {"name": "at", "in": "query", "required": False,
                 "description": "ISO 8601 time (naive means UTC): the rep's local day of it, "
                 "up to it; default now.", "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The day.", "content": _json(ref[MapRepDay])},
                **_errors(refs, (400, "rep is not a rep id, or at is not an ISO 8601 time."),
                          (401, "Missing or wrong viewer or query token."),
                          (503, "The store is unavailable.")),
            }}},
        "/map/config.json": {"get": {
            "summary": "The map page's settings: basemap tile URL, attribution, refresh",
            "operationId": "getMapConfig", "tags": ["map"],
            "responses": {"200": {"description": "The settings (no secrets).",
                                  "content": {"application/json": {"schema": {
                                      "type": "object"}}}}}}},
        "/v1/admin/erase": {"post": {
            "summary": "Erase every stored row of one rep",
            "description": "docs/privacy.md. Synchronous: the rows are gone when it answers.",
            "operationId": "postAdminErase", "tags": ["privacy"],
            "security": [{"adminToken": []}],
            "requestBody": {"required": True, "content": _json(ref[EraseRequest])},
            "responses": {
                "200": {"description": "Rows removed per table.",
                        "content": _json(ref[EraseResponse])},
                **_errors(refs, (400, 'Not {"rep_id": "..."} with a valid rep id.'),
                          (401, "Missing or wrong admin token."),
                          (403, "No admin token is configured (privacy.admin_token)."),
                          (500, "The erase failed."),
                          (503, "This process has no ClickHouse.")),
            }}},
        "/health": {"get": {
            "summary": "Readiness and component status", "operationId": "getHealth",
            "tags": ["operations"],
            "responses": {
                "200": {"description": "ok or degraded.", "content": _json(ref[Health])},
                "503": {"description": "starting or down.", "content": _json(ref[Health])},
            }}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics", "operationId": "getMetrics",
            "tags": ["operations"],
            "responses": {"200": {"description": "Prometheus text exposition format.",
                                  "content": {"text/plain": text}}}}},
        "/map": {"get": {
            "summary": "The team map (a page with its own Leaflet; docs/map.md)",
            "operationId": "getMap",
            "tags": ["map"],
            "responses": {"200": {"description": "HTML.", "content": {"text/html": text}}}}},
        "/openapi.json": {"get": {
            "summary": "This document", "operationId": "getOpenApi", "tags": ["operations"],
            "responses": {"200": {"description": "OpenAPI 3.1.",
                                  "content": {"application/json": {"schema": {
                                      "type": "object"}}}}}}},
        **_tracker_paths(refs),
    }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": "geotel", "version": version or _version(),
                 "description": "Field sales telemetry: device uploads, read-only SQL, the "
                                "live map and the privacy admin endpoint.",
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "deviceToken": {**bearer, "description": "`geotel devices add`."},
                "queryToken": {**bearer, "description": "GEOTEL_QUERY__TOKEN; the "
                               "endpoints are open when it is not set (loopback only)."},
                "viewerToken": {**bearer, "description": "GEOTEL_QUERY__VIEWER_TOKEN: map "
                                "data only."},
                "adminToken": {**bearer, "description": "GEOTEL_PRIVACY__ADMIN_TOKEN."},
                "deviceBasic": {"type": "http", "scheme": "basic", "description": "HTTP "
                                "Basic with the device token as the password (any user)."},
            },
        },
    }


@functools.cache
def openapi_json() -> bytes:
    return orjson.dumps(openapi_document(), option=orjson.OPT_INDENT_2)


def register_openapi(app: Any) -> None:
    """Serve the document at ``/openapi.json`` on the Faust web server."""
    from faust.web import Request, Response, View

    @app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(openapi_json(), content_type="application/json")
