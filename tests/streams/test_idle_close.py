"""The sessions stage closes the days of reps that stopped uploading (by the event-time
progress of their partition), redacts and records them, and a rebuilt state keeps them
closed; the stage's privacy sweep redacts closed days nobody redacted. Real chDB, no broker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from pydantic import TypeAdapter

from processors import RepSessionState
from processors.records import RejectReason
from schemas.derived import EnrichedEvent
from sinks.migrations import migrate
from streams.sessions import SessionStage
from streams.settings import Settings
from tests.privacy.privacy_data import (
    DAY,
    LAT,
    LON,
    TZ,
    insert_day,
    insert_events,
    local,
    summary,
)
from tests.privacy.privacy_data import pings as day_pings

pytestmark = pytest.mark.integration
ENRICHED = "telemetry.enriched"
LATENESS = 36 * 3600.0
_EVENT: TypeAdapter[Any] = TypeAdapter(EnrichedEvent)


class TP(NamedTuple):
    topic: str
    partition: int


class _Consumer:
    def __init__(self, partitions: int) -> None:
        self.partitions = partitions

    def assignment(self) -> set[Any]:
        return {TP(ENRICHED, p) for p in range(self.partitions)}

    def topic_partitions(self, topic: str) -> int:
        return self.partitions


def _stage(ch: Any, **privacy: Any) -> SessionStage:
    settings = Settings(_env_file=None,  # type: ignore[call-arg]
                        privacy={"sweep_lookback_days": 3660, **privacy})
    pipeline = SimpleNamespace(
        settings=settings, clickhouse=ch, reader=ch, writer=SimpleNamespace(lock=threading.Lock()),
        ch_executor=ThreadPoolExecutor(1), query_executor=ThreadPoolExecutor(1), enricher=None,
        app=SimpleNamespace(consumer=_Consumer(1)), enriched_topic_name=ENRICHED)
    return SessionStage(pipeline, settings.sessions, settings.transitions,
                        derive_interval_s=0.0, max_cached_events=1_000_000)


def _ping(rep: str, ts: dt.datetime) -> Any:
    return _EVENT.validate_python({
        "event_id": str(uuid.uuid4()), "device_id": f"dev-{rep}", "rep_id": rep,
        "kind": "ping", "ts": ts, "received_at": ts, "lat": LAT, "lon": LON,
        "accuracy_m": 8.0, "geo": {}})


def _hold(stage: SessionStage, rep: str, events: list[Any], part: int = 0) -> None:
    """A rep the stage holds, derived (not dirty), on partition ``part``."""
    state = RepSessionState(rep, TZ, stage.params)
    state.add(events, derive=True)
    stage.states[rep] = state
    stage.rep_partition[rep] = part


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_idle_rep_days_close_by_partition_progress_and_stay_closed(ch: Any) -> None:
    migrate(ch)
    stage = _stage(ch)
    insert_events(ch, day_pings("idle"))  # stored at full precision, no summary: all off duty
    _hold(stage, "idle", [_ping("idle", local(9)), _ping("idle", local(18))])
    end = local(0, day=DAY + dt.timedelta(days=1))
    margin = dt.timedelta(seconds=stage.params.max_future_s)

    # another rep on the partition, just short of DAY's end + lateness + margin: nothing
    _hold(stage, "busy", [_ping("busy", end + dt.timedelta(seconds=LATENESS) + margin
                                - dt.timedelta(seconds=1))])
    assert _run(stage.close_idle()) == 0
    assert stage.states["idle"].open_days() == [DAY]
    # a rep on another partition does not move this one's clock
    _hold(stage, "other", [_ping("other", end + dt.timedelta(days=5))], part=1)
    assert _run(stage.close_idle()) == 0

    # now past it: closed, redacted, recorded with the idle clock, evicted
    now = end + dt.timedelta(seconds=LATENESS) + margin + dt.timedelta(minutes=1)
    stage.states["busy"].add([_ping("busy", now)], derive=True)
    assert _run(stage.close_idle()) == 1
    assert "idle" not in stage.states and stage.idle_closed_days == 1
    assert ch.command("SELECT countIf(accuracy_m IS NOT NULL) FROM events_all") == 0
    marks = ch.query("SELECT rep_id, local_date, watermark FROM closed_rep_days").result_rows
    assert [(r, d) for r, d, _ in marks] == [("idle", DAY)]
    assert marks[0][2].replace(tzinfo=dt.UTC) == now - margin
    # the other reps' open days stay open (their own days are not over)
    assert stage.states["busy"].open_days() and stage.states["other"].open_days()

    # the rep comes back after eviction: its rebuilt state starts at the recorded
    # watermark, so a late event of the closed day is too_late, not a re-opened day
    stage.states["idle"] = RepSessionState("idle", TZ, stage.params)
    _run(stage.restore_watermarks(["idle"]))
    out = stage.states["idle"].add([_ping("idle", local(20))], derive=False)
    assert [r.reason for r in out.rejected] == [RejectReason.too_late]
    assert stage.states["idle"].is_empty


def test_dirty_and_own_watermark_reps_are_left_to_derivation(ch: Any) -> None:
    migrate(ch)
    stage = _stage(ch)
    end = local(0, day=DAY + dt.timedelta(days=1))
    _hold(stage, "idle", [_ping("idle", local(9))])
    stage.states["idle"].add([_ping("idle", local(10))], derive=False)  # not derived yet
    _hold(stage, "busy", [_ping("busy", end + dt.timedelta(days=3))])
    assert _run(stage.close_idle()) == 0
    assert stage.states["idle"].open_days() == [DAY]
    # derived, but lately: a phone sending its history in parts is not idle between them
    _hold(stage, "recent", [_ping("recent", local(9))])
    stage.last_derived["recent"] = time.monotonic()
    assert _run(stage.close_idle()) == 0
    stage.last_derived["recent"] = time.monotonic() - 3600
    assert _run(stage.close_idle()) == 1 and "recent" not in stage.states


def test_stage_sweep_redacts_closed_days_of_reps_it_does_not_hold(ch: Any) -> None:
    migrate(ch)
    stage = _stage(ch)
    # a rep-day stored and derived, but never redacted (the worker was down when it
    # closed); the rep is not in memory
    insert_events(ch, day_pings("gone"))
    insert_day(ch, summary("gone", start=local(8), end=local(17)), [])
    assert _run(stage.sweep()) == 0  # nothing says it is closed: its own watermark is DAY
    # the partition's event time moved on (another rep uploads)
    end = local(0, day=DAY + dt.timedelta(days=1))
    _hold(stage, "busy", [_ping("busy", end + dt.timedelta(days=2))])
    stage._advance_partition_clocks()
    assert _run(stage.sweep()) == 1
    assert ch.command("SELECT countIf(accuracy_m IS NOT NULL) FROM events_all") == 18
    assert _run(stage.sweep()) == 0  # recorded: not again
