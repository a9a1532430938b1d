"""Bodies of the HTTP API that are not device events: errors, analysts' SQL, the live map,
the privacy admin endpoint and health. The OpenAPI document (streams/openapi.py) is
generated from these and the event models; docs/ingest.md shows them in use."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Ident


class ErrorResponse(BaseModel):
    """Any refusal: a stable machine-readable ``error`` code and a human ``detail``."""

    error: str = Field(description="e.g. bad_request, unauthorized, body_too_large, "
                       "rate_limited, broker_unavailable, not_read_only, unavailable.")
    detail: str | None = None


SqlFormat = Literal["json", "jsonl", "csv", "tsv", "parquet", "table"]


class SqlRequest(BaseModel):
    """``POST /v1/sql``: one read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN,
    EXISTS) against the views of docs/analysts.md."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, max_length=100_000)
    format: SqlFormat = "json"


class SqlColumn(BaseModel):
    name: str
    type: str


class SqlJsonResponse(BaseModel):
    """``format: json``: ClickHouse's JSON output format."""

    meta: list[SqlColumn]
    data: list[dict[str, Any]]
    rows: int
    rows_before_limit_at_least: int | None = None
    statistics: dict[str, Any] | None = None


class EraseRequest(BaseModel):
    """``POST /v1/admin/erase``: every stored row of one rep (docs/privacy.md)."""

    rep_id: Ident


class EraseResponse(BaseModel):
    rep_id: str
    removed: dict[str, int] = Field(description="Rows deleted, per table.")


class Health(BaseModel):
    """``GET /health``: 200 when ``ok`` or ``degraded`` (ClickHouse writes failing, retried),
    503 while ``starting`` (device registry or geo sets loading) or ``down``."""

    status: Literal["ok", "degraded", "starting", "down"]
    components: dict[str, Any] = Field(description="Per component (sink, geo, devices, "
                                       "consumer, sessions): its own status and counters.")


class MapRep(BaseModel):
    rep_id: str
    status: Literal["visiting", "travelling", "stopped", "off_duty"]
    lon: float | None
    lat: float | None
    accuracy_m: float | None = Field(default=None, description="Reported accuracy of the "
                                     "last fix, m.")
    last_fix_at: str | None = Field(description="ISO 8601, UTC.")
    last_fix_age_s: int | None
    territory_id: str | None
    assigned_territories: list[str] = Field(default_factory=list,
                                            description="The rep's territories in the set "
                                            "in use.")
    in_assigned_territory: bool | None
    account_id: str | None
    tz: str
    field_minutes: int
    visits_today: int
    km_today: float
    workday_start: str | None


class MapCounts(BaseModel):
    status: dict[str, int]
    territory: dict[str, int]
    reps: int


class MapAccount(BaseModel):
    """A customer account and its coverage (``accounts=1``)."""

    account_id: str
    name: str | None
    territory_id: str | None
    region: str | None
    lon: float
    lat: float
    radius_m: float
    last_verified_visit: str | None = Field(description="Start of the last GPS-verified "
                                            "visit within the lookback, ISO 8601; null: none.")
    days_since_verified: float | None


class MapSnapshot(BaseModel):
    """``GET /v1/map.json``: every rep seen in the window with its status, and the
    territories (a GeoJSON FeatureCollection, EPSG:4326) with the reps in each now."""

    at: str = Field(description="The time shown, ISO 8601.")
    geo_version: int
    bbox: list[float] | None = Field(description="[min lon, min lat, max lon, max lat]")
    counts: MapCounts
    reps: list[MapRep]
    territories: dict[str, Any] | None = Field(description="GeoJSON FeatureCollection; "
                                               "null with territories=0.")
    paths: dict[str, list[list[float]]] | None = Field(
        default=None, description="With paths=1: rep id -> [[lon, lat], ...], the pings of "
        "the rep's work day up to `at`, simplified (docs/map.md).")
    accounts: list[MapAccount] | None = Field(default=None,
                                              description="With accounts=1: the customers.")
    alerts: list[dict[str, Any]] | None = Field(
        default=None, description="With alerts=1: the alerts of each rep's day raised by "
        "`at` (docs/alerts.md): alert_id, rule, rep_id, local_date, raised_at, resolved_at "
        "(null while open), detail, lon/lat.")


class MapRepDay(BaseModel):
    """``GET /v1/map/rep.json``: one rep's local day of ``at`` for the map's rep panel
    (no positions)."""

    rep_id: str
    local_date: str
    at: str
    tz: str | None
    workday_start: str | None
    workday_end: str | None
    workday_end_inferred: bool | None
    figures: dict[str, float] | None = Field(description="The rep_daily figures (s, m, "
                                             "counts); null without a derived day.")
    timeline: list[dict[str, Any]] = Field(description="workday_start, segments (travel, "
                                           "stop, visit, break), gap, workday_end; in order.")
    visits: list[dict[str, Any]] = Field(description="The day's visits with their forms.")


__all__ = ["EraseRequest", "EraseResponse", "ErrorResponse", "Health", "MapAccount", "MapRep",
           "MapRepDay", "MapSnapshot", "SqlFormat", "SqlJsonResponse", "SqlRequest"]
