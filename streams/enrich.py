"""Enrichment glue: the index in use, swapped atomically, and the enriched-topic encoding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from processors.intake import AnyEvent
from schemas.columns import EventColumns
from schemas.derived import Enrichment

_NO_GEO = Enrichment()
MAX_EVENTS_PER_MESSAGE = 500
MAX_MESSAGE_BYTES = 1024 * 1024


class Enricher(Protocol):
    def enrich(self, events: Sequence[AnyEvent]) -> list[Enrichment]:
        """One Enrichment per event, in order; vectorised over the whole batch."""
        ...


    def enrich_columns(self, batch: EventColumns) -> EventColumns:
        """``batch`` with its enrichment columns set (see
        ``streams.geosets.GeoEnricher.enrich_columns``)."""
        ...


class NullEnricher:
    """No territory set loaded: events pass with empty enrichment (geo_version 0)."""

    def enrich(self, events: Sequence[AnyEvent]) -> list[Enrichment]:
        return [_NO_GEO] * len(events)

    def enrich_columns(self, batch: EventColumns) -> EventColumns:
        return batch  # decoded batches come without enrichment (geo_version 0)


def encode_enriched_batches(
    events: Sequence[AnyEvent], geo: Sequence[Enrichment]
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) messages for ``telemetry.enriched``: one per rep, events in input order.

    Each event is its own JSON (as validated, times in UTC) plus a ``geo`` object; built by
    splicing pydantic's Rust serialiser output, which is several times faster than building
    dicts per event.
    """
    by_rep: dict[str, list[bytes]] = {}
    for ev, g in zip(events, geo, strict=True):
        body = ev.model_dump_json().encode()
        by_rep.setdefault(ev.rep_id, []).append(
            body[:-1] + b',"geo":' + g.model_dump_json().encode() + b"}"
        )
    for rep, items in by_rep.items():
        head = b'{"rep_id":' + orjson.dumps(rep) + b',"events":['
        # A batch can hold many uploads of one rep (a backlog): keep each message well under
        # the broker's message limit.
        chunk: list[bytes] = []
        size = 0
        for item in items:
            if chunk and (len(chunk) >= MAX_EVENTS_PER_MESSAGE
                          or size + len(item) > MAX_MESSAGE_BYTES):
                yield rep.encode(), head + b",".join(chunk) + b"]}"
                chunk, size = [], 0
            chunk.append(item)
            size += len(item) + 1
        yield rep.encode(), head + b",".join(chunk) + b"]}"


_NO_GEO_DICT = {"territory_id": None, "region": None, "in_assigned_territory": None,
                "account_id": None, "account_distance_m": None, "geo_version": 0}


def encode_enriched_columns(batch: EventColumns) -> Iterator[tuple[bytes, bytes]]:
    """``encode_enriched_batches`` from the columnar batch (the worker's path): the same
    messages (an ``EnrichedBatch`` per rep, events in input order, at most 500 events and
    about 1 MiB per message), built with orjson from the column values instead of a
    pydantic model per event. Visit submissions carry their validated JSON
    (``submission_json``)."""
    # Each event is serialised at once: its dicts die young, so the garbage collector never
    # has to scan tens of thousands of them (it did, and that doubled the cost).
    dumps, opt = orjson.dumps, orjson.OPT_UTC_Z
    t = batch.table
    # Times as UTC ISO text made by Arrow: Python datetimes out of Arrow cost more than the
    # rest of the columns together.
    times = {name: pc.replace_substring(t.column(name).cast(pa.string()), " ", "T",
                                        max_replacements=1).to_pylist()
             for name in ("ts", "received_at")}
    col = {name: times[name] if name in times else t.column(name).to_pylist() for name in (
        "event_id", "rep_id", "device_id", "kind", "ts", "received_at", "lat", "lon",
        "accuracy_m", "speed_mps", "heading_deg", "altitude_m", "battery_pct", "provider",
        "is_mock", "action", "account_id", "visit_id", "submission_json", "territory_id",
        "region", "in_assigned_territory", "geo_account_id", "geo_account_distance_m",
        "geo_version")}
    by_rep: dict[str, list[bytes]] = {}
    for (eid, rep, dev, kind, ts, rcv, lat, lon, acc, speed, heading, alt, batt, provider,
         mock, action, account, visit, sub, terr, reg, ina, gacc, dist, ver) in zip(
            *col.values(), strict=True):
        g = (_NO_GEO_DICT if not ver else
             {"territory_id": terr, "region": reg, "in_assigned_territory": ina,
              "account_id": gacc, "account_distance_m": dist, "geo_version": ver})
        if kind == "ping":
            body = dumps({"event_id": eid, "device_id": dev, "rep_id": rep, "ts": ts,
                          "received_at": rcv, "kind": "ping", "lat": lat, "lon": lon,
                          "accuracy_m": acc, "speed_mps": speed, "heading_deg": heading,
                          "altitude_m": alt, "battery_pct": batt, "provider": provider,
                          "is_mock": mock, "geo": g}, option=opt)
        elif kind == "check_in":
            body = dumps({"event_id": eid, "device_id": dev, "rep_id": rep, "ts": ts,
                          "received_at": rcv, "kind": "check_in", "action": action,
                          "position": None if lat is None else
                          {"lat": lat, "lon": lon, "accuracy_m": acc},
                          "account_id": account, "visit_id": visit, "geo": g}, option=opt)
        else:
            body = sub.encode()[:-1] + b',"geo":' + dumps(g) + b"}"
        by_rep.setdefault(rep, []).append(body)
    for rep, items in by_rep.items():
        key = rep.encode()
        head = b'{"rep_id":' + dumps(rep) + b',"events":['
        chunk: list[bytes] = []
        size = 0
        for item in items:
            if chunk and (len(chunk) >= MAX_EVENTS_PER_MESSAGE
                          or size + len(item) > MAX_MESSAGE_BYTES):
                yield key, head + b",".join(chunk) + b"]}"
                chunk, size = [], 0
            chunk.append(item)
            size += len(item) + 1
        yield key, head + b",".join(chunk) + b"]}"
