"""Device events: what a phone sends.

Every event shares an envelope (``event_id``, ``device_id``, ``rep_id``, ``kind``, ``ts``,
``received_at``) and is one of three kinds, told apart by ``kind``:

* ``ping`` -- a GPS fix;
* ``check_in`` -- the rep says the work day, a customer visit or a break starts or ends;
* ``visit_submission`` -- what happened at a visit: outcome, notes, form, photos, order.

Unknown fields are ignored (a newer app talking to an older server must not lose events);
every known field is range-checked, strings are bounded and floats must be finite.

>>> from schemas.events import EVENT_ADAPTER
>>> e = EVENT_ADAPTER.validate_python({
...     "event_id": "8c0c2b8e-4f39-4c43-9d0e-6a4ad0f5d1a1", "device_id": "d-1",
...     "rep_id": "rep-0001", "kind": "ping", "ts": "2026-11-02T08:00:00+01:00",
...     "lat": 52.52, "lon": 13.40, "accuracy_m": 8})
>>> e.kind, e.ts.utcoffset().total_seconds()
('ping', 0.0)
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

#: Identifiers: printable, no spaces, bounded. Device and rep ids come from the customer's MDM/CRM.
Ident = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
]
ShortText = Annotated[str, StringConstraints(max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=10_000)]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
AccuracyM = Annotated[float, Field(ge=0.0, le=100_000.0, allow_inf_nan=False)]


def _to_utc(value: dt.datetime) -> dt.datetime:
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError as exc:  # year 1 or 9999 with an offset
        raise ValueError("time is out of the representable range") from exc
    # The store keeps DateTime64 (1900-2299); nothing a phone sends is outside 1970-2200.
    if not MIN_TIME <= utc <= MAX_TIME:
        raise ValueError(f"time must be between {MIN_TIME.year} and {MAX_TIME.year}")
    return utc


MIN_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_TIME = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


#: A time-zone-aware instant, normalised to UTC (the offset the phone sent is not kept: the
#: rep's local day comes from the territory or profile time zone, not from the device).
UtcTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="ignore", frozen=True, allow_inf_nan=False, str_strip_whitespace=True
    )


class Provider(StrEnum):
    gps = "gps"
    network = "network"
    fused = "fused"


class CheckInAction(StrEnum):
    workday_start = "workday_start"
    workday_end = "workday_end"
    visit_start = "visit_start"
    visit_end = "visit_end"
    break_start = "break_start"
    break_end = "break_end"


VISIT_ACTIONS = frozenset({CheckInAction.visit_start, CheckInAction.visit_end})


class VisitOutcome(StrEnum):
    order_placed = "order_placed"
    follow_up = "follow_up"
    no_decision = "no_decision"
    not_interested = "not_interested"
    customer_absent = "customer_absent"
    closed = "closed"
    other = "other"


class Position(_Model):
    lat: Latitude
    lon: Longitude
    accuracy_m: AccuracyM | None = None


#: Namespace of the event ids derived for events sent without one (``derive_event_id``).
EVENT_ID_NAMESPACE = uuid.UUID("5b0f3c1e-8e42-4a51-9a77-3f7d0c6f2a10")
_UTC_TIME: TypeAdapter[dt.datetime] = TypeAdapter(UtcTime)
_NO_ID = uuid.UUID(int=0)  # stands in when the inputs of the id are invalid (never accepted)


def _num_key(v: object) -> object:
    """A number as the float pydantic would make of it, so ``52`` and ``52.0`` (or ``"52"``)
    name the same event."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int | float | str):
        try:
            return float(v)
        except (ValueError, OverflowError):
            pass
    return repr(v)[:100]


def derive_event_id(item: dict[str, Any]) -> uuid.UUID | None:
    """The id of an event sent without ``event_id``: a UUIDv5 of its device, kind, time (in
    UTC) and position, and of what tells two events of one instant apart (a check-in's
    action, account and visit; a submission's visit), so a resend of the same event gets the
    same id and is stored once. None when the time is not valid (the event is rejected).

    >>> a = {"device_id": "d-1", "kind": "ping", "ts": "2026-11-02T08:00:00+01:00",
    ...      "lat": 52.5, "lon": 13}
    >>> derive_event_id(a) == derive_event_id({**a, "ts": "2026-11-02T07:00:00Z", "lon": 13.0})
    True
    >>> derive_event_id(a) == derive_event_id({**a, "lat": 52.6})
    False
    """
    try:
        ts = _UTC_TIME.validate_python(item.get("ts"))
    except (ValidationError, ValueError, TypeError):
        return None
    kind = item.get("kind")
    key: list[object] = [item.get("device_id"), kind, ts.isoformat()]
    if kind == "check_in":
        pos = item.get("position")
        if isinstance(pos, dict):
            key += [_num_key(pos.get("lat")), _num_key(pos.get("lon"))]
        else:
            key += [None, None]
        key += [item.get("action"), item.get("account_id"), item.get("visit_id")]
    elif kind == "visit_submission":
        key += [None, None, item.get("visit_id")]
    else:
        key += [_num_key(item.get("lat")), _num_key(item.get("lon"))]
    name = orjson.dumps(key, default=repr).decode()
    return uuid.uuid5(EVENT_ID_NAMESPACE, name)


