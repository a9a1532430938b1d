"""Shared fixtures: real chDB in this process, and the real stack (`geotel up`: Tansu broker,
Faust worker with ingest, chDB) in a subprocess on free ports."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
GEOTEL = [sys.executable, "-m", "streams.cli"]

#: ``make test-slow`` sets GEOTEL_LONG_TESTS=1. Tests marked ``long`` run there at full size
#: (every Hypothesis example, every event) and in ``make test`` at a short size with the same
#: checks, so the default loop stays short and CI still runs the full sizes.
LONG_TESTS = os.environ.get("GEOTEL_LONG_TESTS") == "1"


def sized(full: int, short: int) -> int:
    """``full`` under ``make test-slow``, ``short`` in ``make test``."""
    return full if LONG_TESTS else short


#: Packages whose tests share one package-scoped stack.
_SHARED_STACK_PACKAGES = {"analysts", "map"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bench: runs a benchmark script (its smoke variant); `make test-quick` skips")
    config.addinivalue_line(
        "markers", "long: short size in `make test`, full size again in `make test-slow` "
                   "(GEOTEL_LONG_TESTS=1, see sized())")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With parallel workers (pytest-xdist, ``--dist loadscope``) the tests that share a stack
    run on one worker: a module's tests (module-scoped stacks), or a whole package's where it
    shares one (analysts, map). Each worker is its own process with its own temporary
    directories (so its own chDB directory) and picks free ports."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class StackScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            package = path.rpartition("/")[0]
            return package if package.rpartition("/")[2] in _SHARED_STACK_PACKAGES else path

    return StackScopes(config, log)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- chDB in the test process (one chDB directory per process: one session-wide store,
#    one database per test) ---------------------------------------------------------------
@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


_db_counter = itertools.count()


@pytest.fixture
def ch(chdb_dir: Path) -> Iterator[Any]:
    from sinks.clickhouse import connect

    db = f"t{os.getpid()}_{next(_db_counter)}"
    client = connect(url=None, chdb_path=chdb_dir, database=db)
    yield client
    client.command(f"DROP DATABASE IF EXISTS {db}")


# -- the whole stack ------------------------------------------------------------------------
class Stack:
    """`geotel up` in a subprocess, with helpers to upload, query and manage devices."""

    def __init__(self, root: Path, extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.kafka_port = free_port()
        self.web_port = free_port()
        self.env = {
            **os.environ,
            "GEOTEL_DATA_DIR": str(root / "var"),
            "GEOTEL_KAFKA__EMBEDDED_PORT": str(self.kafka_port),
            "GEOTEL_WEB_PORT": str(self.web_port),
            "GEOTEL_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "up.log"
        self.http = httpx.Client(base_url=self.base, timeout=30)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*GEOTEL, *args], env=self.env, cwd=self.root, text=True,
                              capture_output=True, check=False, timeout=120)
        if check and proc.returncode != 0:  # say why, not only the exit code
            raise AssertionError(f"geotel {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return proc

    def start(self, timeout_s: float = 60, command: str = "up") -> None:
        """``up`` runs broker + worker; ``worker`` joins a broker started by start_broker()."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([*GEOTEL, command], env=self.env, cwd=self.root,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"geotel up exited: {self.log_path.read_text()[-3000:]}")
            try:
                h = self.http.get("/health", timeout=2).json()
                if h["status"] == "ok" and h["components"]["consumer"]["assigned"]:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        tail = self.log_path.read_text()[-3000:]
        raise RuntimeError(f"stack not healthy in {timeout_s}s: {tail}")

    def start_broker(self) -> None:
        from streams.broker import EmbeddedBroker

        self.broker = EmbeddedBroker(self.kafka_port, log_path=self.root / "tansu.log")
        self.broker.start()

    def load_sample_world(self) -> int:
        sample = ROOT / "data" / "sample"
        self.cli("territories", "load", str(sample / "territories.geojson"))
        self.cli("accounts", "load", str(sample / "accounts.geojson"))
        version: list[int] = []

        def loaded() -> bool:
            # both sets in the index in use (the version after territories alone differs)
            geo = self.health()["components"].get("geo", {})
            v = geo.get("version")
            version[:] = [v] if v else []
            return bool(v) and {"territories", "accounts"} <= set(geo.get("sets", {}))

        wait_for(loaded, 60, "the worker uses the sample territory set")
        return version[0]

    def enriched_lag(self) -> int:
        """Messages of telemetry.enriched the sessions stage's group has not committed."""
        return enriched_lag(self.bootstrap)

    def wait_derived(self, timeout_s: float = 90) -> None:
        """Until the sessions stage has read, derived and committed every enriched message.
        Idle alone is not enough: between two batches the stage holds nothing underived
        while the last messages are still on the topic (a test once read a stale rep-day
        that way)."""
        def idle() -> bool:
            st = self.health()["components"]["sessions"]
            return st["dirty_reps"] == 0 and st["pending_messages"] == 0

        wait_for(lambda: self.enriched_lag() == 0 and idle(), timeout_s,
                 "the sessions stage read and derived everything", 0.5)

    def wait_alerts(self, timeout_s: float = 60) -> None:
        """Until the rules stage (group ``<group_id>-alerts``) has read, evaluated and
        committed every message of the field.* topics (call after wait_derived)."""
        from streams.settings import SEGMENTS, TRANSITIONS, WORKDAYS, Settings

        settings = Settings()
        topics = [settings.topic(t) for t in (WORKDAYS, SEGMENTS, TRANSITIONS)]
        group = f"{settings.kafka.group_id}-alerts"

        def done() -> bool:
            st = self.health()["components"]["alerts"]
            return (st["waiting_messages"] == 0
                    and group_lag(self.bootstrap, group, topics,
                                  settings.kafka.topic_partitions) == 0)

        wait_for(done, timeout_s, "the rules stage read and evaluated every field.* message",
                 0.5)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            code = self.proc.returncode if self.proc else 0
            self._stop_broker()
            return code
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()
        finally:
            if sig != signal.SIGKILL:
                self._stop_broker()

    def _stop_broker(self) -> None:
        broker = getattr(self, "broker", None)
        if broker is not None:
            broker.stop()
            self.broker = None

    def health(self) -> dict[str, Any]:
        return dict(self.http.get("/health").json())

    def add_device(self, rep_id: str, device_id: str) -> str:
        token = self.cli("devices", "add", "--rep", rep_id, "--device", device_id).stdout.strip()
        # Known when an empty upload is refused as empty (400), not as unauthorized (401).
        wait_for(lambda: self.post(token, []).status_code == 400, 30,
                 "device registration reaches ingest")
        return token

    def post(self, token: str, events: list[dict[str, Any]] | bytes, **kw: Any) -> httpx.Response:
        body = events if isinstance(events, bytes) else orjson.dumps({"events": events})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   **kw.pop("headers", {})}
        return self.http.post("/v1/events", content=body, headers=headers, **kw)

    def post_as_phone(self, token: str, events: list[dict[str, Any]] | bytes,
                      attempts: int = 10) -> httpx.Response:
        """Post as a phone does: 503 (the broker did not take the upload: nothing stored)
        and 429 are retried after Retry-After; the last answer is returned."""
        for _ in range(attempts - 1):
            r = self.post(token, events)
            if r.status_code not in (429, 503):
                return r
            time.sleep(min(float(r.headers.get("Retry-After", "1")), 5.0))
        return self.post(token, events)

    def produce_raw(self, events: list[dict[str, Any]]) -> None:
        """Put an upload on telemetry.raw as an ingest process that does not know the reps'
        watermarks (a separate ``geotel ingest``) publishes it: the events as sent, with
        their ``received_at``."""
        from kafka import KafkaProducer

        from streams.settings import Settings

        now = dt.datetime.now(dt.UTC).isoformat()
        body = orjson.dumps({"events": [{**e, "received_at": now} for e in events]})
        producer = KafkaProducer(bootstrap_servers=self.bootstrap)
        try:
            producer.send(Settings().topic("telemetry.raw"),
                          key=str(events[0]["device_id"]).encode(), value=body)
            producer.flush(10)
        finally:
            producer.close(5)

    def sql(self, query: str) -> list[dict[str, Any]]:
        r = self.http.post("/v1/sql", json={"sql": query, "format": "json"})
        assert r.status_code == 200, r.text
        return list(r.json()["data"])

    def scalar(self, query: str) -> Any:
        rows = self.sql(query)
        return next(iter(rows[0].values()))


