"""`geotel reps` against a running stack: export through the SQL endpoint, erase through the
worker's admin endpoint."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import orjson
import pytest

from tests.conftest import Stack, ping, wait_for

pytestmark = pytest.mark.integration
TOKEN = "admin-secret-for-tests"


@pytest.fixture(scope="module")
def privacy_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("privacy-stack"),
              extra_env={"GEOTEL_PRIVACY__ADMIN_TOKEN": TOKEN})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def test_export_and_erase_through_the_running_service(privacy_stack: Stack) -> None:
    s = privacy_stack
    token = s.add_device("rep-x", "dev-x")
    s.add_device("rep-y", "dev-y")
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    evs = [ping("dev-x", "rep-x", t0 + dt.timedelta(minutes=i)) for i in range(20)]
    assert s.post(token, evs).status_code in (200, 202)
    wait_for(lambda: s.scalar("SELECT count() FROM events WHERE rep_id = 'rep-x'") == 20, 60,
             "the pings are stored")

    r = s.cli("reps", "export", "rep-x")
    assert "from the running service" in r.stderr
    lines = [orjson.loads(ln) for ln in r.stdout.splitlines()]
    assert sum(ln["table"] == "events_all" for ln in lines) == 20
    assert [ln["device_id"] for ln in lines if ln["table"] == "devices"] == ["dev-x"]

    denied = s.http.post("/v1/admin/erase", json={"rep_id": "rep-x"},
                         headers={"Authorization": "Bearer wrong"})
    assert denied.status_code == 401
    r = s.cli("reps", "erase", "rep-x", "--yes", check=False)
    assert r.returncode == 0, r.stderr
    assert "through the running service" in r.stdout and "events_all: 20 rows" in r.stdout
    assert s.scalar("SELECT count() FROM events_all WHERE rep_id = 'rep-x'") == 0
    # the token is revoked: the phone can no longer upload
    wait_for(lambda: s.post(token, [ping("dev-x", "rep-x", t0)]).status_code == 401, 15,
             "the revocation reaches ingest")
