"""Opening the store: ClickHouse clients (writer, internal reader, analyst sessions) and the
data directory. Used by every process kind; imports no web or worker code."""

from __future__ import annotations

import logging

from clickhouse_connect.driver.client import Client

from schemas.errors import GeotelError
from sinks.clickhouse import connect
from sinks.migrations import migrate
from sinks.readonly import session_statements
from streams.query import AnalystSql, limits_from
from streams.settings import Settings

log = logging.getLogger(__name__)


def open_clickhouse(settings: Settings, *, run_migrations: bool = True,
                    reader: bool = False) -> Client:
    c = settings.clickhouse
    q = settings.query
    user, password = c.user, c.password.get_secret_value()
    if reader and q.clickhouse_user:
        user = q.clickhouse_user
        password = q.clickhouse_password.get_secret_value() if q.clickhouse_password else ""
    client = connect(
        url=c.url, chdb_path=settings.chdb_path if c.url is None else None,
        database=c.database, user=user, password=password, verify=c.verify_tls,
    )
    if run_migrations:
        applied = migrate(client)
        if applied:
            log.info("ClickHouse migrations applied: %s", applied)
    return client


def prepare_data_dir(settings: Settings) -> None:
    """Create ``data_dir`` for this user only (0700; files 0600 through the umask the CLI
    sets), or raise one clear error naming the setting."""
    import os
    import stat
    import tempfile

    d = settings.data_dir
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if d.stat().st_uid == os.getuid() and stat.S_IMODE(d.stat().st_mode) != 0o700:
            d.chmod(0o700)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".probe-"):
            pass
    except OSError as exc:
        raise GeotelError(f"data dir {d} is not usable ({exc.strerror or exc}); set "
                          "GEOTEL_DATA_DIR to a directory this user can write") from exc


def open_analyst_session(settings: Settings) -> Client:
    """A connection of its own for analyst queries: the endpoint's limits, then
    ``readonly=1`` so nothing in a query can change them (streams/query.py)."""
    client = open_clickhouse(settings, run_migrations=False, reader=True)
    try:
        for stmt in session_statements(limits_from(settings.query)):
            client.command(stmt)
    except Exception:
        client.close()
        raise
    return client


def analyst_sql(settings: Settings, max_concurrent: int | None = None) -> AnalystSql:
    """The analyst query engine of this process's store."""
    if settings.clickhouse.url and settings.clickhouse.url.startswith("store://"):
        raise GeotelError("analyst queries run in `geotel store`, which owns the store")
    return AnalystSql(lambda: open_analyst_session(settings),
                      database=settings.clickhouse.database,
                      max_concurrent=max_concurrent or settings.query.max_concurrent)
