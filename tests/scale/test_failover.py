"""Three workers on the embedded broker share one embedded chDB through `geotel store`; one
is SIGKILLed mid-stream and not restarted. Its partitions move to the other two, every
accepted event is stored exactly once, and the per-rep session state the dead worker held is
rebuilt from the store, so the work days equal a batch recomputation."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator.client import post_uploads
from simulator.noise import NoiseProfile
from simulator.run import simulate
from sinks.clickhouse import connect
from tests.conftest import GEOTEL, ROOT, enriched_lag, free_port, wait_for
from tests.streams.test_sessions_integration import FIGURES, _close, _recompute

pytestmark = pytest.mark.integration
SAMPLE = ROOT / "data" / "sample"
PARTITIONS = 6
RAW, ENRICHED = "telemetry.raw", "telemetry.enriched"


class Proc:
    """One `geotel` subprocess with its log file (own process group, so killpg is exact)."""

    def __init__(self, root: Path, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log = root / f"{name}.log"
        # `geotel worker` and `geotel ingest` do not create their data_dir (opening chDB did).
        Path(env["GEOTEL_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([*GEOTEL, *args], env=env, cwd=root,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 20) -> None:
        if not self.alive():
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class Worker(Proc):
    def __init__(self, root: Path, n: int, env: dict[str, str]) -> None:
        self.port = free_port()
        env = {**env, "GEOTEL_WEB_PORT": str(self.port),
               "GEOTEL_DATA_DIR": str(root / f"worker{n}")}
        super().__init__(root, f"worker{n}", ["worker"], env)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def health(self) -> dict[str, Any]:
        return dict(self.http.get("/health").json())

    def assigned(self, topic: str) -> set[int]:
        return {int(a.rsplit("/", 1)[1]) for a in self.health()["components"]["consumer"]
                ["assigned"] if a.rsplit("/", 1)[0] == topic}


class StoreSql:
    """What tests.streams.test_sessions_integration._recompute needs of a Stack: ``sql``
    returning the rows of ClickHouse's JSON format (as the workers' /v1/sql does)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def sql(self, query: str) -> list[dict[str, Any]]:
        return list(json.loads(self.client.raw_query(query, fmt="JSON"))["data"])

    def scalar_row(self, query: str) -> tuple[Any, ...]:
        return tuple(self.client.query(query).result_rows[0])


def _wait(cond: Any, timeout_s: float, what: str, procs: list[Proc],
          interval_s: float = 0.3) -> None:
    """wait_for, failing at once when one of ``procs`` died."""

    def check() -> bool:
        dead = [p for p in procs if not p.alive()]
        if dead:
            raise _Died(f"{dead[0].name} exited while waiting until {what}: {dead[0].tail()}")
        return bool(cond())

    try:
        wait_for(check, timeout_s, what, interval_s)
    except AssertionError as exc:
        if "_Died(" in str(exc):
            raise AssertionError(str(exc)) from None
        raise


class _Died(Exception):
    pass


def _spread(workers: list[Worker], topic: str) -> list[set[int]]:
    return [w.assigned(topic) for w in workers]


