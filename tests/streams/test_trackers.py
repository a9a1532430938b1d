"""Tracker-app endpoints (streams/trackers.py) and the native endpoint's warnings, through
the real IngestHandler with a producer that records what would go to ``telemetry.raw``.
(tests/streams/test_trackers_stack.py sends the same requests through ``geotel up``.)"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from processors.intake import TimeLimits
from schemas.events import EVENT_ADAPTER
from streams.devices import DeviceRegistry, issue, revoke_records
from streams.ingest import IngestHandler, TokenBucket
from streams.metrics import Metrics
from streams.trackers import AppReply, AppRequest, TrackerIngest

D, R = "phone-42", "rep-0001"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)


class Harness:
    def __init__(self, rate: float = 10_000.0, burst: int = 5_000) -> None:
        self.registry = DeviceRegistry()
        self.token, rec = issue(D, R, NOW)
        self.registry.apply(rec)
        self.published: list[list[dict[str, Any]]] = []
        self.fail = False
        self.metrics = Metrics()
        self.ingest = IngestHandler(self.registry, self.produce, self.metrics, TimeLimits(),
                                    max_body_bytes=2 * 1024 * 1024, produce_timeout_s=1.0,
                                    rate=TokenBucket(rate, burst))
        self.trackers = TrackerIngest(self.ingest)

    async def produce(self, key: bytes, value: bytes) -> Any:
        if self.fail:
            raise ConnectionError("broker down")
        assert key == D.encode()
        self.published.append(orjson.loads(value)["events"])
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def _all(self) -> list[dict[str, Any]]:
        return [e for batch in self.published for e in batch]

    def events(self) -> list[dict[str, Any]]:
        """What the worker will store: the valid events published."""
        return [e for e in self._all() if _valid(e)]

    def dead(self) -> list[dict[str, Any]]:
        """What the worker will dead-letter (published so that it does)."""
        return [e for e in self._all() if not _valid(e)]

    def send(self, app: str, body: bytes = b"", *, auth: str | None = None,
             path_token: str | None = None, query: dict[str, str] | None = None,
             method: str = "POST") -> AppReply:
        async def read() -> bytes:
            return body

        req = AppRequest(method=method, authorization=auth, path_token=path_token,
                         query=query or {}, content_type="", content_length=len(body),
                         read_body=read)
        return asyncio.run(self.trackers.handle(app, req))

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def _valid(item: dict[str, Any]) -> bool:
    try:
        EVENT_ADAPTER.validate_python(item)
    except ValidationError:
        return False
    return True


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _tst(minutes: int = 0) -> int:
    return int((NOW + dt.timedelta(minutes=minutes)).timestamp())


def _iso(minutes: int = 0) -> str:
    return (NOW + dt.timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def test_owntracks_basic_auth_answer_and_other_types() -> None:
    h = Harness()
    loc = orjson.dumps({"_type": "location", "lat": 52.5, "lon": 13.4, "tst": _tst(),
                        "acc": 10, "vel": 18, "batt": 77, "tid": "jj", "_id": "x1"})
    r = h.send("owntracks", loc, auth=_basic("jane", h.token))
    assert (r.status, r.body) == (200, b"[]")
    (ev,) = h.events()
    assert (ev["device_id"], ev["rep_id"], ev["speed_mps"], ev["battery_pct"]) == (
        D, R, 5.0, 77.0)
    assert ev["ts"] == NOW.isoformat().replace("+00:00", "Z")
    lwt = h.send("owntracks", b'{"_type": "lwt", "tst": 1}', auth=_basic("jane", h.token))
    empty = h.send("owntracks", b"", auth=_basic("jane", h.token))
    assert (lwt.status, lwt.body, empty.status, empty.body) == (200, b"[]", 200, b"[]")
    assert len(h.events()) == 1
    assert h.metric("geotel_ingest_app_points_total", app="owntracks", outcome="skipped") == 1


@pytest.mark.parametrize("auth", [None, "Basic !!!", "Bearer gt_nope"])
def test_bad_credentials_are_401_so_the_app_keeps_its_points(auth: str | None) -> None:
    h = Harness()
    r = h.send("owntracks", b'{"_type": "location"}', auth=auth)
    assert r.status == 401 and r.headers == {"WWW-Authenticate": 'Basic realm="geotel"'}
    # never from the query string (only Traccar Client's path, where nothing else exists)
    assert h.send("overland", b'{"locations": []}',
                  query={"access_token": h.token, "token": h.token}).status == 401
    h.registry.apply_all(revoke_records(h.registry, D))
    assert h.send("osmand", path_token=h.token, query={"lat": "1"}).status == 401
    assert h.events() == []


def test_osmand_get_with_the_token_in_the_path_and_a_v9_json_post() -> None:
    h = Harness()
    q = {"id": "123456", "timestamp": str(_tst()), "lat": "52.5", "lon": "13.4",
         "speed": "1.0", "accuracy": "0", "batt": "55"}
    r = h.send("osmand", method="GET", path_token=h.token, query=q)
    assert (r.status, r.body) == (200, b"")
    v9 = {"device_id": "123456", "location": {
        "timestamp": _iso(1), "coords": {"latitude": 52.5, "longitude": 13.4,
                                         "accuracy": 5, "speed": 2, "heading": 10,
                                         "altitude": 30},
        "battery": {"level": 0.5, "is_charging": False}, "is_moving": True,
        "activity": {"type": "walking"}}}
    r = h.send("osmand", orjson.dumps(v9), path_token=h.token)
    assert r.status == 200
    first, second = h.events()
    assert first["speed_mps"] == pytest.approx(0.514444, abs=1e-6)
    assert first.get("accuracy_m") is None and first["battery_pct"] == 55.0
    assert (second["speed_mps"], second["battery_pct"]) == (2.0, 50.0)
    # an invalid point is answered 200 (a resend cannot fix it) but counted
    r = h.send("osmand", path_token=h.token, query={**q, "lat": "95"})
    assert r.status == 200 and len(h.events()) == 2
    (dead,) = h.dead()  # published as it is, for the worker to dead-letter with the reason
    assert dead["lat"] == 95.0 and dead["device_id"] == D
    assert h.metric("geotel_ingest_app_points_total", app="osmand", outcome="rejected") == 1


def _overland(n: int, start: int = 0) -> dict[str, Any]:
    return {"locations": [
        {"type": "Feature", "geometry": {"type": "Point",
                                         "coordinates": [13.4 + i * 1e-4, 52.5]},
         "properties": {"timestamp": _iso(i - 1200 + start), "speed": -1,
                        "horizontal_accuracy": 8, "battery_level": 0.9, "motion": []}}
        for i in range(n)]}


def test_overland_batch_of_1000_is_split_and_answered_ok() -> None:
    h = Harness()
    body = orjson.dumps(_overland(1000))
    r = h.send("overland", body, auth=f"Bearer {h.token}")
    assert r.status == 200 and orjson.loads(r.body)["result"] == "ok"
    assert [len(b) for b in h.published] == [500, 500]
    ids = {e["event_id"] for e in h.events()}
    assert len(ids) == 1000
    # the resend Overland makes when it missed the answer carries the same ids
    r = h.send("overland", body, auth=f"Bearer {h.token}")
    assert {e["event_id"] for e in h.published[-1]} <= ids


def test_overland_invalid_points_still_ok_and_counted() -> None:
    h = Harness()
    doc = _overland(3)
    doc["locations"][1]["geometry"]["coordinates"] = [13.4, 123.0]  # latitude out of range
    doc["locations"][2]["properties"]["timestamp"] = "yesterday"
    r = h.send("overland", orjson.dumps(doc), auth=f"Bearer {h.token}")
    assert orjson.loads(r.body) == {"result": "ok", "accepted": 1, "rejected": 2,
                                    "duplicate": 0}
    assert len(h.events()) == 1
    unconverted, invalid = h.dead()
    assert unconverted == {"kind": "overland_point", "device_id": D, "rep_id": R,
                           "error": "properties.timestamp: 'yesterday' is not an ISO 8601 "
                                    "time", "point": doc["locations"][2]}
    assert invalid["lat"] == 123.0


def test_broker_down_and_rate_limit_ask_the_app_to_resend() -> None:
    h = Harness()
    h.fail = True
    r = h.send("overland", orjson.dumps(_overland(2)), auth=f"Bearer {h.token}")
    assert r.status == 503 and r.headers == {"Retry-After": "5"}
    slow = Harness(rate=1.0, burst=10)
    r = slow.send("overland", orjson.dumps(_overland(11)), auth=f"Bearer {slow.token}")
    assert r.status == 429 and r.headers is not None and "Retry-After" in r.headers


def test_gpslogger_form_body_with_basic_auth() -> None:
    h = Harness()
    body = (f"lat=52.5&lon=13.4&sat=7&desc=&alt=0.0&acc=6.0&dir=90.0&prov=gps&spd_kph=18.0"
            f"&spd=5.0&timestamp={_tst()}&time={_iso()}&batt=87.0&ischarging=false").encode()
    r = h.send("gpslogger", body, auth=_basic("phone-42", h.token))
    assert r.status == 200 and orjson.loads(r.body)["accepted"] == 1
    (ev,) = h.events()
    assert (ev["speed_mps"], ev["accuracy_m"], ev["provider"]) == (5.0, 6.0, "gps")
    assert ev.get("altitude_m") is None


def test_native_upload_without_event_id_and_with_unknown_fields() -> None:
    h = Harness()
    ping = {"device_id": D, "rep_id": R, "kind": "ping", "ts": _iso(), "lat": 52.5,
            "lon": 13.4, "battery_pct": 0.87}
    sub = {"device_id": D, "rep_id": R, "kind": "visit_submission", "ts": _iso(),
           "visit_id": "v-1", "account_id": "a-1", "outcome": "other",
           "started_at": _iso(-30), "ended_at": _iso(), "answers": {"q": "yes"}}
    body = orjson.dumps({"events": [ping, sub, ping]})

    async def read() -> bytes:
        return body

    reply = asyncio.run(h.ingest.handle(f"Bearer {h.token}", len(body), read))
    assert reply.status == 202
    res = reply.body["results"]
    assert [r["status"] for r in res] == ["accepted", "accepted", "duplicate"]
    assert res[0]["event_id"] == res[2]["event_id"]  # derived, so the resend dedupes
    assert res[0]["warnings"][0].startswith("battery_pct: 0.87 is below 1")
    assert res[1]["warnings"] == ["answers: unknown field, not stored (did you mean form?)"]
    assert h.events()[0].get("battery_pct") is None
    assert h.metric("geotel_ingest_field_warnings_total", kind="visit_submission",
                    problem="unknown_field") == 1
    assert h.metric("geotel_ingest_field_warnings_total", kind="ping",
                    problem="ambiguous_unit") == 2