def group_lag(bootstrap: str, group: str, topics: list[str], partitions: int) -> int:
    """Messages of ``topics`` (partitions 0 to ``partitions`` - 1) that ``group`` has not
    committed, against the true log ends."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.broker import log_end_offsets

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        ends = log_end_offsets(consumer, tps)
        return sum(max(0, end - (consumer.committed(tp) or 0)) for tp, end in ends.items())
    finally:
        consumer.close()


def enriched_lag(bootstrap: str, partitions: int | None = None) -> int:
    """Messages of telemetry.enriched the sessions stage's group (``geotel``) has not
    committed, against the true log ends (``streams.broker.log_end_offsets``)."""
    from kafka import KafkaConsumer, TopicPartition

    from streams.broker import log_end_offsets
    from streams.settings import Settings

    settings = Settings()
    topic, group = settings.topic("telemetry.enriched"), settings.kafka.group_id
    # Never subscribes: it only reads the group's committed offsets and the end offsets.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        parts = (range(partitions) if partitions is not None
                 else consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in parts]
        ends = log_end_offsets(consumer, tps)
        return sum(max(0, end - (consumer.committed(tp) or 0)) for tp, end in ends.items())
    finally:
        consumer.close()


def wait_for(cond: Any, timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception as exc:  # keep polling; report the last error
            last = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting until {what} ({last!r})")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("stack"))
    s.start()
    try:
        yield s
    finally:
        s.stop()


def ping(device_id: str, rep_id: str, ts: dt.datetime, lat: float = 52.52, lon: float = 13.40,
         **extra: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "device_id": device_id, "rep_id": rep_id,
            "kind": "ping", "ts": ts.isoformat(), "lat": lat, "lon": lon, "accuracy_m": 10.0,
            **extra}
