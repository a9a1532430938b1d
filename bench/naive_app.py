"""Baseline (a) of the end-to-end benchmark: the obvious Faust implementation.

One event per Kafka message and one event per agent iteration: pydantic validation (the
project's own event models, so both sides apply the same rules), a shapely territory lookup per
point (STRtree query with the ``within`` predicate), and rows written to chDB in batches of
1,000 from the agent. Faust acks each message as the agent takes the next one (its default),
so this baseline does less than geotel's worker: no enrichment with accounts, no output topic,
no dead-letter topic, no idempotency tokens, and offsets may be committed before rows are
stored. It is the speed a first implementation would have, not a correct pipeline.

    python bench/naive_app.py --bootstrap 127.0.0.1:9092 --topic naive.raw \
        --web-port 6070 --data-dir /tmp/naive --territories data/sample/territories.geojson

``GET /health`` answers ``{"components": {"sink": {"rows": N, "dropped": M}}}`` like the
geotel worker (rows written; invalid events dropped).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import faust
import shapely
from faust.web import Request, Response, View
from pydantic import ValidationError
from shapely.geometry import Point, shape

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.events import EVENT_ADAPTER, CheckIn, Ping

BATCH_ROWS = 1000
COLUMNS = ["event_id", "rep_id", "device_id", "kind", "ts", "received_at", "lat", "lon",
           "accuracy_m", "territory_id"]
DDL = """CREATE TABLE IF NOT EXISTS naive_events (
  event_id UUID, rep_id String, device_id String, kind String,
  ts DateTime64(3, 'UTC'), received_at Nullable(DateTime64(3, 'UTC')),
  lat Nullable(Float64), lon Nullable(Float64), accuracy_m Nullable(Float32),
  territory_id Nullable(String)
) ENGINE = MergeTree ORDER BY (rep_id, ts)"""


class Territories:
    """Per-point lookup: STRtree candidates, then the exact within test."""

    def __init__(self, path: Path) -> None:
        doc = json.loads(path.read_text(encoding="utf-8"))
        self.ids = [f["properties"]["territory_id"] for f in doc["features"]]
        self.polys = [shape(f["geometry"]) for f in doc["features"]]
        for p in self.polys:
            shapely.prepare(p)
        self.tree = shapely.STRtree(self.polys)

    def lookup(self, lon: float, lat: float) -> str | None:
        hits = self.tree.query(Point(lon, lat), predicate="within")
        return self.ids[int(hits[0])] if len(hits) else None


def build_app(args: argparse.Namespace) -> faust.App:
    import clickhouse_connect

    app = faust.App(
        "naive-bench",
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        autodiscover=False,
        datadir=str(args.data_dir / "faust"),
        topic_partitions=args.partitions,
        # Tansu completes a join only after the rebalance timeout: keep it short.
        broker_rebalance_timeout=4.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        web_port=args.web_port,
    )
    client = clickhouse_connect.get_client(dsn=f"chdb:///{args.data_dir / 'chdb'}")
    client.command(DDL)
    territories = Territories(args.territories)
    raw = app.topic(args.topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                    value_serializer="raw")
    buf: list[list[Any]] = []
    stats = {"rows": 0, "dropped": 0}

    def flush() -> None:
        if buf:
            client.insert("naive_events", buf, column_names=COLUMNS,
                          settings={"async_insert": 0})
            stats["rows"] += len(buf)
            buf.clear()

    @app.agent(raw)
    async def intake(stream: faust.StreamT) -> None:
        async for value in stream:
            try:
                ev = EVENT_ADAPTER.validate_json(value)
            except ValidationError:
                stats["dropped"] += 1
                continue
            lat = lon = acc = None
            if isinstance(ev, Ping):
                lat, lon, acc = ev.lat, ev.lon, ev.accuracy_m
            elif isinstance(ev, CheckIn) and ev.position is not None:
                lat, lon, acc = ev.position.lat, ev.position.lon, ev.position.accuracy_m
            territory = territories.lookup(lon, lat) if lon is not None else None
            buf.append([ev.event_id, ev.rep_id, ev.device_id, ev.kind, ev.ts, ev.received_at,
                        lat, lon, acc, territory])
            if len(buf) >= BATCH_ROWS:
                flush()

    @app.timer(0.5)
    async def flush_tail() -> None:  # the last partial batch
        flush()

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "components": {"sink": dict(stats)}})

    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--web-port", type=int, required=True)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--territories", type=Path, required=True)
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(args)
    sys.argv = sys.argv[:1]  # faust.Worker reads the command line
    worker = faust.Worker(app, loglevel="warning", quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
