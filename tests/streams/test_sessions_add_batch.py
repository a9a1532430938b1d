"""The sessions stage's intake of ``telemetry.enriched`` messages: a malformed message becomes
a dead letter while the valid ones of the same poll are kept, and a rep first seen is rebuilt
from the store unless the topic will deliver all of its stored events. Real chDB, no broker.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from schemas.derived import Enrichment
from sinks.migrations import migrate
from streams.metrics import Metrics
from streams.sessions import SessionStage
from streams.settings import Settings
from tests.privacy.privacy_data import insert_events
from tests.privacy.privacy_data import pings as day_pings

pytestmark = pytest.mark.integration
ENRICHED = "telemetry.enriched"


class _Topic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []

    async def send(self, key: bytes | None, value: bytes) -> Any:
        self.sent.append((key, value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    def get_topic_name(self) -> str:
        return "telemetry.deadletter"


def _stage(ch: Any) -> SessionStage:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    pipeline = SimpleNamespace(
        settings=settings, clickhouse=ch, reader=ch, writer=SimpleNamespace(lock=threading.Lock()),
        ch_executor=ThreadPoolExecutor(1), query_executor=ThreadPoolExecutor(1), enricher=None,
        app=SimpleNamespace(consumer=None), enriched_topic_name=ENRICHED, metrics=Metrics(),
        deadletter_topic=_Topic(), log_resets=0)
    return SessionStage(pipeline, settings.sessions, settings.transitions,
                        derive_interval_s=0.0, max_cached_events=1_000_000)


def _message(offset: int, value: bytes, partition: int = 0) -> Any:
    return SimpleNamespace(value=value, message=SimpleNamespace(
        topic=ENRICHED, partition=partition, offset=offset))


def _batch(rep: str, events: list[Any]) -> bytes:
    return orjson.dumps({"rep_id": rep, "events": [
        {**orjson.loads(p.model_dump_json()), "geo": g.model_dump()} for p, g in events]})


def _dead(ch: Any) -> list[tuple[str, int, str]]:
    return [(r, o, d) for r, o, d in ch.query(
        "SELECT reason, source_offset, detail FROM deadletters ORDER BY source_offset"
    ).result_rows]


def test_a_malformed_message_is_a_dead_letter_and_the_rest_of_the_poll_is_kept(ch: Any) -> None:
    migrate(ch)
    stage = _stage(ch)
    a, b = day_pings("rep-a")[:5], day_pings("rep-b")[:4]
    stray = day_pings("rep-c")[:1]
    poll = [_message(0, _batch("rep-a", a)),
            _message(1, b"{not json"),
            _message(2, orjson.dumps({"rep_id": "rep-x", "events": [{"kind": "ping"}]})),
            _message(3, _batch("rep-b", b[:1] + stray)),  # an event of another rep
            _message(4, _batch("rep-b", b))]
    asyncio.run(stage.add_batch(poll))
    assert stage.states["rep-a"].event_count() == 5
    assert stage.states["rep-b"].event_count() == 4
    assert "rep-x" not in stage.states and "rep-c" not in stage.states
    dead = _dead(ch)
    assert [(r, o) for r, o, _ in dead] == [("invalid", 1), ("invalid", 2), ("invalid", 3)]
    assert all(d.startswith("not an enriched batch") for _, _, d in dead[:2])
    assert "rep-c" in dead[2][2]
    assert len(stage.p.deadletter_topic.sent) == 3
    # every message of the poll waits for its reps' derivation (or none) before its ack
    assert [e.message.offset for e, _ in stage.pending] == [0, 1, 2, 3, 4]


def test_new_reps_of_a_partition_read_from_its_start_are_not_reloaded(ch: Any) -> None:
    migrate(ch)
    insert_events(ch, day_pings("stored"))  # stored before the stage started
    stage = _stage(ch)
    assert stage.stored_at_start == frozenset({"stored"})
    insert_events(ch, day_pings("fresh"))  # stored while it runs (by the intake)
    asyncio.run(stage.add_batch([
        _message(0, _batch("fresh", day_pings("fresh")[:2])),
        _message(1, _batch("stored", day_pings("stored")[:2]))]))
    # "fresh": the partition is read from offset 0, the topic delivers all of it
    assert stage.skipped_rebuilds == 1 and stage.states["fresh"].event_count() == 2
    # "stored": had events before the stage started, which the topic may not hold
    assert stage.rebuilt_reps == 1 and stage.states["stored"].event_count() == 48

    # a partition that resumes past offset 0, and a rep held before (evicted): reloaded
    late = [(p, Enrichment()) for p, _ in day_pings("late")]
    insert_events(ch, late)
    del stage.states["fresh"]
    asyncio.run(stage.add_batch([_message(7, _batch("late", late[:1]), partition=1),
                                 _message(2, _batch("fresh", day_pings("fresh")[2:3]))]))
    assert stage.states["late"].event_count() == 48
    assert stage.states["fresh"].event_count() == 48
    assert stage.skipped_rebuilds == 1 and stage.rebuilt_reps == 3

    # a log that went backwards (an in-memory broker restarted): every new rep reloaded
    insert_events(ch, day_pings("after"))
    stage.p.log_resets = 1
    asyncio.run(stage.add_batch([_message(3, _batch("after", day_pings("after")[:1]))]))
    assert stage.states["after"].event_count() == 48 and stage.skipped_rebuilds == 1


def test_the_shortcut_is_off_when_the_store_cannot_list_its_reps(ch: Any) -> None:
    stage = _stage(ch)  # no tables yet: the query fails
    assert stage.stored_at_start is None
    assert not stage._delivered_whole("anyone")
