"""The walking skeleton end to end: HTTP ingest -> Tansu -> Faust -> chDB, all real."""

from __future__ import annotations

import datetime as dt
import os
import random

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.conftest import Stack, ping, wait_for

pytestmark = pytest.mark.integration


def _day_pings(dev: str, rep: str, n: int, start: dt.datetime) -> list[dict]:
    rng = random.Random(f"{dev}")
    return [ping(dev, rep, start + dt.timedelta(seconds=30 * i),
                 lat=52.4 + rng.random() * 0.2, lon=13.2 + rng.random() * 0.4)
            for i in range(n)]


def test_uploads_land_exactly_once(stack: Stack) -> None:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=20)
    devices = {f"dev-it-{i}": f"rep-it-{i}" for i in range(5)}
    tokens = {d: stack.add_device(r, d) for d, r in devices.items()}
    sent: list[dict] = []
    for d, r in devices.items():
        evs = _day_pings(d, r, 2000, start)
        sent.extend(evs)
        for i in range(0, len(evs), 250):
            resp = stack.post(tokens[d], evs[i:i + 250])
            assert resp.status_code == 202, resp.text
            assert resp.json()["accepted"] == len(evs[i:i + 250])
    assert len(sent) == 10_000
    # A phone that did not hear the answer uploads 1,000 of them again.
    again = random.Random(7).sample(sent, 1000)
    for i in range(0, 1000, 100):
        chunk = again[i:i + 100]
        by_dev: dict[str, list[dict]] = {}
        for e in chunk:
            by_dev.setdefault(e["device_id"], []).append(e)
        for d, evs in by_dev.items():
            assert stack.post(tokens[d], evs).status_code == 202

    # Every upload was acknowledged by the broker before its 202; wait until the worker has
    # stored all of them (its sink row counter includes the re-sent ones), then count as
    # analysts do, through the `events` view.
    wait_for(lambda: stack.health()["components"]["sink"]["rows"] >= 11_000, 60,
             "the worker stored all 11,000 uploaded events")
    assert int(stack.scalar("SELECT count() FROM events WHERE rep_id LIKE 'rep-it-%'")) == 10_000
    assert int(stack.scalar(
        "SELECT uniqExact(event_id) FROM events WHERE rep_id LIKE 'rep-it-%'")) == 10_000
    per_rep = stack.sql("SELECT rep_id, count() AS n FROM events WHERE rep_id LIKE 'rep-it-%' "
                        "GROUP BY rep_id ORDER BY rep_id")
    assert [int(r["n"]) for r in per_rep] == [2000] * 5


def test_bad_and_unauthorised_events_are_rejected_and_not_stored(stack: Stack) -> None:
    tok = stack.add_device("rep-bad-1", "dev-bad-1")
    now = dt.datetime.now(dt.UTC)
    good = ping("dev-bad-1", "rep-bad-1", now)
    spoof_rep = ping("dev-bad-1", "rep-someone-else", now)
    spoof_dev = ping("dev-other", "rep-bad-1", now)
    bad_lat = ping("dev-bad-1", "rep-bad-1", now, lat=123.0)
    future = ping("dev-bad-1", "rep-bad-1", now + dt.timedelta(days=2))
    nan = ping("dev-bad-1", "rep-bad-1", now)
    nan_body = orjson.dumps({"events": [nan]}).replace(b'"lat":52.52', b'"lat":NaN')
    resp = stack.post(tok, [good, spoof_rep, spoof_dev, bad_lat, future, {"kind": "ping"}, 42])
    assert resp.status_code == 202
    res = resp.json()["results"]
    assert [r["status"] for r in res] == ["accepted"] + ["rejected"] * 6
    assert [r["reason"] for r in res[1:]] == ["identity_mismatch", "identity_mismatch",
                                              "invalid", "in_future", "invalid", "invalid"]
    assert all(r["detail"] for r in res[1:])
    # whole-request problems
    assert stack.post(tok, nan_body).status_code == 400
    assert stack.post("gt_not-a-token", [good]).status_code == 401
    assert stack.post(tok, b"{not json").json()["error"] == "invalid_json"
    assert stack.post(tok, []).status_code == 400
    assert stack.post(tok, [good] * 501).status_code == 413
    big = b'{"events": [' + b" " * (3 * 1024 * 1024) + b"]}"
    assert stack.post(tok, big).status_code == 413

    wait_for(lambda: int(stack.scalar(
        "SELECT count() FROM events WHERE device_id = 'dev-bad-1'")) == 1, 30,
        "the one good event is stored")
    ids = {r["event_id"] for r in stack.sql(
        "SELECT toString(event_id) AS event_id FROM events "
        "WHERE rep_id IN ('rep-bad-1', 'rep-someone-else') OR device_id = 'dev-other'")}
    assert ids == {good["event_id"]}


