"""Through the real stack (``geotel up``: embedded broker, worker, chDB): each tracker app's
request shapes (from the apps' docs and source, as in tests/processors/test_adapters.py)
are accepted and stored with the right device, time and units, and a resend is stored once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Stack, wait_for

pytestmark = pytest.mark.integration

#: Whole seconds, an hour ago: well inside the accepted age whatever the clock says.
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
COLS = ("toUnixTimestamp64Milli(ts) AS ms, rep_id, lat, lon, accuracy_m, speed_mps, "
        "heading_deg, altitude_m, battery_pct, provider")


def _ms(minutes: float = 0) -> int:
    return int((T0 + dt.timedelta(minutes=minutes)).timestamp() * 1000)


def _rows(stack: Stack, device: str, n: int) -> list[dict[str, Any]]:
    q = f"SELECT {COLS} FROM events WHERE device_id = '{device}' ORDER BY ts"
    wait_for(lambda: len(stack.sql(q)) >= n, 60, f"{n} events of {device} are stored")
    rows = stack.sql(q)
    assert len(rows) == n, rows
    return rows


def test_owntracks(stack: Stack) -> None:
    token = stack.add_device("rep-ot", "dev-ot")
    msg = {"_type": "location", "_id": "e3b0c442", "acc": 12, "alt": 41, "batt": 85,
           "bs": 1, "cog": 271, "conn": "w", "lat": 48.856826, "lon": 2.292713, "m": 1,
           "t": "u", "tid": "jj", "topic": "owntracks/jane/phone", "tst": _ms() // 1000,
           "vac": 6, "vel": 36}
    r = stack.http.post("/v1/owntracks", content=orjson.dumps(msg), auth=("jane", token),
                        headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()) == (200, [])
    r = stack.http.post("/v1/owntracks", json={"_type": "lwt", "tst": 1}, auth=("j", token))
    assert (r.status_code, r.json()) == (200, [])
    r = stack.http.post("/v1/owntracks", json=msg, auth=("jane", "gt_wrong"))
    assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"]
    stack.http.post("/v1/owntracks", json=msg, auth=("jane", token))  # a resend
    (row,) = _rows(stack, "dev-ot", 1)
    assert (row["ms"], row["rep_id"], row["accuracy_m"], row["altitude_m"]) == (
        _ms(), "rep-ot", 12, 41)
    assert row["speed_mps"] == pytest.approx(10.0)  # 36 km/h
    assert (row["heading_deg"], row["battery_pct"]) == (271, 85)


def test_traccar_client_osmand_and_json(stack: Stack) -> None:
    token = stack.add_device("rep-tc", "dev-tc")
    q = {"id": "123456", "timestamp": str(_ms() // 1000), "lat": "52.520008",
         "lon": "13.404954", "speed": "10.0", "bearing": "90.0", "altitude": "34.5",
         "accuracy": "0.0", "batt": "87.0", "charge": "false"}
    r = stack.http.post(f"/v1/osmand/{token}", params=q)  # v8: POST, empty body
    assert r.status_code == 200
    r = stack.http.get(f"/v1/osmand/{token}", params={
        **q, "timestamp": (T0 + dt.timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")})
    assert r.status_code == 200
    v9 = {"device_id": "123456", "location": {
        "timestamp": (T0 + dt.timedelta(minutes=2)).isoformat().replace("+00:00", ".000Z"),
        "coords": {"latitude": 52.521, "longitude": 13.405, "accuracy": 4.5, "speed": 3.5,
                   "heading": 181.5, "altitude": 36.2},
        "is_moving": True, "odometer": 1234.5, "event": "motionchange",
        "battery": {"level": 0.87, "is_charging": False},
        "activity": {"type": "in_vehicle"}, "extras": {}}}
    r = stack.http.post(f"/v1/traccar/{token}", json=v9)
    assert r.status_code == 200
    assert stack.http.get("/v1/osmand/gt_wrong", params=q).status_code == 401
    first, second, third = _rows(stack, "dev-tc", 3)
    assert [first["ms"], second["ms"], third["ms"]] == [_ms(), _ms(1), _ms(2)]
    assert first["speed_mps"] == pytest.approx(5.1444, abs=1e-3)  # 10 knots
    assert first["accuracy_m"] is None and first["battery_pct"] == 87  # accuracy 0: unknown
    assert (third["speed_mps"], third["accuracy_m"]) == (3.5, 4.5)
    assert third["battery_pct"] == pytest.approx(87.0)  # level 0.87


def test_overland_batch_of_1000_with_sentinels_and_a_resend(stack: Stack) -> None:
    token = stack.add_device("rep-ol", "dev-ol")
    feats = [{"type": "Feature",
              "geometry": {"type": "Point", "coordinates": [13.4 + i * 1e-5, 52.5]},
              "properties": {"timestamp": (T0 + dt.timedelta(seconds=i)).strftime(
                  "%Y-%m-%dT%H:%M:%S+0000"), "altitude": 35, "speed": 4 if i else -1,
                  "course": 90, "horizontal_accuracy": 30 if i else -1,
                  "vertical_accuracy": -1, "motion": ["driving"], "battery_state":
                  "unplugged", "battery_level": 0.89, "wifi": "", "device_id": ""}}
             for i in range(1000)]
    feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.4, 91]},
                  "properties": {"timestamp": (T0 + dt.timedelta(hours=1)).isoformat()}})
    body = orjson.dumps({"locations": feats})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    r = stack.http.post("/v1/overland", content=body, headers=headers)
    assert r.status_code == 200 and r.json() == {"result": "ok", "accepted": 1000,
                                                 "rejected": 1, "duplicate": 0}
    r = stack.http.post("/v1/overland", content=body, headers=headers)  # answer missed
    assert r.json()["result"] == "ok"
    rows = _rows(stack, "dev-ol", 1000)
    assert rows[0]["ms"] == _ms() and rows[-1]["ms"] == _ms(999 / 60)
    assert rows[0]["speed_mps"] is None and rows[0]["accuracy_m"] is None  # -1: invalid
    assert (rows[1]["speed_mps"], rows[1]["accuracy_m"]) == (4, 30)
    assert all(r["battery_pct"] == pytest.approx(89.0) for r in rows)  # 0.89
    assert {r["rep_id"] for r in rows} == {"rep-ol"}
    # the invalid point was answered ok, and dead-lettered with its reason (each send)
    q = "SELECT reason, detail, payload FROM deadletters WHERE rep_id = 'rep-ol'"
    wait_for(lambda: len(stack.sql(q)) >= 1, 60, "the invalid point is dead-lettered")
    dl = stack.sql(q)[0]
    assert dl["reason"] == "invalid" and "lat" in dl["detail"]
    assert orjson.loads(dl["payload"])["lat"] == 91


def test_gpslogger_template(stack: Stack) -> None:
    token = stack.add_device("rep-gl", "dev-gl")
    t = T0.isoformat().replace("+00:00", ".000Z")
    body = (f"lat=41.74108695983887&lon=-91.84490871429443&sat=7&desc=&alt=212.0&acc=6.0"
            f"&dir=170.8125&prov=gps&spd_kph=18.0&spd=5.0&timestamp={_ms() // 1000}"
            f"&time={t}&batt=87.0&ischarging=false&aid=x&ser=y&act=&profile=Default&dist=0")
    r = stack.http.post("/v1/gpslogger", content=body, auth=httpx.BasicAuth("dev-gl", token),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    r = stack.http.post("/v1/gpslogger", params={"lat": "41.7", "lon": "-91.8"},
                        auth=httpx.BasicAuth("dev-gl", token))  # no time: cannot be stored
    assert r.status_code == 200 and r.json()["rejected"] == 1
    q = "SELECT reason, payload FROM deadletters WHERE rep_id = 'rep-gl'"
    wait_for(lambda: len(stack.sql(q)) >= 1, 60, "the point without time is dead-lettered")
    dl = orjson.loads(stack.sql(q)[0]["payload"])
    assert (dl["kind"], dl["error"], dl["point"]) == (
        "gpslogger_point", "time: expected an ISO 8601 time", {"lat": "41.7", "lon": "-91.8"})
    (row,) = _rows(stack, "dev-gl", 1)
    assert (row["ms"], row["speed_mps"], row["accuracy_m"], row["provider"]) == (
        _ms(), 5.0, 6.0, "gps")
    assert row["lat"] == pytest.approx(41.74108695983887)


def test_native_upload_without_event_id_names_the_fields_it_did_not_store(
        stack: Stack) -> None:
    token = stack.add_device("rep-nt", "dev-nt")
    ts = T0.isoformat()
    ping = {"device_id": "dev-nt", "rep_id": "rep-nt", "kind": "ping", "ts": ts,
            "lat": 52.5, "lon": 13.4, "battery_pct": 0.87}
    check_in = {"device_id": "dev-nt", "rep_id": "rep-nt", "kind": "check_in", "ts": ts,
                "action": "workday_start", "lat": 52.5, "lon": 13.4, "accuracy_m": 8}
    r = stack.post(token, [ping, check_in])
    assert r.status_code == 202
    res = r.json()["results"]
    assert [x["status"] for x in res] == ["accepted", "accepted"]
    assert res[0]["warnings"][0].startswith("battery_pct: 0.87 is below 1")
    assert res[1]["warnings"][0] == ("lat: unknown field, not stored "
                                     "(did you mean position.lat?)")
    assert stack.post(token, [ping]).json()["results"][0]["event_id"] == res[0]["event_id"]
    q = ("SELECT toString(event_id) AS id, kind, battery_pct FROM events "
         "WHERE device_id = 'dev-nt' ORDER BY kind")
    wait_for(lambda: len(stack.sql(q)) >= 2, 60, "both events are stored")
    rows = stack.sql(q)
    assert [(x["id"], x["kind"], x["battery_pct"]) for x in rows] == [
        (res[0]["event_id"], "ping", None), (res[1]["event_id"], "check_in", None)]
    metrics = stack.http.get("/metrics").text
    assert 'geotel_ingest_field_warnings_total{kind="check_in",problem="unknown_field"} 3.0' \
        in metrics

