"""Starting things: ClickHouse with migrations, the Faust worker, the embedded stack."""

from __future__ import annotations

import logging
from typing import Any

import faust
from clickhouse_connect.driver.client import Client

from schemas.errors import GeotelError
from streams import journal as upload_journal
from streams.app import Pipeline
from streams.broker import embedded_broker, ensure_topics
from streams.publish import journal, publish_devices, publish_geoset
from streams.settings import Profile, Settings
from streams.storage import analyst_sql, open_clickhouse, prepare_data_dir
from streams.web import register_web
from streams.webserver import raise_fd_limit

log = logging.getLogger(__name__)


def replay_geosets(settings: Settings) -> list[str]:
    from streams.geosets import SETS, journal_path

    done = []
    for kind in SETS:
        path = journal_path(settings.data_dir, kind)
        if path.exists():
            publish_geoset(settings, kind, path.read_bytes())
            done.append(kind)
    return done


def build_pipeline(settings: Settings, clickhouse: Client | None, **kw: Any) -> Pipeline:
    ingest = kw.pop("ingest", True)
    pipeline = Pipeline(settings, clickhouse, **kw)
    register_web(pipeline, ingest=ingest)
    return pipeline


def run_faust(app: faust.App, settings: Settings) -> int:
    from streams.logs import worker_logging_config

    raise_fd_limit()
    # Faust sets up logging itself (its own text format) unless it is given a config.
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True,
                          logging_config=worker_logging_config(settings))
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def check_exposure(settings: Settings) -> None:
    """Refuse to serve SQL and map data to the network without their tokens."""
    problem = settings.exposure_problem()
    if problem:
        raise GeotelError(problem)


def run_worker(settings: Settings, *, ingest: bool = True) -> int:
    """One worker process against the configured broker and ClickHouse."""
    check_exposure(settings)
    prepare_data_dir(settings)
    ensure_topics(settings)
    client = open_clickhouse(settings)
    reader = open_clickhouse(settings, run_migrations=False, reader=True)
    analyst = None if _is_store(settings) else analyst_sql(settings)
    try:
        pipeline = build_pipeline(settings, client, reader=reader, ingest=ingest,
                                  analyst=analyst)
        return run_faust(pipeline.app, settings)
    finally:
        if analyst is not None:
            analyst.close()
        reader.close()
        client.close()


def _is_store(settings: Settings) -> bool:
    return bool(settings.clickhouse.url and settings.clickhouse.url.startswith("store://"))


def run_ingest(settings: Settings) -> int:
    """An ingest-only process: stateless HTTP endpoint, no agents, no ClickHouse. Run any
    number behind a load balancer; they share the device registry through its topic."""
    prepare_data_dir(settings)
    ensure_topics(settings)
    pipeline = build_pipeline(settings, None, run_agents=False, ingest=True)
    return run_faust(pipeline.app, settings)


def _stop_if_broker_dies(broker: Any) -> None:
    """The embedded broker keeps topics in memory: if it dies, a worker that carried on
    would fetch from positions the new broker does not have and skip accepted uploads. So
    the whole process exits at once (status 3; a graceful stop would wait minutes on the
    dead broker) and is started again, journals replayed. Nothing is lost: offsets were
    committed only behind stored data, and chDB survives a crash like ClickHouse does."""
    import os
    import threading

    def watch() -> None:
        proc = broker.proc
        code = proc.wait()
        if not getattr(broker, "stopping", False):
            log.critical("the embedded broker exited (%s); geotel up exits", code)
            logging.shutdown()
            os._exit(3)

    threading.Thread(target=watch, name="broker-watch", daemon=True).start()


def run_up(settings: Settings) -> int:
    """The whole pipeline on one machine: embedded broker, topics, devices, worker, chDB."""
    check_exposure(settings)
    if settings.profile is not Profile.embedded:
        log.info("external profile: not starting a broker")
        return run_worker(settings)
    prepare_data_dir(settings)
    with embedded_broker(settings) as broker:
        log.info("embedded broker on %s", broker.bootstrap)
        _stop_if_broker_dies(broker)
        ensure_topics(settings)
        recs = journal(settings).read()
        if recs:
            publish_devices(settings, recs)
            log.info("replayed %d device records from the journal", len(recs))
        replayed = replay_geosets(settings)
        if replayed:
            log.info("re-published the latest %s", " and ".join(replayed))
        if upload_journal.enabled(settings):
            uploads = upload_journal.replay(settings)
            if uploads.uploads:
                log.warning("replayed %d journaled uploads (%d segments) into the new broker: "
                            "those already stored are folded by their event ids",
                            uploads.uploads, uploads.segments)
        return run_worker(settings)
