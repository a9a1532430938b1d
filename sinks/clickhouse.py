"""ClickHouse clients: chDB in-process (embedded profile) or a server over HTTP(S)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from sinks.exceptions import SinkError


def connect(
    *,
    url: str | None,
    chdb_path: Path | None,
    database: str,
    user: str = "default",
    password: str = "",
    verify: bool = True,
    **kwargs: Any,
) -> Client:
    """Open a client and make sure ``database`` exists.

    With ``url`` unset, chDB is opened under ``chdb_path`` (one process per directory: the
    engine locks it).
    """
    try:
        if url is None:
            if chdb_path is None:
                raise SinkError("either a ClickHouse url or a chDB path is needed")
            chdb_path.mkdir(parents=True, exist_ok=True)
            dsn = f"chdb://{chdb_path}"
            bootstrap = clickhouse_connect.get_client(dsn=dsn)
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
            return clickhouse_connect.get_client(dsn=dsn, database=database)
        parsed = urlparse(url)
        if parsed.scheme == "store":
            # `geotel store` serves the embedded chDB to several workers on one machine; it
            # owns the database and ran the migrations. Wait a little for it to come up.
            import time

            from sinks.store_client import StoreClient

            store = StoreClient(f"http://{parsed.hostname or '127.0.0.1'}:{parsed.port or 6067}",
                                database=database)
            deadline = time.monotonic() + 30
            while not store.ping():
                if time.monotonic() > deadline:
                    raise SinkError(f"no geotel store answers at {url} (start `geotel store`)")
                time.sleep(0.3)
            return store  # type: ignore[return-value]
        if parsed.scheme not in ("http", "https"):
            raise SinkError(f"ClickHouse url must be http(s)://host:port, got {url!r}")
        common = dict(host=parsed.hostname, port=parsed.port or (8443 if parsed.scheme == "https"
                      else 8123), username=user, password=password,
                      secure=parsed.scheme == "https", verify=verify, **kwargs)
        bootstrap = clickhouse_connect.get_client(**common)
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        return clickhouse_connect.get_client(database=database, **common)
    except SinkError:
        raise
    except Exception as exc:  # the driver raises many types; say where we tried to go
        where = url or f"chdb:{chdb_path}"
        raise SinkError(f"cannot open ClickHouse at {where}: {exc}") from exc
