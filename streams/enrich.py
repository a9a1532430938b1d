"""Enrichment glue: the index in use, swapped atomically, and the enriched-topic encoding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import orjson

from processors.intake import AnyEvent
from schemas.derived import Enrichment

_NO_GEO = Enrichment()


class Enricher(Protocol):
    def enrich(self, events: Sequence[AnyEvent]) -> list[Enrichment]:
        """One Enrichment per event, in order; vectorised over the whole batch."""
        ...


class NullEnricher:
    """No territory set loaded: events pass with empty enrichment (geo_version 0)."""

    def enrich(self, events: Sequence[AnyEvent]) -> list[Enrichment]:
        return [_NO_GEO] * len(events)


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
        yield rep.encode(), b'{"rep_id":' + orjson.dumps(rep) + b',"events":[' + b",".join(
            items) + b"]}"
