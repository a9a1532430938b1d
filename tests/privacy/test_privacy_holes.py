"""The privacy promises of docs/privacy.md, each through the real stack (issue 14): late
events, photo positions, the last-position rollup, idle reps, erase/export, event ids sent
again with another time, and forged device records. One stack for the module; each test
uses its own reps."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2

from streams.devices import DeviceRecord, hash_token, new_token
from streams.geosets import decode_set, journal_path
from tests.conftest import Stack, ping, wait_for

pytestmark = pytest.mark.integration
ADMIN = "admin-secret-for-holes"
PARTITIONS = 4  # kafka.topic_partitions (default)
# Exact positions: six decimals, never what coarsening (two) leaves.
LAT, LON = 52.512345, 13.398765
PHOTO_LAT, PHOTO_LON = 52.612345, 13.498765


def _part(rep: str) -> int:
    return (murmur2(rep.encode()) & 0x7FFFFFFF) % PARTITIONS


# The idle rep's telemetry.enriched partition carries no other rep of this module, so only a
# clock other than event time can close its days.
HOME_REP = "rep-0001"  # has "Home of rep-0001" in the sample accounts
IDLE_REP = next(r for i in range(100) if _part(r := f"rep-idle-{i}") != _part(HOME_REP))


def _rep(prefix: str) -> str:
    return next(r for i in range(100) if _part(r := f"{prefix}-{i}") != _part(IDLE_REP))


@pytest.fixture(scope="module")
def s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = Stack(tmp_path_factory.mktemp("holes"), extra_env={
        "GEOTEL_PRIVACY__ADMIN_TOKEN": ADMIN,
        "GEOTEL_PRIVACY__SWEEP_INTERVAL_S": "5",
        "GEOTEL_WORKER__DERIVE_INTERVAL_S": "0.5",  # idle after 20 intervals: 10 s
    })
    st.start()
    try:
        st.load_sample_world()
        yield st
    finally:
        st.stop()


def _night(days_ago: int, minute: int = 0) -> dt.datetime:
    """20:mm UTC some days back, the same local date in UTC and Berlin: pings at night only
    make no work day, so the whole day is off duty."""
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).date()
    return dt.datetime.combine(day, dt.time(20, minute), tzinfo=dt.UTC)


def _workday(dev: str, rep: str, days_ago: int) -> list[dict[str, Any]]:
    """Check-ins of a work day 08:00-09:00 UTC: the night's events are off duty."""
    day = _night(days_ago).date()
    return [{"event_id": str(uuid.uuid4()), "device_id": dev, "rep_id": rep, "kind": "check_in",
             "action": action, "ts": dt.datetime.combine(day, dt.time(h), dt.UTC).isoformat()}
            for action, h in (("workday_start", 8), ("workday_end", 9))]


def _upload(s: Stack, token: str, evs: list[dict[str, Any]]) -> dict[str, Any]:
    r = s.post(token, evs)
    assert r.status_code == 202, r.text
    return dict(r.json())


def _closed(s: Stack, rep: str, day: dt.date) -> bool:
    return bool(s.scalar(f"SELECT count() FROM closed_rep_days WHERE rep_id = '{rep}' "
                         f"AND local_date = '{day}'"))


def _stored(s: Stack, rep: str, n: int) -> None:
    wait_for(lambda: s.scalar(f"SELECT count() FROM events_all WHERE rep_id = '{rep}'") >= n,
             60, f"{n} events of {rep} stored")


def test_idle_rep_days_close_by_the_wall_clock(s: Stack) -> None:
    """(4) A rep whose partition has no other traffic: its old day still closes (and is
    redacted) once the rep is idle, by the worker's clock."""
    token = s.add_device(IDLE_REP, "dev-idle")
    evs = [ping("dev-idle", IDLE_REP, _night(3, m), lat=LAT, lon=LON) for m in range(5)]
    _upload(s, token, [*_workday("dev-idle", IDLE_REP, 3), *evs])
    _stored(s, IDLE_REP, 7)
    wait_for(lambda: _closed(s, IDLE_REP, _night(3).date()), 60,
             "the idle rep's day closes without traffic on its partition")
    exact = s.scalar(f"SELECT count() FROM events_all WHERE rep_id = '{IDLE_REP}' "
                     f"AND lat = {LAT}")
    assert exact == 0


