"""What the running service serves to whoever reaches its port (issue: security of what the
service serves): no host file through /v1/sql, Bearer-only tokens, map data behind a token,
a refusal to bind beyond loopback without tokens, request-head timeout, connection cap,
private file modes, and analyst queries that never stall the intake."""

from __future__ import annotations

import datetime as dt
import os
import socket
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GEOTEL, Stack, ping, wait_for

pytestmark = pytest.mark.integration

QUERY_TOKEN = "q-" + uuid.uuid4().hex
VIEWER_TOKEN = "v-" + uuid.uuid4().hex
ENV = {"GEOTEL_QUERY__TOKEN": QUERY_TOKEN, "GEOTEL_QUERY__VIEWER_TOKEN": VIEWER_TOKEN,
       "GEOTEL_WEB__HEADER_TIMEOUT_S": "2", "GEOTEL_WEB__MAX_CONNECTIONS": "64",
       "GEOTEL_QUERY__MAX_EXECUTION_S": "30"}
# Far more than 30 s of work on one core: the 30 s limit ends it.
LONG_QUERY = ("SELECT count() FROM numbers(1000000000) "
              "WHERE sipHash64(toString(number), 'salt') % 1000003 = 17")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("exposure"), extra_env=ENV)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def post_sql(s: Stack, query: str, auth: str | None = f"Bearer {QUERY_TOKEN}",
             **kw: Any) -> httpx.Response:
    headers = {"Authorization": auth} if auth else {}
    return s.http.post("/v1/sql", json={"sql": query, "format": "json"}, headers=headers,
                       **kw)


def test_host_files_and_the_environment_are_not_served(svc: Stack) -> None:
    for q in ["SELECT content FROM filesystem('/etc/passwd')",
              "SELECT * FROM filesystem('/proc/self/environ')",
              "SELECT file('/proc/self/environ')",
              "SELECT * FROM eval('SELECT * FROM file(''/etc/passwd'', ''LineAsString'')')",
              "SELECT * FROM deltaLakeS3('http://127.0.0.1:9/x')",
              "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')"]:
        r = post_sql(svc, q)
        assert r.status_code == 403, (q, r.status_code, r.text[:300])
        assert r.json()["error"] == "not_allowed" and r.json()["detail"], r.text
        assert QUERY_TOKEN not in r.text and "root:" not in r.text


def test_tokens_count_only_as_bearer(svc: Stack) -> None:
    assert post_sql(svc, "SELECT 1").status_code == 200
    assert post_sql(svc, "SELECT 1", auth=f"bearer {QUERY_TOKEN}").status_code == 200
    for auth in (f"Digest {QUERY_TOKEN}", f"Basic {QUERY_TOKEN}", f"Xearer {QUERY_TOKEN}",
                 f"Bearer {QUERY_TOKEN}x", "Bearer", None):
        r = post_sql(svc, "SELECT 1", auth=auth)
        assert r.status_code == 401, (auth, r.text)
    r = svc.http.post(f"/v1/sql?token={QUERY_TOKEN}", json={"sql": "SELECT 1"})
    assert r.status_code == 401
    # Map data: the viewer token or the query token, as Bearer only.
    assert svc.http.get("/v1/map.json").status_code == 401
    assert svc.http.get(f"/v1/map.json?token={VIEWER_TOKEN}").status_code == 401
    for tok in (VIEWER_TOKEN, QUERY_TOKEN):
        r = svc.http.get("/v1/map.json", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200, r.text[:300]
    # The viewer token does not open SQL.
    assert post_sql(svc, "SELECT 1", auth=f"Bearer {VIEWER_TOKEN}").status_code == 401
    # /health and /metrics stay open and name no rep.
    h = svc.http.get("/health")
    assert h.status_code == 200 and "rep-" not in h.text
    assert "rep-" not in svc.http.get("/metrics").text


def test_a_slow_request_head_is_cut_off(svc: Stack) -> None:
    with socket.create_connection(("127.0.0.1", svc.web_port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finished
        t0 = time.monotonic()
        data = s.recv(1024)
        waited = time.monotonic() - t0
    assert data == b"" and 1.5 < waited < 6, (data[:100], waited)
    assert svc.http.get("/health").status_code == 200


def test_connections_past_the_cap_are_closed_and_the_service_recovers(svc: Stack) -> None:
    socks: list[socket.socket] = []
    try:
        for _ in range(300):
            socks.append(socket.create_connection(("127.0.0.1", svc.web_port), timeout=5))
        time.sleep(0.5)
        closed = 0
        for s in socks:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        assert closed >= 300 - 64 - 5, closed  # the cap (64), a few in flight
    finally:
        for s in socks:
            s.close()
    # The held ones are cut by the head timeout at the latest; the service serves again.
    wait_for(lambda: svc.http.get("/health", timeout=2).status_code == 200, 15,
             "the service answers again")


def test_data_dir_and_files_are_private(svc: Stack) -> None:
    var = Path(svc.env["GEOTEL_DATA_DIR"])
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    files = [p for p in var.rglob("*") if p.is_file()]
    assert files
    loose = [str(p) for p in files if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert not loose, loose[:10]


def test_bind_beyond_loopback_needs_both_tokens(tmp_path: Path) -> None:
    env = {**os.environ, "GEOTEL_DATA_DIR": str(tmp_path / "var"), "GEOTEL_WEB_HOST": "0.0.0.0",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("GEOTEL_QUERY__TOKEN", None)
    env.pop("GEOTEL_QUERY__VIEWER_TOKEN", None)
    r = subprocess.run([*GEOTEL, "up"], env=env, capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode != 0, r.stderr[-500:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "GEOTEL_QUERY__TOKEN" in lines[0] and \
        "GEOTEL_QUERY__VIEWER_TOKEN" in lines[0], r.stderr
    assert not (tmp_path / "var").exists()  # refused before anything started


def test_an_unusable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {**os.environ, "GEOTEL_DATA_DIR": str(blocker / "var"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([*GEOTEL, "up"], env=env, capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "GEOTEL_DATA_DIR" in lines[0], r.stderr[-2000:]


def test_uploads_stay_fresh_while_a_30s_query_runs(svc: Stack) -> None:
    token = svc.add_device("rep-fresh-1", "dev-fresh-1")
    result: dict[str, Any] = {}

    def long_query() -> None:
        t0 = time.monotonic()
        r = post_sql(svc, LONG_QUERY, timeout=120)
        result.update(status=r.status_code, body=r.json(), took=time.monotonic() - t0)

    t = threading.Thread(target=long_query)
    t.start()
    time.sleep(3)
    lags = []
    for i in range(8):
        ev = ping("dev-fresh-1", "rep-fresh-1",
                  dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30 - i))
        r = svc.post(token, [ev])
        assert r.status_code == 202, r.text
        acked = time.monotonic()
        q = f"SELECT count() AS n FROM events WHERE event_id = '{ev['event_id']}'"
        wait_for(lambda q=q: int(post_sql(svc, q).json()["data"][0]["n"]) == 1, 20,
                 "the upload is visible", 0.05)
        lags.append(time.monotonic() - acked)
        time.sleep(1.5)
    running_after = t.is_alive()
    t.join()
    assert running_after, "the long query ended before the uploads were measured"
    assert result["status"] == 400 and result["body"]["error"] == "timeout", result
    assert 29 < result["took"] < 40, result["took"]
    lags.sort()
    print(f"RESULT security upload_visible_during_30s_query_max_s={lags[-1]:.2f} "
          f"median_s={lags[len(lags) // 2]:.2f}")
    assert lags[-1] <= 2.0, lags
