"""A downstream consumer of ``field.workdays``: the current figures of every rep-day.

Each record is a whole rep-day summary (``schemas``: ``processors.records.RepDay``), keyed
by ``rep_id``, re-sent whenever the rep-day changes, with ``version`` = the number of events
in the rep-day's set. Delivery is at-least-once and a rebuilt worker may re-send an older
derivation, so a consumer keeps, per (rep_id, local_date), the record with the highest
version and ignores the rest. Prints one line per accepted update::

    UPDATE rep-0001 2026-11-02 v=412 start=07:41 end=16:05 field_h=6.12 travel_h=1.40 ...
    STALE  rep-0001 2026-11-02 v=398 (have v=412)

and at the end one ``FINAL`` line per rep-day with the figures it holds. Run::

    python examples/consumer.py --bootstrap 127.0.0.1:29092 --max-seconds 30

Offsets: this example keeps its state in memory, so by default it does not commit offsets
and reads the topic from the start each time (``auto_offset_reset=earliest`` for a new
group). A real consumer stores its state (e.g. an upsert keyed by rep-day that keeps the
higher version, which makes the write idempotent) and commits offsets after that write;
``--commit`` shows where.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any
from zoneinfo import ZoneInfo

from kafka import KafkaConsumer


def local_hm(value: str | None, tz: str) -> str:
    if not value:
        return "-"
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t.astimezone(ZoneInfo(tz)).strftime("%H:%M")


def describe(r: dict[str, Any]) -> str:
    return (f"{r['rep_id']} {r['local_date']} v={r['version']} "
            f"start={local_hm(r.get('workday_start'), r['tz'])} "
            f"end={local_hm(r.get('workday_end'), r['tz'])} "
            f"field_h={r['field_s'] / 3600:.2f} travel_h={r['travel_s'] / 3600:.2f} "
            f"customers_h={r['customer_s'] / 3600:.2f} km={r['distance_m'] / 1000:.1f} "
            f"visits={r['visits']} verified={r['verified_visits']} "
            f"outside_min={r['out_territory_s'] / 60:.0f}")


class LatestWorkdays:
    """Highest version per (rep_id, local_date)."""

    def __init__(self) -> None:
        self.days: dict[tuple[str, str], dict[str, Any]] = {}

    def offer(self, record: dict[str, Any]) -> tuple[bool, int | None]:
        """Keep ``record`` if it is newer; return (kept, version held before)."""
        key = (record["rep_id"], record["local_date"])
        held = self.days.get(key)
        if held is not None and held["version"] >= record["version"]:
            return False, int(held["version"])
        self.days[key] = record
        return True, None if held is None else int(held["version"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Follow field.workdays, highest version wins.")
    ap.add_argument("--bootstrap", default="127.0.0.1:29092", help="Kafka host:port list")
    ap.add_argument("--topic", default="field.workdays",
                    help="topic name (with the deployment's prefix, if any)")
    ap.add_argument("--group-id", default="geotel-example-workdays")
    ap.add_argument("--max-seconds", type=float, default=0,
                    help="stop after this long (0: run until Ctrl-C)")
    ap.add_argument("--rebalance-ms", type=int, default=5000,
                    help="max poll interval, which is also the group's rebalance timeout; "
                    "the embedded broker waits this long before a join completes")
    ap.add_argument("--commit", action="store_true",
                    help="commit offsets after each batch (only with durable state)")
    ap.add_argument("--json", action="store_true", help="print FINAL records as JSON")
    args = ap.parse_args(argv)

    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap.split(","),
        group_id=args.group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_interval_ms=args.rebalance_ms,
        session_timeout_ms=max(6000, args.rebalance_ms + 1000),
        heartbeat_interval_ms=1000,
    )
    state = LatestWorkdays()
    deadline = time.monotonic() + args.max_seconds if args.max_seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500, max_records=500)
            for records in batch.values():
                for msg in records:
                    rec = json.loads(msg.value)
                    kept, before = state.offer(rec)
                    if kept:
                        print("UPDATE", describe(rec), flush=True)
                    else:
                        print(f"STALE  {rec['rep_id']} {rec['local_date']} v={rec['version']}"
                              f" (have v={before})", flush=True)
            if batch and args.commit:
                consumer.commit()  # after the state is stored, never before
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    for key in sorted(state.days):
        rec = state.days[key]
        print("FINAL", json.dumps(rec, sort_keys=True) if args.json else describe(rec),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