def test_garbage_on_raw_goes_to_deadletter_and_worker_keeps_going(stack: Stack) -> None:
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    producer.send("telemetry.raw", key=b"x", value=b"\xff\xfe garbage \x00")
    producer.send("telemetry.raw", key=b"y", value=b'{"hello": "world"}')
    producer.send("telemetry.raw", key=b"z", value=b'[1, 2]')
    producer.flush()
    producer.close()
    tok = stack.add_device("rep-dl-1", "dev-dl-1")
    after = ping("dev-dl-1", "rep-dl-1", dt.datetime.now(dt.UTC))
    assert stack.post(tok, [after]).status_code == 202
    wait_for(lambda: int(stack.scalar(
        f"SELECT count() FROM events WHERE event_id = '{after['event_id']}'")) == 1, 30,
        "an event sent after the garbage is stored")
    rows = stack.sql("SELECT reason, detail, payload, payload_b64 FROM deadletters "
                     "WHERE source_topic = 'telemetry.raw' ORDER BY source_offset")
    reasons = [r["reason"] for r in rows]
    assert "undecodable" in reasons and reasons.count("invalid") >= 3, rows
    undec = next(r for r in rows if r["reason"] == "undecodable")
    assert undec["payload_b64"]  # the raw bytes are kept, nothing is lost
    consumer = KafkaConsumer("telemetry.deadletter", bootstrap_servers=stack.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    letters = [orjson.loads(m.value) for m in consumer]
    consumer.close()
    assert {d["reason"] for d in letters} >= {"undecodable", "invalid"}
    assert all(d["detail"] and d["source_topic"] == "telemetry.raw" for d in letters)


def test_sql_endpoint_is_read_only(stack: Stack) -> None:
    for q in ["INSERT INTO events_all (event_id) VALUES (generateUUIDv4())",
              "DROP TABLE events_all", "SELECT * FROM file('/etc/passwd', 'LineAsString')",
              "SELECT 1; DROP TABLE events_all", "SELECT 1 INTO OUTFILE '/tmp/x.csv'",
              "SELECT 1 SETTINGS readonly = 0"]:
        r = stack.http.post("/v1/sql", json={"sql": q})
        assert r.status_code in (400, 403), (q, r.text)
        assert r.json()["error"]
    assert int(stack.scalar("EXISTS TABLE events_all")) == 1
    r = stack.http.post("/v1/sql", json={"sql": "SELECT number FROM numbers(10)",
                                         "format": "csv"})
    assert r.status_code == 200 and r.text.splitlines()[0] == '"number"'
    r = stack.http.post("/v1/sql", json={"sql": "SELECT number FROM system.numbers"})
    assert r.status_code == 400 and r.json()["error"] in ("too_many_rows", "timeout")


def test_geotel_sql_cli_goes_through_the_service(stack: Stack) -> None:
    out = stack.cli("sql", "SELECT count() AS n FROM events WHERE 0", "--format", "csv").stdout
    assert out.splitlines() == ['"n"', "0"]
    # Control characters of stored text never reach the terminal raw.
    out = stack.cli("sql", "SELECT concat(char(27), '[31mred', char(7)) AS note",
                    "--format", "table").stdout
    assert r"\x1b[31mred\x07" in out and "\x1b" not in out and "\x07" not in out


def test_restart_keeps_devices_and_data_and_sql_works_when_stopped(tmp_path) -> None:
    s = Stack(tmp_path)
    s.start()
    try:
        tok = s.add_device("rep-rs-1", "dev-rs-1")
        ev = ping("dev-rs-1", "rep-rs-1", dt.datetime.now(dt.UTC))
        assert s.post(tok, [ev]).status_code == 202
        wait_for(lambda: int(s.scalar("SELECT count() FROM events")) == 1, 30, "stored")
    finally:
        assert s.stop() == 0  # Ctrl-C stops everything cleanly
    # Stopped: `geotel sql` opens chDB directly.
    out = s.cli("sql", "SELECT toString(event_id) AS id FROM events", "--format", "csv").stdout
    assert out.splitlines() == ['"id"', f'"{ev["event_id"]}"']
    # Started again: the in-memory broker lost its topics, but the device journal is replayed
    # and chDB kept the data.
    s.start()
    try:
        ev2 = ping("dev-rs-1", "rep-rs-1", dt.datetime.now(dt.UTC))
        wait_for(lambda: s.post(tok, [ev2]).status_code == 202, 20, "the old token works")
        wait_for(lambda: int(s.scalar("SELECT count() FROM events")) == 2, 30, "both stored")
    finally:
        s.stop()


def test_up_stops_when_its_broker_dies_and_leaves_no_orphan(tmp_path) -> None:
    import signal
    import subprocess
    import time

    def broker_pids(port: int) -> list[int]:
        out = subprocess.run(["pgrep", "-f", f"tansu broker --listener-url tcp://127.0.0.1:{port}"],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    s = Stack(tmp_path)
    s.start()
    try:
        [pid] = broker_pids(s.kafka_port)
        os.kill(pid, signal.SIGKILL)  # the in-memory broker is gone: its topics with it
        assert s.proc is not None
        s.proc.wait(60)  # geotel up stops instead of skipping what the new broker lacks
    finally:
        s.stop()
    # SIGKILL of `geotel up` itself: its broker follows (no orphan holding the port).
    (tmp_path / "again").mkdir()
    s2 = Stack(tmp_path / "again")
    s2.start()
    assert s2.proc is not None
    os.killpg(s2.proc.pid, signal.SIGKILL)
    s2.proc.wait()
    deadline = time.monotonic() + 15
    while broker_pids(s2.kafka_port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert broker_pids(s2.kafka_port) == []