def _event_id_optional(schema: dict[str, Any]) -> None:
    req = schema.get("required")
    if isinstance(req, list) and "event_id" in req:
        req.remove("event_id")


class _Envelope(_Model):
    model_config = ConfigDict(json_schema_extra=_event_id_optional)

    event_id: uuid.UUID = Field(description=(
        "Client-generated UUID; the idempotency key. Optional on upload: without one (or "
        "with null) the server derives a UUIDv5 of device, kind, ts (UTC) and position "
        "(docs/ingest.md), so a resend of the same event is still stored once."))
    device_id: Ident
    rep_id: Ident
    ts: UtcTime = Field(description="Device time of the event, with an offset; stored as UTC.")
    received_at: UtcTime | None = Field(
        default=None, description="Set by the server on ingest; a client value is overwritten."
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_event_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("event_id") is None:
            kind = cls.model_fields.get("kind")
            eid = derive_event_id(data if "kind" in data or kind is None
                                  else {**data, "kind": kind.default})
            data = {**data, "event_id": eid if eid is not None else _NO_ID}
        return data


class Ping(_Envelope):
    kind: Literal["ping"] = "ping"
    lat: Latitude
    lon: Longitude
    accuracy_m: AccuracyM | None = None
    speed_mps: Annotated[float, Field(ge=0.0, le=150.0)] | None = None
    heading_deg: Annotated[float, Field(ge=0.0, le=360.0)] | None = None
    altitude_m: Annotated[float, Field(ge=-1_000.0, le=20_000.0)] | None = None
    battery_pct: Annotated[float, Field(ge=0.0, le=100.0)] | None = None
    provider: Provider | None = None
    is_mock: bool = False


class CheckIn(_Envelope):
    kind: Literal["check_in"] = "check_in"
    action: CheckInAction
    position: Position | None = None
    account_id: Ident | None = None
    visit_id: Ident | None = Field(
        default=None, description="Client id of the visit, linking start, end and submission."
    )

    @model_validator(mode="after")
    def _account_for_visits(self) -> CheckIn:
        if self.action in VISIT_ACTIONS and self.account_id is None:
            raise ValueError(f"account_id is required for action {self.action.value}")
        return self


FormValue = bool | int | float | ShortText | list[ShortText] | None


class Photo(_Model):
    photo_id: Ident
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]
    content_type: Annotated[str, StringConstraints(pattern=r"^image/[a-z0-9.+-]{1,40}$")]
    bytes: Annotated[int, Field(ge=0, le=100_000_000)]
    taken_at: UtcTime | None = None
    position: Position | None = None


class OrderLine(_Model):
    sku: Ident
    quantity: Annotated[Decimal, Field(gt=0, le=1_000_000, decimal_places=3)]
    unit_price: Annotated[Decimal, Field(ge=0, le=100_000_000, decimal_places=4)]


class Order(_Model):
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    total: Annotated[Decimal, Field(ge=0, le=1_000_000_000, decimal_places=4)]
    lines: Annotated[list[OrderLine], Field(max_length=500)] = []


Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class VisitSubmission(_Envelope):
    kind: Literal["visit_submission"] = "visit_submission"
    visit_id: Ident
    account_id: Ident
    started_at: UtcTime
    ended_at: UtcTime
    outcome: VisitOutcome
    notes: LongText = ""
    form: Annotated[dict[Ident, FormValue], Field(max_length=200)] = {}
    photos: Annotated[list[Photo], Field(max_length=50)] = []
    order: Order | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] = []

    @model_validator(mode="after")
    def _interval(self) -> VisitSubmission:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


Event = Annotated[Ping | CheckIn | VisitSubmission, Field(discriminator="kind")]
EventKind = Literal["ping", "check_in", "visit_submission"]
EVENT_ADAPTER: TypeAdapter[Ping | CheckIn | VisitSubmission] = TypeAdapter(Event)

MAX_BATCH_EVENTS = 500


class UploadBatch(_Model):
    """What a phone POSTs to ``/v1/events``: 1 to 500 events."""

    events: Annotated[list[Event], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]