def test_too_late_event_is_not_accepted_nor_stored_exact(s: Stack) -> None:
    """(1) Once the rep's watermark is known, an event older than the lateness bound is
    refused with the reason; one that slipped through before is not kept exact."""
    rep = _rep("rep-late")
    token = s.add_device(rep, "dev-late")
    _upload(s, token, [ping("dev-late", rep, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))])
    s.wait_derived()
    answers: list[dict[str, Any]] = []

    def refused() -> bool:
        ans = _upload(s, token, [ping("dev-late", rep, _night(4), lat=LAT, lon=LON)])
        answers.append(ans["results"][0])
        return bool(ans["results"][0]["status"] != "accepted")

    wait_for(refused, 30, "the ingest refuses an event past the lateness bound", 1.0)
    assert answers[-1]["status"] == "rejected" and answers[-1]["reason"] == "too_late"
    s.wait_derived()
    wait_for(lambda: s.scalar(f"SELECT count() FROM events_all WHERE rep_id = '{rep}' "
                              f"AND lat = {LAT}") == 0, 30, "no late event kept exact")
    at = _night(4).isoformat().replace("+00:00", "Z")
    body = s.http.get("/v1/map.json", params={"at": at}).content
    assert str(LAT).encode() not in body


@pytest.fixture(scope="module")
def closed_day(s: Stack) -> tuple[str, dt.date]:
    """A closed (and redacted) day of the rep with a home: a work day 08:00-09:00 UTC, exact
    pings at night and a visit submission with an exact photo position at night; then a
    current ping closes the day. Returns the rep's device token and the day."""
    token = s.add_device(HOME_REP, "dev-home")
    t = _night(3, 10)
    sub = {"event_id": str(uuid.uuid4()), "device_id": "dev-home", "rep_id": HOME_REP,
           "kind": "visit_submission", "ts": t.isoformat(), "visit_id": "v-1",
           "account_id": "acc-1", "started_at": (t - dt.timedelta(minutes=5)).isoformat(),
           "ended_at": t.isoformat(), "outcome": "not_interested",
           "photos": [{"photo_id": "p1", "sha256": "a" * 64, "content_type": "image/jpeg",
                       "bytes": 1000, "taken_at": t.isoformat(),
                       "position": {"lat": PHOTO_LAT, "lon": PHOTO_LON}}]}
    evs = [ping("dev-home", HOME_REP, _night(3, m), lat=LAT, lon=LON) for m in range(3)]
    _upload(s, token, [*_workday("dev-home", HOME_REP, 3), *evs, sub])
    _stored(s, HOME_REP, 6)
    s.wait_derived()  # the night's pings are in the rollup, each upload its own state
    _upload(s, token, [ping("dev-home", HOME_REP,
                            dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))])
    wait_for(lambda: _closed(s, HOME_REP, t.date()), 60, "the day closes")
    return token, t.date()


def test_photo_positions_are_coarsened_off_duty(s: Stack, closed_day: tuple[str, dt.date]
                                                ) -> None:
    """(2) A visit submission's photo positions off duty are coarsened at the day's close."""
    photos = s.scalar(f"SELECT photos FROM events WHERE rep_id = '{HOME_REP}' "
                      "AND kind = 'visit_submission'")
    assert photos and '"position":{"lat":52.61,"lon":13.5' in photos, photos
    assert str(PHOTO_LAT) not in photos and str(PHOTO_LON) not in photos, photos


def test_last_position_rollup_keeps_no_exact_off_duty_state(
        s: Stack, closed_day: tuple[str, dt.date]) -> None:
    """(3) After a day closes, no state of rep_last_position_agg holds its exact pings."""
    states = s.sql("SELECT finalizeAggregation(last_lat) AS lat FROM rep_last_position_agg "
                   f"WHERE rep_id = '{HOME_REP}'")
    assert states and all(r["lat"] != LAT for r in states), states


