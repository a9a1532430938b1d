"""Shared harness of the pipeline benchmarks: ports, the embedded broker, processes, polling,
workloads and the RESULT/results.json conventions (the same as ``bench/bench_geo.py``).

The harness only looks at the pipeline from outside: ``GET /health`` (``components.sink.rows``,
the rows the worker's ClickHouse writer stored), the read-only SQL endpoint and the Kafka
topics. It does not import agent internals, so it keeps working as agents are added.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import pickle
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "out"  # logs and data dirs (not committed)
CACHE = ROOT / "var" / "bench-cache"  # generated workloads, keyed by their parameters
#: Where a run merges its figures unless told otherwise: not committed (var/ is ignored), so
#: running the benchmarks leaves a checkout clean.
DEFAULT_RESULTS = ROOT / "var" / "bench" / "results.json"
#: The committed reference figures (docs/performance.md); only `bench/run.py
#: --update-reference` (or an explicit ``--results`` naming it) writes them.
REFERENCE_RESULTS = ROOT / "bench" / "results.json"
GEOTEL = [sys.executable, "-m", "streams.cli"]
SAMPLE_WORLD = ROOT / "data" / "sample"
SIM_START = dt.date(2026, 3, 2)  # a Monday; fixed so workloads are reproducible


# -- results ----------------------------------------------------------------------------------
@dataclass
class Figure:
    name: str
    values: list[float]
    unit: str
    baseline: float | None = None
    digits: int = 0
    load: list[float] = field(default_factory=list)  # 1-min load average at each run

    @property
    def value(self) -> float:
        return float(statistics.median(self.values))

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    def _fmt(self, v: float) -> str:
        return f"{v:.{self.digits}f}"

    def line(self) -> str:
        s = f"RESULT {self.name} {self._fmt(self.value)} {self.unit}"
        if self.baseline is not None:
            s += f" baseline={self._fmt(self.baseline)} ratio={self.ratio:.2f}"
        return s

    def record(self) -> dict[str, Any]:
        def rnd(v: float | None) -> float | int | None:
            if v is None:
                return None
            return round(v) if self.digits == 0 else round(v, self.digits)

        ratio = self.ratio
        return {"value": rnd(self.value), "unit": self.unit, "baseline": rnd(self.baseline),
                "ratio": None if ratio is None else round(ratio, 3),
                "runs": [rnd(v) for v in self.values], "median_of": len(self.values),
                # the machine is shared: the 1-minute load average when the runs ended
                "load_1m": [round(x, 1) for x in self.load] or None}


def merge_results(path: Path, figures: dict[str, dict[str, Any]]) -> None:
    """Read-modify-write of a results file: other benchmarks' entries stay."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(current, dict):
            current = {}
    except (FileNotFoundError, json.JSONDecodeError):
        current = {}
    current.update(figures)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results.", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(current, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def report(figures: Sequence[Figure], results: Path | None,
           loads: Sequence[float] = ()) -> None:
    """Print the RESULT lines and merge the figures into ``results`` (when given)."""
    for f in figures:
        if not f.load:
            f.load = list(loads)
        print(f.line(), flush=True)
    if results is not None and figures:
        merge_results(results, {f.name: f.record() for f in figures})
        print(f"merged {len(figures)} figures into {results.name}", flush=True)


def load_1m() -> float:
    """The 1-minute load average (other work on the machine skews every figure)."""
    return os.getloadavg()[0]


def info(msg: str) -> None:
    print(f"info: {msg}", flush=True)


# -- processes and ports ----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_dir(name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=OUT))


#: Device records are signed (streams/devices.py); the benchmark's own publisher and the
#: services it starts (each with a data dir of its own) share this key.
BENCH_DEVICE_KEY = secrets.token_hex(32)


