"""Enrichment glue: the index in use, swapped atomically, and the enriched-topic encoding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import orjson

from processors.intake import AnyEvent
from schemas.derived import Enrichment

_NO_GEO = Enrichment()
MAX_EVENTS_PER_MESSAGE = 500
MAX_MESSAGE_BYTES = 1024 * 1024


class Enricher(Protocol):
    def enrich(self, events: Sequence[AnyEvent]) -> list[Enrichment]:
        """One Enrichment per event, in order; vectorised over the whole batch."""
        ...


    def enrich_rows(self, rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """The six enrichment columns of ``events`` for event base rows (see
        ``streams.geosets.GeoEnricher.enrich_rows``)."""
        ...


class NullEnricher:
    """No territory set loaded: events pass with empty enrichment (geo_version 0)."""

    def enrich(self, events: Sequence[AnyEvent]) -> list[Enrichment]:
        return [_NO_GEO] * len(events)

    def enrich_rows(self, rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
        n = len(rows)
        return [[None] * n, [None] * n, [None] * n, [None] * n, [None] * n, [0] * n]


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


_GEO_KEYS = ("territory_id", "region", "in_assigned_territory", "account_id",
             "account_distance_m", "geo_version")
_NO_GEO_DICT = dict.fromkeys(_GEO_KEYS[:-1]) | {"geo_version": 0}


def encode_enriched_rows(
    rows: Sequence[Sequence[Any]], models: dict[int, Any], geo: Sequence[Sequence[Any]]
) -> Iterator[tuple[bytes, bytes]]:
    """``encode_enriched_batches`` from event base rows and enrichment columns (the worker's
    row path): the same messages (an ``EnrichedBatch`` per rep, events in input order, at
    most 500 events and about 1 MiB per message), built from the row values with orjson
    instead of a pydantic model per event. ``models`` holds the validated model of rows
    that are not pings or check-ins (visit submissions), by row position."""
    # Each event is serialised at once: its dicts die young, so the garbage collector never
    # has to scan tens of thousands of them (it did, and that doubled the cost).
    dumps, opt = orjson.dumps, orjson.OPT_UTC_Z
    by_rep: dict[str, list[bytes]] = {}
    for i, (r, t, reg, ina, acc, dist, ver) in enumerate(zip(rows, *geo, strict=True)):
        g = (_NO_GEO_DICT if not ver else
             {"territory_id": t, "region": reg, "in_assigned_territory": ina,
              "account_id": acc, "account_distance_m": dist, "geo_version": ver})
        kind = r[3]
        if kind == "ping":
            body = dumps({"event_id": r[0], "device_id": r[2], "rep_id": r[1], "ts": r[4],
                          "received_at": r[5], "kind": "ping", "lat": r[6], "lon": r[7],
                          "accuracy_m": r[8], "speed_mps": r[9], "heading_deg": r[10],
                          "altitude_m": r[11], "battery_pct": r[12], "provider": r[13],
                          "is_mock": r[14], "geo": g}, option=opt)
        elif kind == "check_in":
            body = dumps({"event_id": r[0], "device_id": r[2], "rep_id": r[1], "ts": r[4],
                          "received_at": r[5], "kind": "check_in", "action": r[15],
                          "position": None if r[6] is None else
                          {"lat": r[6], "lon": r[7], "accuracy_m": r[8]},
                          "account_id": r[16], "visit_id": r[17], "geo": g}, option=opt)
        else:
            body = models[i].model_dump_json().encode()
            body = body[:-1] + b',"geo":' + dumps(g) + b"}"
        by_rep.setdefault(r[1], []).append(body)
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
