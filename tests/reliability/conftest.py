"""Fixtures of the reliability suite.

``Stack`` (tests/conftest.py) runs the whole pipeline as one ``geotel up`` process. The
failure drills need to kill one part and keep the others, so ``SplitStack`` runs the parts
as separate processes on free ports: a Tansu broker started here (``EmbeddedBroker``), a
``geotel worker`` and, optionally, a ``geotel ingest`` process. Each can be killed and
started again on the same port.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson

from streams.broker import EmbeddedBroker, ensure_topics
from streams.devices import issue
from streams.runtime import journal, publish_devices
from streams.settings import Settings
from tests.conftest import GEOTEL, ROOT, free_port, wait_for

#: No per-device rate limit: the drills upload far more than a phone would.
NO_RATE_LIMIT = {"GEOTEL_INGEST__RATE_LIMIT_EVENTS_PER_S": "1000000000",
                 "GEOTEL_INGEST__RATE_LIMIT_BURST_EVENTS": "1000000000"}
#: A SIGKILLed member keeps its partitions until its session times out: keep that short.
FAST_GROUP = {"GEOTEL_KAFKA__SESSION_TIMEOUT_S": "6", "GEOTEL_KAFKA__HEARTBEAT_INTERVAL_S": "0.5"}


def pings(device_id: str, rep_id: str, n: int, start: dt.datetime,
          step_s: float = 1.0) -> list[dict[str, Any]]:
    """``n`` valid pings of one device, ``step_s`` apart, from ``start``."""
    return [{"event_id": str(uuid.uuid4()), "device_id": device_id, "rep_id": rep_id,
             "kind": "ping", "ts": (start + dt.timedelta(seconds=i * step_s)).isoformat(),
             "lat": 52.4 + (i % 100) * 0.001, "lon": 13.3 + (i % 77) * 0.001,
             "accuracy_m": 8.0} for i in range(n)]


def sql_in(ids: Iterable[str]) -> str:
    """A ClickHouse ``IN`` list of UUID strings (ids we generated ourselves)."""
    return ",".join(f"'{uuid.UUID(i)}'" for i in ids)


class Proc:
    """One geotel subcommand in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.args, self.env, self.cwd, self.log_path = args, env, cwd, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([*GEOTEL, *self.args], env=self.env, cwd=self.cwd,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL, timeout_s: float = 30) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""