def test_three_workers_one_killed_partitions_move_events_once_sessions_rebuilt(
        tmp_path: Path) -> None:
    from streams.broker import EmbeddedBroker

    kafka_port, store_port, ingest_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GEOTEL_PROFILE": "embedded",
        "GEOTEL_DATA_DIR": str(tmp_path / "cli"),
        # one signing key for the device records: each process has a data dir of its own
        "GEOTEL_INGEST__DEVICE_KEY": secrets.token_hex(32),
        "GEOTEL_KAFKA__EMBEDDED_PORT": str(kafka_port),
        "GEOTEL_KAFKA__TOPIC_PARTITIONS": str(PARTITIONS),
        "GEOTEL_KAFKA__SESSION_TIMEOUT_S": "6",
        "GEOTEL_CLICKHOUSE__URL": f"store://127.0.0.1:{store_port}",
        "GEOTEL_WORKER__DERIVE_INTERVAL_S": "2",
        "GEOTEL_LOG_LEVEL": "warning",
    }
    broker = EmbeddedBroker(kafka_port, log_path=tmp_path / "tansu.log")
    broker.start()
    procs: list[Proc] = []
    figures: dict[str, Any] = {}
    try:
        store = Proc(tmp_path, "store", ["store", "--port", str(store_port)],
                     {**env, "GEOTEL_DATA_DIR": str(tmp_path / "store")})
        procs.append(store)
        client = connect(url=env["GEOTEL_CLICKHOUSE__URL"], chdb_path=None, database="geotel")
        db = StoreSql(client)
        _wait(lambda: db.scalar_row("SELECT count() FROM schema_migrations")[0] >= 2, 60,
              "the store is up and migrated", [store])

        t0 = time.monotonic()
        workers = [Worker(tmp_path, n, env) for n in range(3)]
        procs.extend(workers)
        live: list[Proc] = [store, *workers]

        def all_up() -> bool:
            spread = _spread(workers, RAW)
            return (all(spread) and set().union(*spread) == set(range(PARTITIONS))
                    and sum(map(len, spread)) == PARTITIONS
                    and all(w.health()["status"] == "ok" for w in workers))

        _wait(all_up, 120, "three workers share the partitions", procs, interval_s=0.5)
        figures["three_workers_up_s"] = round(time.monotonic() - t0, 1)
        print("three workers up", figures, flush=True)

        cli = dict(env=env, cwd=tmp_path, text=True, capture_output=True, check=True,
                   timeout=120)
        subprocess.run([*GEOTEL, "territories", "load", str(SAMPLE / "territories.geojson")],
                       **cli)  # type: ignore[call-overload]
        subprocess.run([*GEOTEL, "accounts", "load", str(SAMPLE / "accounts.geojson")],
                       **cli)  # type: ignore[call-overload]
        versions: list[int] = []

        def geo_loaded() -> bool:
            geos = [w.health()["components"].get("geo", {}) for w in workers]
            versions[:] = [g["version"] for g in geos if g.get("version")
                           and {"territories", "accounts"} <= set(g.get("sets", {}))]
            return len(versions) == 3 and len(set(versions)) == 1

        _wait(geo_loaded, 60, "every worker uses the sample territory set", live)
        version = versions[0]

        day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        sim = simulate(SAMPLE, 6, 1, day, 23, NoiseProfile.realistic())
        tokens = {dev: subprocess.run([*GEOTEL, "devices", "add", "--rep", rep, "--device", dev],
                                      **cli).stdout.strip()  # type: ignore[call-overload]
                  for dev, rep in sim.devices}
        ingest = Proc(tmp_path, "ingest", ["ingest"], {**env, "GEOTEL_WEB_PORT": str(ingest_port),
                                                       "GEOTEL_DATA_DIR": str(tmp_path / "ing")})
        procs.append(ingest)
        live.append(ingest)
        base = f"http://127.0.0.1:{ingest_port}"
        _wait(lambda: httpx.get(f"{base}/health").json()["components"]["devices"]["tokens"]
              >= len(tokens), 60, "ingest knows every device", live)

        uploads = sorted(sim.uploads, key=lambda u: u.send_at)
        distinct = len({e["event_id"] for u in uploads for e in u.events})
        cut = int(len(uploads) * 0.4)
        stats: list[Any] = []

        def post(part: list[Any]) -> None:
            stats.append(asyncio.run(post_uploads(base, part, tokens, speedup=0, concurrency=2,
                                                  start_at=None)))

        t_post = time.monotonic()
        post(uploads[:cut])
        # Let the first part flow through all three workers (events and derived days).
        _wait(lambda: db.scalar_row("SELECT count() FROM events_all")[0] > 0
              and db.scalar_row("SELECT count() FROM rep_daily_all")[0] > 0, 60,
              "the first uploads are stored and derived", live)
        poster = threading.Thread(target=post, args=(uploads[cut:],))
        poster.start()
        time.sleep(1.0)

        victim, survivors = workers[0], workers[1:]
        before = {w.name: (w.assigned(RAW), w.assigned(ENRICHED)) for w in workers}
        victim_reps = victim.health()["components"]["sessions"]["reps"]
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        live.remove(victim)
        t_kill = time.monotonic()
        figures["killed_at_s_after_first_post"] = round(t_kill - t_post, 1)
        figures["posting_while_killed"] = poster.is_alive()

        def moved() -> bool:
            raw = _spread(survivors, RAW)
            enr = _spread(survivors, ENRICHED)
            return (set().union(*raw) == set(range(PARTITIONS))
                    and set().union(*enr) == set(range(PARTITIONS))
                    and sum(map(len, raw)) == PARTITIONS)

        _wait(moved, 90, "the survivors own every partition", live, interval_s=0.25)
        figures["rebalance_s"] = round(time.monotonic() - t_kill, 1)
        for w in survivors:
            raw_before, enr_before = before[w.name]
            assert len(w.assigned(RAW)) > len(raw_before) or len(w.assigned(ENRICHED)) > len(
                enr_before), (w.name, before, w.health()["components"]["consumer"])
        assert before[victim.name][0] <= set().union(*_spread(survivors, RAW))

        poster.join(150)
        assert not poster.is_alive()
        assert all(s.uploads_failed == 0 for s in stats), [s.errors for s in stats]
        assert sum(s.rejected for s in stats) == 0
        assert sum(s.accepted for s in stats) >= distinct  # resends are accepted too
        counts: list[int] = []

        def all_stored() -> bool:
            counts[:] = db.scalar_row("SELECT count(), uniqExact(event_id) FROM events")
            return counts[0] >= distinct

        try:
            _wait(all_stored, 90, "every accepted event stored", live, interval_s=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: stored {counts} of {distinct}") from exc
        t_stored = time.monotonic()
        assert counts == [distinct, distinct], (counts, distinct)  # each event exactly once

        def derived() -> bool:
            sts = [w.health()["components"]["sessions"] for w in survivors]
            return all(s["dirty_reps"] == 0 and s["pending_messages"] == 0 for s in sts)

        # (idle alone passes between two batches, or before a moved partition's first
        # fetch, while enriched messages are still on the topic)
        _wait(lambda: enriched_lag(f"127.0.0.1:{kafka_port}", PARTITIONS) == 0
              and derived(), 90, "the survivors derived everything", live)
        time.sleep(1)
        sessions = [w.health()["components"]["sessions"] for w in survivors]
        rebuilt = sum(s["rebuilt_reps"] for s in sessions)
        stored = {(r["rep_id"], r["local_date"]): r for r in db.sql("SELECT * FROM rep_daily")}
        expected = _recompute(db, version)  # type: ignore[arg-type]
        assert set(stored) == set(expected)
        assert len(stored) == 6
        for key, exp in expected.items():
            for f in FIGURES[:-1]:
                assert _close(stored[key][f], exp[f]), (key, f, stored[key][f], exp[f])
            assert int(stored[key]["version"]) == exp["events"]
        if victim_reps:
            assert rebuilt > 0, sessions  # the dead worker's reps were rebuilt from the store

        store_health = httpx.get(f"http://127.0.0.1:{store_port}/health").json()
        figures.update(
            events=distinct, uploads=len(uploads),
            raw_rows_in_events_all=db.scalar_row("SELECT count() FROM events_all")[0],
            victim_partitions={"raw": sorted(before[victim.name][0]),
                               "enriched": sorted(before[victim.name][1])},
            victim_reps=victim_reps, rebuilt_reps=rebuilt,
            survivors={w.name: {"raw": sorted(w.assigned(RAW)),
                                "enriched": sorted(w.assigned(ENRICHED))} for w in survivors},
            first_post_to_all_stored_s=round(t_stored - t_post, 1),
            events_per_s_end_to_end=round(distinct / (t_stored - t_post)),
            store=store_health,
            store_rows_per_busy_s=round(store_health["inserted_rows"]
                                        / max(store_health["busy_s"], 1e-6)),
        )
        print("FAILOVER", json.dumps(figures, default=str))
    finally:
        for p in reversed(procs):
            p.stop()
        broker.stop()
