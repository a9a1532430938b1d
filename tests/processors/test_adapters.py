"""Tracker-app conversions (processors/adapters.py) on the apps' own request shapes.

The bodies below follow each app's public documentation and source: OwnTracks' JSON
booklet (HTTP mode ``location``, ``lwt``, ``transition``), Traccar's OsmAnd protocol
(the query string of Traccar Client up to v8) and Traccar Client v9's JSON body, the
Overland-iOS README (a GeoJSON batch, -1 for invalid values, a visit feature), and
GPSLogger's ``%ALL`` custom-URL parameters.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from processors import adapters
from schemas.events import EVENT_ADAPTER, Ping

D, R = "phone-42", "rep-0001"


def _one(conv: adapters.Converted) -> dict[str, Any]:
    assert not conv.rejects, conv.rejects
    (ev,) = conv.events
    Ping.model_validate(ev)  # every event an adapter makes is a valid ping
    return ev


OWNTRACKS_ANDROID = {"_type": "location", "_id": "a1b2c3d4", "acc": 12, "alt": 41,
                     "batt": 85, "bs": 1, "cog": 271, "conn": "w", "created_at": 1762070405,
                     "lat": 48.856826, "lon": 2.292713, "m": 1, "t": "u", "tid": "jj",
                     "topic": "owntracks/jane/phone", "tst": 1762070400, "vac": 6, "vel": 36}


def test_owntracks_location_units_and_time() -> None:
    ev = _one(adapters.owntracks(OWNTRACKS_ANDROID, D, R))
    assert ev["ts"] == "2025-11-02T08:00:00+00:00"  # tst: epoch seconds, UTC
    assert (ev["lat"], ev["lon"], ev["accuracy_m"]) == (48.856826, 2.292713, 12)
    assert ev["speed_mps"] == pytest.approx(10.0)  # vel 36 km/h
    assert (ev["heading_deg"], ev["altitude_m"], ev["battery_pct"]) == (271, 41, 85)
    assert (ev["device_id"], ev["rep_id"]) == (D, R)  # the token's, never tid or topic
    assert "event_id" not in ev  # derived by the schema


def test_owntracks_absent_fields_and_sentinels() -> None:
    minimal = {"_type": "location", "lat": 48.85833, "lon": 2.29513, "tst": 1497476456,
               "tid": "JJ", "acc": 0}
    ev = _one(adapters.owntracks(minimal, D, R))
    assert set(ev) == {"device_id", "rep_id", "kind", "ts", "lat", "lon"}  # acc 0: unknown


def test_owntracks_other_types_are_skipped_and_transitions_are_fixes() -> None:
    for msg in ({"_type": "lwt", "tst": 1762070400}, {"_type": "card", "name": "Jane"},
                {"_type": "waypoint", "desc": "Home", "lat": 1, "lon": 2, "tst": 1}):
        conv = adapters.owntracks(msg, D, R)
        assert (conv.events, conv.rejects, conv.skipped) == ([], [], 1), msg
    trans = {"_type": "transition", "event": "enter", "desc": "Office", "lat": 52.5,
             "lon": 13.4, "tst": 1762070400, "wtst": 1700000000, "acc": 20, "t": "c",
             "tid": "jj"}
    assert _one(adapters.owntracks(trans, D, R))["accuracy_m"] == 20


def test_owntracks_without_time_is_rejected_with_a_reason() -> None:
    conv = adapters.owntracks({"_type": "location", "lat": 1.0, "lon": 2.0}, D, R)
    assert conv.events == [] and conv.rejects == [(0, "tst: missing")]


OSMAND_V8 = {"id": "123456", "timestamp": "1762070400", "lat": "52.520008",
             "lon": "13.404954", "speed": "10.0", "bearing": "90.0", "altitude": "34.5",
             "accuracy": "12.0", "batt": "87.0", "charge": "false"}


def test_osmand_knots_and_epoch_seconds() -> None:
    ev = _one(adapters.osmand(OSMAND_V8, D, R))
    assert ev["ts"] == "2025-11-02T08:00:00+00:00"
    assert ev["speed_mps"] == pytest.approx(5.144444, abs=1e-6)  # 10 knots
    assert (ev["heading_deg"], ev["altitude_m"], ev["accuracy_m"], ev["battery_pct"]) == (
        90.0, 34.5, 12.0, 87.0)


@pytest.mark.parametrize("stamp", ["1762070400000", "2025-11-02 08:00:00",
                                   "2025-11-02T09:00:00+01:00"])
def test_osmand_time_spellings(stamp: str) -> None:
    ev = _one(adapters.osmand({**OSMAND_V8, "timestamp": stamp}, D, R))
    assert dt.datetime.fromisoformat(ev["ts"]) == dt.datetime(2025, 11, 2, 8, tzinfo=dt.UTC)


def test_osmand_location_parameter_and_unknowns() -> None:
    params = {"id": "x", "timestamp": "1762070400", "location": "52.5,13.4",
              "accuracy": "0", "altitude": "0.0", "speed": "0.0"}
    ev = _one(adapters.osmand(params, D, R))
    assert (ev["lat"], ev["lon"], ev["speed_mps"]) == (52.5, 13.4, 0.0)
    assert "accuracy_m" not in ev and "altitude_m" not in ev  # 0 = unknown


def test_osmand_garbage_is_a_reasoned_reject() -> None:
    conv = adapters.osmand({"timestamp": "1762070400", "lat": "north", "lon": "1"}, D, R)
    assert conv.events == [] and "lat" in conv.rejects[0][1]


TRACCAR_V9 = {"location": {
    "timestamp": "2025-11-02T08:00:00.123Z", "uuid": "0d4c1c0e-a0a9-4b2a-9a2e-2b0d7c1b7a11",
    "coords": {"latitude": 52.520008, "longitude": 13.404954, "accuracy": 4.8,
               "speed": 3.5, "heading": 181.5, "altitude": 36.2, "ellipsoidal_altitude": 80},
    "is_moving": True, "odometer": 1234.5, "event": "motionchange",
    "battery": {"level": 0.87, "is_charging": False},
    "activity": {"type": "in_vehicle", "confidence": 100}, "extras": {}},
    "device_id": "123456"}


def test_traccar_v9_json() -> None:
    ev = _one(adapters.traccar_json(TRACCAR_V9, D, R))
    assert ev["ts"] == "2025-11-02T08:00:00.123000+00:00"
    assert (ev["speed_mps"], ev["heading_deg"], ev["accuracy_m"]) == (3.5, 181.5, 4.8)
    assert ev["battery_pct"] == 87.0  # level 0.87
    unknown = {**TRACCAR_V9["location"], "coords": {
        **TRACCAR_V9["location"]["coords"], "speed": -1, "heading": -1, "accuracy": -1},
        "battery": {"level": -1, "is_charging": False}}
    ev = _one(adapters.traccar_json({"location": unknown}, D, R))
    assert not {"speed_mps", "heading_deg", "accuracy_m", "battery_pct"} & set(ev)


def _feature(ts: str, **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.4, 52.5]},
            "properties": {"timestamp": ts, "altitude": 35, "speed": 4, "course": 90,
                           "horizontal_accuracy": 30, "vertical_accuracy": -1,
                           "motion": ["driving"], "pauses": False, "activity": "other",
                           "desired_accuracy": 100, "deferred": 1000,
                           "significant_change": "disabled", "locations_in_payload": 1,
                           "battery_state": "unplugged", "battery_level": 0.89,
                           "device_id": "", "wifi": "", **props}}


def test_overland_batch_with_sentinels_visit_and_a_broken_point() -> None:
    doc = {"locations": [
        _feature("2025-11-02T09:00:00+0100"),  # Overland's offset without a colon
        _feature("2025-11-02T08:01:00Z", speed=-1, horizontal_accuracy=-1, course=-1,
                 battery_level=-1),
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.4]},
         "properties": {"timestamp": "2025-11-02T08:02:00Z"}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.41, 52.51]},
         "properties": {"type": "visit", "timestamp": "2025-11-02T10:00:00Z",
                        "arrival_date": "2025-11-02T08:30:00Z",
                        "departure_date": "2025-11-02T09:45:00Z",
                        "horizontal_accuracy": 15}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.42, 52.52]},
         "properties": {"action": "visit", "timestamp": "2025-11-02T11:00:00Z",
                        "arrival_date": "2025-11-02T10:30:00Z",
                        "departure_date": "4001-01-01T00:00:00Z"}},
    ], "current": _feature("2025-11-02T11:00:00Z"), "trip": {"mode": "car"}}
    conv = adapters.overland(doc, D, R)
    assert [i for i, _ in conv.rejects] == [2] and "coordinates" in conv.rejects[0][1]
    for ev in conv.events:
        Ping.model_validate(ev)
    first, second, arrive, depart, open_visit = conv.events
    assert first["ts"] == "2025-11-02T09:00:00+01:00" and first["battery_pct"] == 89.0
    assert (first["lat"], first["lon"], first["speed_mps"]) == (52.5, 13.4, 4)
    assert not {"speed_mps", "accuracy_m", "heading_deg", "battery_pct"} & set(second)
    assert (arrive["ts"], depart["ts"]) == ("2025-11-02T08:30:00+00:00",
                                            "2025-11-02T09:45:00+00:00")
    assert arrive["accuracy_m"] == 15 and open_visit["ts"] == "2025-11-02T10:30:00+00:00"


def test_overland_wrong_shape() -> None:
    assert adapters.overland({"points": []}, D, R).rejects[0][0] == -1


GPSLOGGER_ALL = {"lat": "41.74108695983887", "lon": "-91.84490871429443", "sat": "7",
                 "desc": "", "alt": "212.0", "acc": "6.0", "dir": "170.8125", "prov": "gps",
                 "spd_kph": "18.0", "spd": "5.0", "timestamp": "1762070400",
                 "timeoffset": "2025-11-02T09:00:00.000+01:00",
                 "time": "2025-11-02T08:00:00.000Z", "starttimestamp": "1762066800",
                 "date": "2025-11-02", "batt": "87.0", "ischarging": "false",
                 "aid": "abc", "ser": "XYZ", "act": "", "filename": "20251102",
                 "profile": "Default", "hdop": "", "vdop": "", "pdop": "", "dist": "0"}


def test_gpslogger_all_parameters() -> None:
    ev = _one(adapters.gpslogger(GPSLOGGER_ALL, D, R))
    assert ev["ts"] == "2025-11-02T08:00:00+00:00"
    assert (ev["speed_mps"], ev["accuracy_m"], ev["altitude_m"]) == (5.0, 6.0, 212.0)
    assert (ev["heading_deg"], ev["battery_pct"], ev["provider"]) == (170.8125, 87.0, "gps")
    no_stamp = {k: v for k, v in GPSLOGGER_ALL.items() if k != "timestamp"}
    assert _one(adapters.gpslogger(no_stamp, D, R))["ts"] == "2025-11-02T08:00:00+00:00"


def test_a_resend_gets_the_same_derived_id() -> None:
    a = EVENT_ADAPTER.validate_python(_one(adapters.osmand(OSMAND_V8, D, R)))
    b = EVENT_ADAPTER.validate_python(_one(adapters.osmand(
        {**OSMAND_V8, "timestamp": "1762070400000"}, D, R)))
    c = EVENT_ADAPTER.validate_python(_one(adapters.osmand(
        {**OSMAND_V8, "timestamp": "1762070401"}, D, R)))
    other = EVENT_ADAPTER.validate_python(_one(adapters.osmand(OSMAND_V8, "phone-43", R)))
    assert a.event_id == b.event_id
    assert len({a.event_id, c.event_id, other.event_id}) == 3
    assert a.event_id.version == 5