class SplitStack:
    """Broker, worker and (optionally) a separate ingest process, each killable on its own.

    With ``separate_ingest`` the worker runs ``--no-ingest`` and uploads go to a
    ``geotel ingest`` process, so phones keep uploading while the worker is down.
    """

    def __init__(self, root: Path, *, separate_ingest: bool = False,
                 extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.kafka_port = free_port()
        self.worker_port = free_port()
        self.ingest_port = free_port() if separate_ingest else self.worker_port
        self.data_dir = root / "var"
        self.env = {**os.environ, "GEOTEL_DATA_DIR": str(self.data_dir),
                    "GEOTEL_KAFKA__EMBEDDED_PORT": str(self.kafka_port),
                    "GEOTEL_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT),
                    **FAST_GROUP, **(extra_env or {})}
        self.broker = EmbeddedBroker(self.kafka_port, log_path=root / "tansu.log")
        worker_args = ["worker", "--no-ingest"] if separate_ingest else ["worker"]
        self.worker = Proc(worker_args, {**self.env, "GEOTEL_WEB_PORT": str(self.worker_port)},
                           root, root / "worker.log")
        self.ingest = (Proc(["ingest"], {**self.env, "GEOTEL_WEB_PORT": str(self.ingest_port)},
                            root, root / "ingest.log") if separate_ingest else None)
        self.worker_http = httpx.Client(base_url=f"http://127.0.0.1:{self.worker_port}",
                                        timeout=30)
        self.ingest_http = httpx.Client(base_url=f"http://127.0.0.1:{self.ingest_port}",
                                        timeout=30)
        self.settings = Settings(_env_file=None, data_dir=self.data_dir,  # type: ignore[call-arg]
                                 kafka={"embedded_port": self.kafka_port})

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    # -- lifecycle --------------------------------------------------------------------------
    def start_broker(self) -> None:
        """Start Tansu, create the topics and re-publish the device journal (what `geotel up`
        does at start: the in-memory broker begins empty)."""
        self.broker.start()
        ensure_topics(self.settings)
        recs = journal(self.settings).read()
        if recs:
            publish_devices(self.settings, recs)

    def start_worker(self, timeout_s: float = 90) -> float:
        """Start the worker; return the seconds until it was healthy with partitions."""
        t0 = time.monotonic()
        self.worker.start()
        self._wait_healthy(self.worker, self.worker_http, timeout_s, need_partitions=True)
        return time.monotonic() - t0

    def start_ingest(self, timeout_s: float = 60) -> None:
        assert self.ingest is not None
        self.ingest.start()
        self._wait_healthy(self.ingest, self.ingest_http, timeout_s, need_partitions=False)

    def start(self) -> None:
        self.start_broker()
        self.start_worker()
        if self.ingest is not None:
            self.start_ingest()

    def stop(self) -> None:
        for p in (self.ingest, self.worker):
            if p is not None:
                p.kill(signal.SIGINT)
        self.broker.stop()
        self.worker_http.close()
        self.ingest_http.close()

    def _wait_healthy(self, proc: Proc, http: httpx.Client, timeout_s: float, *,
                      need_partitions: bool) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not proc.alive:
                raise RuntimeError(f"{proc.args} exited: {proc.log_tail()}")
            try:
                h = http.get("/health", timeout=2).json()
                if h["status"] == "ok" and (not need_partitions
                                            or h["components"]["consumer"]["assigned"]):
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{proc.args} not healthy in {timeout_s}s: {proc.log_tail()}")

    # -- helpers ----------------------------------------------------------------------------
    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GEOTEL, *args], env=self.env, cwd=self.root, text=True,
                              capture_output=True, check=True, timeout=120)

    def tokens_loaded(self) -> int:
        return int(self.ingest_http.get("/health", timeout=5).json()["components"]["devices"]
                   ["tokens"])

    def add_device(self, rep_id: str, device_id: str) -> str:
        before = self.tokens_loaded()
        token = self.cli("devices", "add", "--rep", rep_id, "--device", device_id).stdout.strip()
        wait_for(lambda: self.tokens_loaded() > before, 20, "the device reaches ingest")
        return token

    def add_devices(self, pairs: list[tuple[str, str]]) -> dict[str, str]:
        """Register many devices at once (as ``geotel devices add`` does, without a process
        per device): journal, then the devices topic. Returns device_id -> token."""
        before = self.tokens_loaded()
        now = dt.datetime.now(dt.UTC)
        issued = [issue(d, r, now) for d, r in pairs]
        recs = [rec for _, rec in issued]
        journal(self.settings).append(recs)
        publish_devices(self.settings, recs)
        wait_for(lambda: self.tokens_loaded() >= before + len(recs), 30,
                 "the devices reach ingest")
        return {rec.device_id: tok for tok, rec in issued}

    def post(self, token: str, events: list[dict[str, Any]], **kw: Any) -> httpx.Response:
        return self.ingest_http.post("/v1/events", content=orjson.dumps({"events": events}),
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"}, **kw)

    def sql(self, query: str) -> list[dict[str, Any]]:
        r = self.worker_http.post("/v1/sql", json={"sql": query, "format": "json"})
        assert r.status_code == 200, r.text
        return list(r.json()["data"])

    def scalar(self, query: str) -> Any:
        return next(iter(self.sql(query)[0].values()))

    def health(self) -> dict[str, Any]:
        return dict(self.worker_http.get("/health", timeout=5).json())
