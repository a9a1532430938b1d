"""Sessions through the real stack: simulated field days in, work days out, and the same
figures after the worker is SIGKILLed mid-run (state rebuilt from ClickHouse)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter

from geo import load_index
from processors import derive_rep_day
from schemas.derived import EnrichedEvent
from simulator.client import post_uploads
from simulator.noise import NoiseProfile
from simulator.run import simulate
from sinks.rows import stored_event
from streams.sessions import GeoPlaces
from streams.settings import Settings
from tests.conftest import GEOTEL, ROOT, Stack, wait_for

pytestmark = pytest.mark.integration
SAMPLE = ROOT / "data" / "sample"
EVENTS = TypeAdapter(list[EnrichedEvent])
FIGURES = ["workday_start", "workday_end", "workday_s", "field_s", "travel_s", "customer_s",
           "break_s", "office_home_s", "in_territory_s", "out_territory_s", "distance_m",
           "visits", "verified_visits", "auto_visits", "pings_kept", "events", "version"]


def _register(stack: Stack, devices: list[tuple[str, str]]) -> dict[str, str]:
    return {dev: stack.add_device(rep, dev) for dev, rep in devices}


def _recompute(stack: Stack, version: int) -> dict[tuple[str, str], dict[str, Any]]:
    """The harness's own recomputation: derive each stored rep-day in one go, from the
    events in ClickHouse, with the same territory index."""
    index, _ = load_index(SAMPLE / "territories.geojson", SAMPLE / "accounts.geojson",
                          version=version)
    params = Settings().sessions
    rows = stack.sql("SELECT * FROM events")
    by_rep: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        for k in ("ts", "received_at", "started_at", "ended_at"):
            if r.get(k):
                r[k] = r[k].replace(" ", "T") + "+00:00"
        r["form"] = r.get("form") or {}
        by_rep.setdefault(r["rep_id"], []).append(stored_event(r))
    out = {}
    for rep, evs in by_rep.items():
        events = EVENTS.validate_python(evs)
        tz = index.rep_profile(rep).tz
        days = sorted({e.ts.astimezone(ZoneInfo(tz)).date() for e in events
                       if e.kind == "ping"})
        for day in days:
            _, summary = derive_rep_day(rep, day, tz, events, GeoPlaces(index, rep), params,
                                        version=0)
            out[(rep, day.isoformat())] = summary.model_dump(mode="json")
    return out


def _stored_daily(stack: Stack) -> dict[tuple[str, str], dict[str, Any]]:
    rows = stack.sql("SELECT * FROM rep_daily")
    return {(r["rep_id"], r["local_date"]): r for r in rows}


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int):
        return abs(float(a) - float(b)) <= 1e-3 * max(1.0, abs(float(b)))
    if isinstance(a, str) and isinstance(b, str) and ("T" in b or " " in a):
        return a.replace(" ", "T")[:19] == b.replace(" ", "T")[:19]
    return a == b


def test_work_days_from_simulated_reps_match_a_batch_recomputation(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.start()
    try:
        version = stack.load_sample_world()
        day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        sim = simulate(SAMPLE, 4, 1, day, 11, NoiseProfile.realistic())
        tokens = _register(stack, sim.devices)
        stats = asyncio.run(post_uploads(stack.base, sim.uploads, tokens, speedup=0,
                                         concurrency=4, start_at=None))
        assert stats.uploads_failed == 0 and stats.accepted > 1000
        wait_for(lambda: stack.health()["components"]["sink"]["rows"] >= stats.accepted, 60,
                 "events stored")
        stack.wait_derived()
        stored = _stored_daily(stack)
        assert len(stored) == 4
        expected = _recompute(stack, version)
        for key, exp in expected.items():
            got = stored[key]
            for f in FIGURES[:-1]:
                assert _close(got[f], exp[f]), (key, f, got[f], exp[f])
            assert int(got["version"]) == exp["events"]  # version = size of the event set
        # Visits, segments and transitions are queryable and consistent with rep_daily.
        n_vis = {r["rep_id"]: int(r["n"]) for r in stack.sql(
            "SELECT rep_id, count() AS n FROM visits GROUP BY rep_id")}
        assert n_vis == {k[0]: int(v["visits"]) for k, v in stored.items()}
        assert int(stack.scalar("SELECT count() FROM segments WHERE kind = 'travel'")) > 4
        assert int(stack.scalar(
            "SELECT count() FROM transitions WHERE kind = 'territory_enter'")) >= 4
        truth = {(t["rep_id"]): t for t in sim.truth}
        for (rep, _), got in stored.items():
            true_visits = len(truth[rep]["visits"])
            assert abs(int(got["visits"]) - true_visits) <= 1, (rep, got["visits"], true_visits)
        # An event older than the rep's watermark minus the lateness is not silently
        # dropped: it is dead-lettered as too_late and leaves the rep-day unchanged.
        dev, rep = sim.devices[0]
        wm = dt.datetime.fromisoformat(str(stack.scalar(
            f"SELECT toString(max(ts)) FROM events WHERE rep_id = '{rep}'")).replace(" ", "T")
            + "+00:00")
        late = {"event_id": str(uuid.uuid4()), "device_id": dev, "rep_id": rep,
                "kind": "ping", "ts": (wm - dt.timedelta(hours=40)).isoformat(),
                "lat": 52.5, "lon": 13.4, "accuracy_m": 5.0}
        # The ingest of this process knows the rep's watermark while the stage holds the
        # rep: it refuses the event with the reason. Published anyway (as a separate ingest
        # process would), the sessions stage dead-letters it and deletes the stored copy.
        res = stack.post(tokens[dev], [late]).json()["results"][0]
        assert res["status"] == "accepted" or res["reason"] == "too_late", res
        if res["status"] != "accepted":
            stack.produce_raw([late])
        wait_for(lambda: int(stack.scalar(
            f"SELECT count() FROM deadletters WHERE reason = 'too_late' "
            f"AND event_id = '{late['event_id']}'")) == 1, 60, "too_late dead letter")
        wait_for(lambda: int(stack.scalar(
            f"SELECT count() FROM events_all WHERE event_id = '{late['event_id']}'")) == 0,
            60, "the late event is not kept in the store")
        stack.wait_derived()
        assert _stored_daily(stack) == stored
        # Prometheus: events in and out per topic, dead letters by reason, sink batches,
        # index version and consumer lag (caught up: 0 on every partition).
        metrics = stack.http.get("/metrics").text

        def value(name: str) -> float:
            line = next(ln for ln in metrics.splitlines() if ln.startswith(name + " ")
                        or (ln.startswith(name + "{") and "} " in ln))
            return float(line.rsplit(" ", 1)[1])

        assert value('geotel_events_in_total{topic="telemetry.enriched"}') > 0
        assert value('geotel_events_out_total{topic="field.workdays"}') >= 4
        assert value('geotel_deadletters_total{reason="too_late"}') == 1
        assert value("geotel_sink_batch_rows_count") > 0
        # the version in use (accounts may have been published a second after territories)
        assert value("geotel_geo_index_version") == stack.health()["components"]["geo"]["version"]
        wait_for(lambda: "geotel_consumer_lag{" in stack.http.get("/metrics").text, 15,
                 "consumer lag is reported")
    finally:
        stack.stop()


def test_sigkilled_worker_rebuilds_sessions_and_figures_match(tmp_path: Path) -> None:
    """Broker and ingest stay up; only the worker is killed (twice) while uploads flow."""
    stack = Stack(tmp_path)
    stack.start_broker()
    stack.start(command="worker")
    try:
        version = stack.load_sample_world()
        day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        sim = simulate(SAMPLE, 3, 1, day, 5, NoiseProfile.realistic())
        tokens = _register(stack, sim.devices)
        # A separate stateless ingest process keeps accepting while the worker is down.
        from tests.conftest import free_port

        ingest_http = free_port()
        ingest_env = {**stack.env, "GEOTEL_WEB_PORT": str(ingest_http)}
        ingest = subprocess.Popen([*GEOTEL, "ingest"], env=ingest_env, cwd=stack.root,
                                  stdout=(stack.root / "ingest.log").open("ab"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        import httpx

        wait_for(lambda: httpx.get(f"http://127.0.0.1:{ingest_http}/health").json()
                 ["components"]["devices"]["tokens"] >= len(tokens), 60, "ingest ready")
        n = len(sim.uploads)
        result: dict[str, Any] = {}

        def post() -> None:
            result["stats"] = asyncio.run(post_uploads(
                f"http://127.0.0.1:{ingest_http}", sim.uploads, tokens, speedup=0,
                concurrency=2, start_at=None))

        poster = threading.Thread(target=post)
        poster.start()
        for _ in range(2):
            time.sleep(3)
            assert stack.proc is not None
            os.killpg(stack.proc.pid, signal.SIGKILL)
            stack.proc.wait()
            stack.start(command="worker")
        poster.join(120)
        stats = result["stats"]
        assert stats.uploads_failed == 0, stats.errors
        assert n > 0 and stats.accepted > 500 and stats.rejected == 0
        # Phones re-send some uploads (the simulator's 5% duplicates): each id counts once.
        distinct = len({e["event_id"] for u in sim.uploads for e in u.events})
        counts: list[int] = []

        def all_stored() -> bool:
            counts[:] = [int(stack.scalar("SELECT count() FROM events")),
                         int(stack.scalar("SELECT uniqExact(event_id) FROM events"))]
            return counts[0] == distinct

        try:
            wait_for(all_stored, 90, "every accepted event stored exactly once")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: stored {counts} of {distinct} distinct accepted "
                                 "events") from exc
        assert counts[1] == distinct
        # Stored is not derived yet: wait_derived waits until the sessions stage committed
        # telemetry.enriched to its end.
        stack.wait_derived()
        stored = _stored_daily(stack)
        expected = _recompute(stack, version)
        assert set(stored) == set(expected)
        for key, exp in expected.items():
            for f in FIGURES[:-1]:
                assert _close(stored[key][f], exp[f]), (key, f, stored[key][f], exp[f],
                                                        "stored version",
                                                        stored[key]["version"], "events",
                                                        exp["events"],
                                                        stack.health()["components"])
    finally:
        if "ingest" in locals():
            os.killpg(ingest.pid, signal.SIGINT)
            ingest.wait(30)
        stack.stop()