def test_same_event_id_with_another_time_is_stored_once(s: Stack) -> None:
    """(6) One row per event id, the first received."""
    rep = _rep("rep-dup")
    token = s.add_device(rep, "dev-dup")
    t = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    first = ping("dev-dup", rep, t)
    _upload(s, token, [first])
    _stored(s, rep, 1)
    again = {**first, "ts": (t + dt.timedelta(minutes=7)).isoformat(), "lat": 52.6}
    _upload(s, token, [again])
    s.wait_derived()
    wait_for(lambda: s.scalar(f"SELECT count() FROM events WHERE rep_id = '{rep}'") == 1, 30,
             "one row for the event id")
    row = s.sql(f"SELECT lat, toUnixTimestamp64Milli(ts) AS ms FROM events "
                f"WHERE rep_id = '{rep}'")[0]
    assert row["lat"] == first["lat"] and row["ms"] == int(t.timestamp() * 1000)


def test_forged_device_record_is_ignored(s: Stack) -> None:
    """(7) A device record produced to the devices topic by anyone but the service does not
    authenticate uploads."""
    from kafka import KafkaProducer

    from streams.settings import DEVICES, Settings

    token = new_token()
    forged = DeviceRecord(token_hash=hash_token(token), device_id="dev-forged",
                          rep_id=_rep("rep-forged"), created_at=dt.datetime.now(dt.UTC))
    producer = KafkaProducer(bootstrap_servers=s.bootstrap)
    producer.send(Settings().topic(DEVICES), key=forged.token_hash.encode(),
                  value=orjson.dumps(forged.model_dump(mode="json")))
    producer.flush(10)
    producer.close()
    s.add_device(_rep("rep-legit"), "dev-legit")  # a record after it: the tail read both
    r = s.post(token, [ping("dev-forged", forged.rep_id, dt.datetime.now(dt.UTC))])
    assert r.status_code == 401, r.text


def test_one_erase_removes_data_home_and_tokens(s: Stack, closed_day: tuple[str, dt.date]
                                                 ) -> None:
    """(5) Export has the home and the closed days; the admin erase revokes the tokens,
    removes the rep's entries from every published set (its home in the accounts set, its
    office in the place set, its roster entry) and reports all of it."""
    token, _ = closed_day
    places = s.root / "places.geojson"
    places.write_text(orjson.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"place_id": f"office-{rid}", "kind": "office",
                                           "rep_id": rid, "radius_m": 60},
         "geometry": {"type": "Point", "coordinates": [13.30 + i / 100, 52.50]}}
        for i, rid in enumerate((HOME_REP, "rep-0002"))]}).decode())
    roster = s.root / "roster.csv"
    roster.write_text(f"rep,name,team\n{HOME_REP},Ana Example,North\nrep-0002,Bo,North\n")
    s.cli("places", "load", str(places))
    s.cli("reps", "load", str(roster))
    lines = [orjson.loads(ln) for ln in s.cli("reps", "export", HOME_REP).stdout.splitlines()]
    tables = {ln["table"] for ln in lines}
    assert {"closed_rep_days", "places"} <= tables, tables
    assert any(ln.get("name") == f"Home of {HOME_REP}" for ln in lines)
    assert {(ln.get("set"), ln.get("account_id") or ln.get("name")) for ln in lines
            if ln["table"] == "places"} >= {("places", f"office-{HOME_REP}"),
                                            ("reps", "Ana Example")}, lines

    r = s.http.post("/v1/admin/erase", json={"rep_id": HOME_REP},
                    headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["revoked_tokens"] == 1 and report["removed_places"] == 3, report
    assert report["removed"]["events_all"] >= 7 and report["removed"]["closed_rep_days"], report
    assert s.scalar(f"SELECT count() FROM events_all WHERE rep_id = '{HOME_REP}'") == 0
    assert s.post(token, [ping("dev-home", HOME_REP, dt.datetime.now(dt.UTC))]).status_code \
        == 401
    _, _, body = decode_set(journal_path(s.root / "var", "accounts").read_bytes())
    assert f"Home of {HOME_REP}".encode() not in body
    for kind, other in (("places", b"office-rep-0002"), ("reps", b"rep-0002")):
        _, _, body = decode_set(journal_path(s.root / "var", kind).read_bytes())
        assert HOME_REP.encode() not in body and other in body, (kind, body[:500])
