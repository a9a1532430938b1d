from __future__ import annotations

import datetime as dt
import random
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from session_tracks import DAY, TZ, DayBuilder, standard_day

from processors import (
    InMemoryPlaces,
    RejectReason,
    RepDay,
    RepSessionState,
    Segment,
    SessionParams,
    derive_rep_day,
)


@cache
def _noisy_day() -> tuple[list, InMemoryPlaces]:
    b_events, places, _ = standard_day(seed=5, noise_m=30.0, missing=0.1)
    return b_events, InMemoryPlaces(places)


def _strip(segments: list[Segment] | tuple[Segment, ...], day: RepDay) -> tuple:
    return ([s.model_dump(exclude={"version"}) for s in segments],
            day.model_dump(exclude={"version"}))


def _feed(state: RepSessionState, batches: list[list], places: InMemoryPlaces) -> tuple:
    last = None
    for batch in batches:
        out = state.add(batch, places=places)
        for u in out.updates:
            last = u
    assert last is not None
    return _strip(last.segments, last.summary)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), dup_share=st.floats(0, 0.3), n_batches=st.integers(1, 8))
def test_shuffled_duplicated_batched_events_derive_the_same_day(
        seed: int, dup_share: float, n_batches: int) -> None:
    events, places = _noisy_day()
    expected = _strip(*derive_rep_day("rep-1", DAY, TZ, events, places))
    rng = random.Random(seed)
    stream = list(events) + rng.sample(events, int(dup_share * len(events)))
    rng.shuffle(stream)
    cuts = sorted(rng.sample(range(1, len(stream)), n_batches - 1)) if n_batches > 1 else []
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    state = RepSessionState("rep-1", TZ)
    assert _feed(state, batches, places) == expected


def test_duplicates_emit_nothing_new_and_versions_increase() -> None:
    events, places = _noisy_day()
    state = RepSessionState("rep-1", TZ)
    first = state.add(events[:100], places=places)
    second = state.add(events[100:], places=places)
    # the version is the size of the day's event set: it grows, and a rebuilt state agrees
    assert first.updates[0].version == 100 and second.updates[0].version == len(events)
    again = state.add(events[50:150], places=places)
    assert again.updates == () and again.duplicates == 100
    retracted = set(second.updates[0].retracted)
    assert retracted <= {s.segment_id for s in first.updates[0].segments}


def test_too_late_is_rejected_and_closed_days_are_discarded() -> None:
    p = SessionParams(lateness_s=36 * 3600)
    events, places = _noisy_day()
    state = RepSessionState("rep-1", TZ, p)
    state.add(events, places=places)
    assert state.open_days() == [DAY]
    later = DayBuilder(start=dt.datetime(2026, 11, 4, 12, 0, tzinfo=dt.UTC), seed=1)
    later._k = 50_000
    later.stay(600)
    out = state.add(later.events, places=places)
    assert out.closed == (DAY,)
    assert state.open_days() == [dt.date(2026, 11, 4)]
    assert state.events_of(DAY) == []
    old = DayBuilder(start=dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC), seed=2)
    old._k = 90_000
    old.stay(120)
    late = state.add(old.events, places=places)
    assert late.updates == ()
    assert {r.reason for r in late.rejected} == {RejectReason.too_late}
    assert len(late.rejected) == len(old.events)


def test_backlog_within_lateness_is_accepted_whole() -> None:
    """A phone offline for a shift uploads hours late: same records as live."""
    events, places = _noisy_day()
    tomorrow = DayBuilder(start=dt.datetime(2026, 11, 3, 7, 0, tzinfo=dt.UTC), seed=3)
    tomorrow._k = 70_000
    tomorrow.stay(600)
    state = RepSessionState("rep-1", TZ)
    state.add(tomorrow.events, places=places)  # watermark is a day ahead
    out = state.add(events, places=places)
    assert out.rejected == ()
    (u,) = out.updates
    assert _strip(u.segments, u.summary) == _strip(*derive_rep_day("rep-1", DAY, TZ, events,
                                                                   places))


def test_event_from_the_future_is_rejected_and_does_not_move_the_watermark() -> None:
    b = DayBuilder().stay(300)
    bad = b.events[-1].model_copy(update={"ts": b.events[-1].ts + dt.timedelta(days=3)})
    state = RepSessionState("rep-1", TZ)
    out = state.add([*b.events[:-1], bad])
    assert [r.reason for r in out.rejected] == [RejectReason.in_future]
    assert state.watermark == b.events[-2].ts


def test_advance_watermark_closes_idle_days() -> None:
    b = DayBuilder().stay(300)
    state = RepSessionState("rep-1", TZ)
    state.add(b.events)
    assert not state.is_empty
    out = state.advance_watermark(dt.datetime(2026, 11, 10, tzinfo=dt.UTC))
    assert out.closed == (DAY,) and state.is_empty


def test_clock_skew_is_corrected_from_received_at() -> None:
    events, places, _ = standard_day()
    base = derive_rep_day("rep-1", DAY, TZ, events, InMemoryPlaces(places))[1]
    # the phone's clock runs 110 s ahead; the server's receive times are true
    shifted = [e.model_copy(update={"ts": e.ts + dt.timedelta(seconds=110)}) for e in events]
    day = derive_rep_day("rep-1", DAY, TZ, shifted, InMemoryPlaces(places))[1]
    assert day.clock_offset_s == -110.0
    assert day.workday_start == base.workday_start and day.workday_end == base.workday_end


def test_event_id_again_with_another_ts_keeps_the_first_received() -> None:
    """A resend of an event id with another ts (even on another day) is one event: the
    first received copy stays, the other is reported as superseded (to delete from the
    store, whose key includes ts)."""
    events, places = _noisy_day()
    state = RepSessionState("rep-1", TZ)
    first = events[10]
    state.add(events[:50], places=places, derive=False)
    later = first.model_copy(update={"ts": first.ts + dt.timedelta(days=1),
                                     "received_at": first.received_at + dt.timedelta(days=1)})
    out = state.add([later], places=places, derive=False)
    assert out.duplicates == 1 and out.superseded == (later,)
    assert state.event_count() == 50 and len(state.open_days()) == 1
    # the same copy again is a plain duplicate, nothing to delete
    assert state.add([first], places=places, derive=False).superseded == ()
    # a copy received earlier than the one held replaces it, and the held one goes
    earlier = first.model_copy(update={"ts": first.ts - dt.timedelta(minutes=3),
                                       "received_at": first.received_at - dt.timedelta(minutes=1)})
    out = state.add([earlier], places=places, derive=False)
    assert out.superseded == (first,) and state.event_count() == 50
