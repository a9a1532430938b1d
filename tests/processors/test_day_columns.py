"""Rep-days held as column chunks (processors/day_columns.py) against the object path.

Differential: every rep-day of a simulated workload (20 reps, 3 days; realistic GPS noise,
gaps, offline backlogs, resends; enriched with the sample world's territories and accounts)
derives the same segments, ids, daily figures and transitions from the session state's columns as
:func:`derive_rep_day` and :func:`derive_transitions` from the day's events (compiled and
the pure reference), compared bit for bit. Hypothesis: any order, duplicates, copies
received earlier and uploads split into takes give the same columns.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from session_tracks import DAY, TZ, standard_day

from processors import RepSessionState, SessionParams
from processors.day_columns import PingColumns, derive_rep_day_columns
from processors.intake import TimeLimits, parse_message
from processors.places import InMemoryPlaces
from processors.rep_day import derive_rep_day
from processors.transitions import (
    TransitionParams,
    derive_transitions,
    derive_transitions_columns,
)
from schemas.derived import (
    EnrichedCheckIn,
    EnrichedPing,
    EnrichedVisitSubmission,
    Enrichment,
)
from schemas.events import CheckIn, Ping
from simulator import NoiseProfile, simulate

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
P = SessionParams()
TP = TransitionParams()
_ENRICHED = {"ping": EnrichedPing, "check_in": EnrichedCheckIn,
             "visit_submission": EnrichedVisitSubmission}


@pytest.fixture(scope="module")
def simulated_rep_days() -> list[tuple[RepSessionState, dt.date, Any]]:
    """(state, local date, places) of every rep-day of 20 reps over 3 days, each upload
    added as it arrives (so the columns grow in many chunks, with resent copies)."""
    from streams.geosets import GeoEnricher, build_index, prepare
    from streams.sessions import GeoPlaces

    sets = {kind: (1, prepare(kind, SAMPLE / f"{kind}.geojson")[0])
            for kind in ("territories", "accounts")}
    enricher = GeoEnricher(build_index(sets))
    index = enricher.index
    sim = simulate(SAMPLE, 20, 3, dt.date(2026, 3, 27), 5, NoiseProfile.realistic())
    states: dict[str, RepSessionState] = {}
    for k, up in enumerate(sim.uploads):
        stamp = up.send_at.isoformat()
        value = orjson.dumps({"events": [{**e, "received_at": stamp} for e in up.events]})
        events = parse_message(value, up.send_at, TimeLimits()).events
        if not events:
            continue
        geo = enricher.enrich(events)
        rep = events[0].rep_id
        if rep not in states:
            states[rep] = RepSessionState(rep, index.rep_profile(rep).tz, P)
        states[rep].add([_ENRICHED[e.kind](**dict(e), geo=g)
                         for e, g in zip(events, geo, strict=True)],
                        derive=False)
        if k % 40 == 0:  # derive now and then: the columns' cached views are reused
            states[rep].derive(GeoPlaces(index, rep), close=False)
    return [(s, day, GeoPlaces(index, rep)) for rep, s in states.items()
            for day in s.open_days()]


def _dump(segments: list[Any], summary: Any) -> bytes:
    # JSON of every field: floats by their shortest repr, so a last-bit difference shows
    return orjson.dumps([s.model_dump(mode="json") for s in segments]
                        + [summary.model_dump(mode="json")])


def _others(state: RepSessionState, day: dt.date) -> list[Any]:
    return [e for e in state.events_of(day) if not isinstance(e, Ping)]


def test_every_simulated_rep_day_derives_the_same_from_columns(
        simulated_rep_days: list[tuple[RepSessionState, dt.date, Any]]) -> None:
    assert len(simulated_rep_days) >= 60
    segments = transitions = 0
    for state, day, places in simulated_rep_days:
        evs = state.events_of(day)
        pings = state.pings_of(day)
        assert len(pings) == sum(isinstance(e, Ping) for e in evs)
        cols = derive_rep_day_columns(state.rep_id, day, state.tz, pings,
                                      _others(state, day), places, P, version=3)
        fast = derive_rep_day(state.rep_id, day, state.tz, evs, places, P, version=3)
        ref = derive_rep_day(state.rep_id, day, state.tz, evs, places, P, version=3,
                             compiled=False)
        assert _dump(*cols) == _dump(*fast) == _dump(*ref), (state.rep_id, day)
        segments += len(cols[0])
        t_cols = derive_transitions_columns(state.rep_id, day, pings, TP, filter_params=P,
                                            version=2)
        t_ref = derive_transitions(state.rep_id, day, evs, TP, filter_params=P, version=2,
                                   compiled=False)
        assert [t.model_dump(mode="json") for t in t_cols] == \
            [t.model_dump(mode="json") for t in t_ref], (state.rep_id, day)
        transitions += len(t_cols)
    assert segments > 600 and transitions > 60  # the workload exercises every path


def _enriched_day(seed: int) -> list[Any]:
    events = standard_day(seed=seed, noise_m=8.0)[0]
    out: list[Any] = []
    for i, e in enumerate(events):
        g = Enrichment(territory_id="T1" if i % 50 < 30 else None,
                       account_id="A1" if i % 40 < 10 else None,
                       in_assigned_territory=i % 50 < 30, geo_version=1)
        cls = EnrichedPing if isinstance(e, Ping) else EnrichedCheckIn \
            if isinstance(e, CheckIn) else EnrichedVisitSubmission
        out.append(cls(**dict(e), geo=g))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), takes=st.integers(1, 6), dup_share=st.sampled_from(
    [0.0, 0.1, 0.5]), clock_s=st.sampled_from([0.0, 45.0, -20.0]))
def test_columns_are_a_function_of_the_event_set(seed: int, takes: int, dup_share: float,
                                                 clock_s: float) -> None:
    """Shuffled takes, resends and copies received earlier or later: the columns derive
    what the objects derive, and the same after every take."""
    rng = random.Random(seed)
    events = _enriched_day(seed % 7)
    # a device clock off by clock_s (received_at against ts), then copies of some events
    # received earlier (they replace the copy held) or later (they are absorbed)
    events = [e.model_copy(update={"received_at": (e.received_at or e.ts)
                                   + dt.timedelta(seconds=60 + clock_s)}) for e in events]
    extra = [e.model_copy(update={"received_at": e.received_at + dt.timedelta(
        seconds=rng.choice([-30, 30]))}) for e in events if rng.random() < dup_share]
    stream = events + extra
    rng.shuffle(stream)
    places = InMemoryPlaces(standard_day()[1])
    state = RepSessionState(events[0].rep_id, TZ, P)
    cuts = sorted(rng.sample(range(1, len(stream)), takes - 1)) if takes > 1 else []
    for lo, hi in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        state.add(stream[lo:hi], derive=False)
        for day in state.open_days():
            evs = state.events_of(day)
            cols = derive_rep_day_columns(state.rep_id, day, state.tz, state.pings_of(day),
                                          _others(state, day), places, P, version=1)
            ref = derive_rep_day(state.rep_id, day, state.tz, evs, places, P, version=1)
            assert _dump(*cols) == _dump(*ref)
            t_cols = derive_transitions_columns(state.rep_id, day, state.pings_of(day), TP)
            t_ref = derive_transitions(state.rep_id, day, evs, TP)
            assert [t.model_dump(mode="json") for t in t_cols] == \
                [t.model_dump(mode="json") for t in t_ref]
    assert DAY in state.open_days()


def test_a_copy_of_another_kind_replaces_the_ping() -> None:
    """The same event_id sent first as a ping, then (received earlier) as a check-in: the
    columns drop the ping, so both paths see one check-in."""
    events = _enriched_day(1)
    ping = next(e for e in events if isinstance(e, EnrichedPing))
    chk = next(e for e in events if isinstance(e, EnrichedCheckIn))
    swapped = chk.model_copy(update={"event_id": ping.event_id, "ts": ping.ts,
                                     "received_at": ping.received_at - dt.timedelta(
                                         seconds=5)})
    state = RepSessionState(ping.rep_id, TZ, P)
    state.add(events, derive=False)
    n = len(state.pings_of(DAY))
    state.add([swapped], derive=False)
    assert len(state.pings_of(DAY)) == n - 1
    pc = PingColumns()
    pc.put(ping)
    pc.discard(ping.event_id)
    assert len(pc) == 0 and len(pc.view()) == 0
    evs = state.events_of(DAY)
    places = InMemoryPlaces([])
    cols = derive_rep_day_columns(state.rep_id, DAY, state.tz, state.pings_of(DAY),
                                  _others(state, DAY), places, P)
    assert _dump(*cols) == _dump(*derive_rep_day(state.rep_id, DAY, state.tz, evs, places, P))