def settings_for(data_dir: Path, kafka_port: int, web_port: int = 6066, **extra: Any) -> Any:
    from pydantic import SecretStr

    from streams.settings import IngestSettings, KafkaSettings, Settings

    extra.setdefault("ingest", IngestSettings(device_key=SecretStr(BENCH_DEVICE_KEY)))
    return Settings(data_dir=data_dir, web_port=web_port,
                    kafka=KafkaSettings(embedded_port=kafka_port), **extra)


def geotel_env(data_dir: Path, kafka_port: int, web_port: int,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "GEOTEL_DATA_DIR": str(data_dir),
            "GEOTEL_INGEST__DEVICE_KEY": BENCH_DEVICE_KEY,
            "GEOTEL_KAFKA__EMBEDDED_PORT": str(kafka_port), "GEOTEL_WEB_PORT": str(web_port),
            "GEOTEL_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT), **(extra or {})}


@contextlib.contextmanager
def embedded_broker(root: Path) -> Iterator[int]:
    """A fresh in-memory Tansu broker per measured run: no lingering group members."""
    with broker_process(root) as broker:
        yield broker.port


@contextlib.contextmanager
def broker_process(root: Path) -> Iterator[Any]:
    """``embedded_broker``, yielding the broker itself (its ``port`` and ``proc.pid``)."""
    from streams.broker import EmbeddedBroker

    broker = EmbeddedBroker(free_port(), log_path=root / "tansu.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# -- CPU time from /proc ------------------------------------------------------------------------
def _stat(pid: int) -> list[str]:
    # Fields after the command name: state ppid pgrp session ... utime(11) stime(12)
    # cutime(13) cstime(14).
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    f = _stat(pid)
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def session_cpu_s(sid: int) -> dict[str, float]:
    """CPU seconds of every live process of session ``sid`` (a ``Proc`` and whatever it
    started), by ``pid command``; children that already exited and were waited for are
    counted in their parent's ``cutime``/``cstime``."""
    tck = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = _stat(int(d.name))
            if int(f[3]) != sid:
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        used = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        out[f"{d.name} {_short_cmd(cmd)}"] = used / tck
    return out


def _short_cmd(cmd: str) -> str:
    words = cmd.split()
    if "streams.cli" in words:
        return " ".join(words[words.index("streams.cli") + 1:]) or "geotel"
    return Path(words[0]).name if words else "?"


class Proc:
    """A subprocess in its own session (so stopping it stops its children), logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path,
                 cwd: Path = ROOT) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 20) -> int:
        if self.proc.poll() is not None:
            return self.proc.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def start_worker(root: Path, kafka_port: int, *, ingest: bool = False, name: str = "worker",
                 extra_env: dict[str, str] | None = None, web_port: int | None = None
                 ) -> tuple[Proc, str]:
    """`geotel worker` (its own data dir, so its own chDB) -> (process, base URL)."""
    port = web_port or free_port()
    data = root / name
    data.mkdir(parents=True, exist_ok=True)
    args = [*GEOTEL, "worker"] + ([] if ingest else ["--no-ingest"])
    proc = Proc(args, geotel_env(data, kafka_port, port, extra_env), root / f"{name}.log")
    return proc, f"http://127.0.0.1:{port}"


class ProcessExited(RuntimeError):
    """A process the benchmark needs has exited: no point in polling on."""


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str,
             proc: Proc | None = None, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise ProcessExited(f"{what}: process exited\n{proc.tail()}")
        try:
            if cond():
                return
        except ProcessExited:
            raise
        except Exception as exc:  # not up yet: keep polling, report the last error
            last = exc
        time.sleep(interval_s)
    tail = proc.tail() if proc is not None else ""
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what} ({last!r})\n{tail}")


def health(http: httpx.Client, base: str) -> dict[str, Any]:
    return dict(http.get(base + "/health", timeout=5).json())


def sink_rows(http: httpx.Client, base: str) -> int:
    return int(health(http, base)["components"]["sink"]["rows"])


def sql_scalar(http: httpx.Client, base: str, query: str) -> Any:
    r = http.post(base + "/v1/sql", json={"sql": query, "format": "json"}, timeout=60)
    r.raise_for_status()
    row = r.json()["data"][0]
    return next(iter(row.values()))


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


# -- broker-side setup ------------------------------------------------------------------------
def prepare_topics_and_geo(settings: Any) -> None:
    """Create the pipeline topics and publish the sample territories and accounts the way
    `geotel territories load` / `geotel accounts load` do."""
    from streams.broker import ensure_topics
    from streams.geosets import encode_set, prepare
    from streams.runtime import publish_geoset

    ensure_topics(settings)
    version = int(time.time())
    for kind in ("territories", "accounts"):
        path = SAMPLE_WORLD / f"{kind}.geojson"
        geojson, _ = prepare(kind, path)
        publish_geoset(settings, kind, encode_set(kind, geojson, version, path.name))


def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> float:
    """Write ``(key, value)`` messages to ``topic``; return the seconds it took."""
    from aiokafka import AIOKafkaProducer

    async def go() -> float:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20,
                             max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
        await p.start()
        t0 = time.perf_counter()
        try:
            pending = []
            for key, value in messages:
                pending.append(await p.send(topic, value=value, key=key))
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await p.stop()
        return time.perf_counter() - t0

    return asyncio.run(go())


# -- workloads --------------------------------------------------------------------------------
@dataclass
class Workload:
    """Raw messages as the ingest endpoint writes them: key device_id, value
    ``{"events": [... each with received_at]}``, one message per simulated upload."""

    messages: list[tuple[bytes, bytes]]
    events: int
    distinct_valid: int  # distinct event ids that intake accepts (the rows `events` shows)
    rejects: int
    reps: int
    devices: list[tuple[str, str]] = field(default_factory=list)

    def single_event_messages(self) -> list[tuple[bytes, bytes]]:
        """The same events, one per message (the naive baseline's input)."""
        import orjson

        out = []
        for key, value in self.messages:
            for ev in orjson.loads(value)["events"]:
                out.append((key, orjson.dumps(ev)))
        return out


#: Bump when the simulator or the message format changes, so cached workloads are remade.
WORKLOAD_VERSION = 1


def simulated_workload(n_events: int, *, seed: int = 7, reps: int = 250) -> Workload:
    """At least ``n_events`` events of simulated field days (realistic noise: GPS error, gaps,
    offline backlogs, resent uploads), cut at an upload boundary. Cached under var/ keyed
    by its parameters (generating 1,000,000 events takes minutes; loading them, seconds)."""
    import orjson

    cache = CACHE / (f"workload-v{WORKLOAD_VERSION}-{n_events}-{seed}-{reps}-"
                     f"{SIM_START.isoformat()}-realistic.pkl")
    if cache.exists():
        with cache.open("rb") as fh:
            wl: Workload = pickle.load(fh)
        return wl
    from processors.intake import TimeLimits, parse_message
    from simulator.noise import NoiseProfile
    from simulator.run import simulate

    per_rep_day = 380  # about what the sample world gives; more days are added if short
    days = max(1, -(-n_events // (reps * per_rep_day)))
    while True:
        sim = simulate(SAMPLE_WORLD, reps, days, SIM_START, seed, NoiseProfile.realistic())
        if sim.event_count >= n_events:
            break
        days += 1
    messages: list[tuple[bytes, bytes]] = []
    total = 0
    valid: set[str] = set()
    rejects = 0
    limits = TimeLimits()
    for up in sim.uploads:
        stamp = up.send_at.isoformat()
        value = orjson.dumps({"events": [{**e, "received_at": stamp} for e in up.events]})
        messages.append((up.device_id.encode(), value))
        res = parse_message(value, up.send_at, limits)
        valid.update(str(e.event_id) for e in res.events)
        rejects += len(res.rejects)
        total += len(up.events)
        if total >= n_events:
            break
    wl = Workload(messages, total, len(valid), rejects, reps, sim.devices)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("wb") as fh:
        pickle.dump(wl, fh)
    return wl


def pctl(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)
