"""The compiled kernels (processors/kernels.py) against their pure-Python reference.

Differential: every rep-day of a simulated workload (realistic GPS noise, gaps, offline
backlogs, resends; enriched with the sample world's territories and accounts) derives the
same segments, ids, daily figures and transitions both ways, compared bit for bit. Hypothesis
does the same for the filter, stop and travel kernels on random tracks and for the
transition machines on random fixes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors import RepSessionState, SessionParams, Track
from processors.gps_filter import (
    _speed_chain_drops,
    _speed_chain_drops_compiled,
    _spike_drops,
    _spike_drops_compiled,
)
from processors.intake import TimeLimits, parse_message
from processors.rep_day import derive_rep_day
from processors.stops import detect_stops, travel_between
from processors.transitions import TransitionParams, derive_transitions
from schemas.derived import (
    EnrichedCheckIn,
    EnrichedPing,
    EnrichedVisitSubmission,
    Enrichment,
)
from simulator import NoiseProfile, simulate

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
P = SessionParams()
TP = TransitionParams()
_ENRICHED = {"ping": EnrichedPing, "check_in": EnrichedCheckIn,
             "visit_submission": EnrichedVisitSubmission}


@pytest.fixture(scope="module")
def simulated_rep_days() -> list[tuple[RepSessionState, dt.date, Any]]:
    """(state, local date, places) of every rep-day of 30 reps over 3 days."""
    from streams.geosets import GeoEnricher, build_index, prepare
    from streams.sessions import GeoPlaces

    sets = {kind: (1, prepare(kind, SAMPLE / f"{kind}.geojson")[0])
            for kind in ("territories", "accounts")}
    enricher = GeoEnricher(build_index(sets))
    index = enricher.index
    sim = simulate(SAMPLE, 30, 3, dt.date(2026, 3, 27), 11, NoiseProfile.realistic())
    states: dict[str, RepSessionState] = {}
    for up in sim.uploads:  # one device per rep: an upload is one rep's
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
                         for e, g in zip(events, geo, strict=True)], derive=False)
    return [(s, day, GeoPlaces(index, rep)) for rep, s in states.items()
            for day in s.open_days()]


def _dump(segments: list[Any], summary: Any) -> bytes:
    # JSON of every field: floats by their shortest repr, so a last-bit difference shows
    return orjson.dumps([s.model_dump(mode="json") for s in segments]
                        + [summary.model_dump(mode="json")])


def test_every_simulated_rep_day_derives_the_same(
        simulated_rep_days: list[tuple[RepSessionState, dt.date, Any]]) -> None:
    assert len(simulated_rep_days) >= 90  # (some reps' days span two local dates)
    segments = transitions = 0
    for state, day, places in simulated_rep_days:
        evs = state.events_of(day)
        fast = derive_rep_day(state.rep_id, day, state.tz, evs, places, P, version=3)
        ref = derive_rep_day(state.rep_id, day, state.tz, evs, places, P, version=3,
                             compiled=False)
        assert _dump(*fast) == _dump(*ref), (state.rep_id, day)
        segments += len(fast[0])
        t_fast = derive_transitions(state.rep_id, day, evs, TP, filter_params=P)
        t_ref = derive_transitions(state.rep_id, day, evs, TP, filter_params=P,
                                   compiled=False)
        assert [t.model_dump(mode="json") for t in t_fast] == \
            [t.model_dump(mode="json") for t in t_ref], (state.rep_id, day)
        transitions += len(t_fast)
    assert segments > 1000 and transitions > 100  # the workload exercises the kernels


# -- random tracks ---------------------------------------------------------------------------
@st.composite
def tracks(draw: Any) -> Track:
    """A time-sorted track: stays, walks and drives with noise, gaps, outliers, nans."""
    n = draw(st.integers(0, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dt_s = rng.choice([1.0, 5.0, 30.0, 60.0, 200.0, 1000.0, 20_000.0], size=n,
                      p=[0.05, 0.2, 0.4, 0.2, 0.08, 0.05, 0.02])
    dt_s[rng.random(n) < 0.03] = 0.0  # same instant
    t = 1.77e9 + np.cumsum(dt_s) + rng.random() * 1000
    mode = rng.choice([0.0, 1.5, 15.0], size=n, p=[0.5, 0.2, 0.3])  # stay, walk, drive m/s
    step = mode * dt_s
    heading = rng.uniform(0, 360, size=n)
    heading = np.where(rng.random(n) < 0.8, np.round(heading / 90) * 90, heading)
    east = np.cumsum(step * np.sin(np.radians(heading))) + rng.normal(0, 15, n)
    north = np.cumsum(step * np.cos(np.radians(heading))) + rng.normal(0, 15, n)
    jump = rng.random(n) < 0.05
    east[jump] += rng.normal(0, 5000, int(jump.sum()))
    lat = 52.5 + north / 111_320.0
    lon = 13.4 + east / (111_320.0 * np.cos(np.radians(52.5)))
    acc = np.where(rng.random(n) < 0.15, np.nan, rng.uniform(3, 90, n))
    speed = np.where(rng.random(n) < 0.2, np.nan, mode + rng.normal(0, 0.5, n).clip(0))
    head = np.where((rng.random(n) < 0.3) | (mode == 0), np.nan, heading)
    return Track(t, lon, lat, acc, speed, head, np.zeros(n, dtype=np.int8),
                 np.array([str(uuid.UUID(int=k)) for k in range(n)], dtype=object))


params = st.builds(
    SessionParams, stop_radius_m=st.sampled_from([30.0, 100.0, 250.0]),
    stop_min_duration_s=st.sampled_from([60.0, 180.0]),
    stop_excursion_max_s=st.sampled_from([0.0, 180.0, 600.0]),
    stop_merge_gap_s=st.sampled_from([0.0, 900.0]),
    jump_max_points=st.integers(1, 6), max_speed_mps=st.sampled_from([5.0, 70.0]),
    speed_integration_max_dt_s=st.sampled_from([0.0, 180.0]),
    turn_max_ratio=st.sampled_from([1.0, 1.5]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(track=tracks(), p=params)
def test_filter_stop_and_travel_kernels_equal_the_reference(track: Track,
                                                            p: SessionParams) -> None:
    assert _speed_chain_drops_compiled(track, p).tolist() == \
        _speed_chain_drops(track, p).tolist()
    assert _spike_drops_compiled(track, p).tolist() == _spike_drops(track, p).tolist()
    stops = detect_stops(track, p, compiled=False)
    assert detect_stops(track, p) == stops  # dataclass equality: every float exactly
    assert travel_between(track, stops, p) == travel_between(track, stops, p, compiled=False)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from([None, "T1", "T2", "T3"]),
                                st.sampled_from([None, "A", "B"]),
                                st.integers(0, 240_000_000),  # microseconds to the next fix
                                st.sampled_from([5.0, 50.0, 150.0])), max_size=60),
       min_pings=st.integers(1, 4), min_dwell_s=st.sampled_from([0.0, 30.0, 60.0, 60.000001]))
def test_transition_machines_equal_the_reference(steps: list[tuple[Any, ...]], min_pings: int,
                                                 min_dwell_s: float) -> None:
    t = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)
    fixes = []
    for k, (terr, acct, us, acc) in enumerate(steps):
        t += dt.timedelta(microseconds=us)
        fixes.append(EnrichedPing(
            event_id=uuid.UUID(int=k + 1), device_id="d", rep_id="r", ts=t,
            lat=52.52, lon=13.40 + 1e-5 * k, accuracy_m=acc,
            geo=Enrichment(territory_id=terr, account_id=acct, geo_version=k % 3)))
    tp = TransitionParams(min_pings=min_pings, min_dwell_s=min_dwell_s)
    day = dt.date(2026, 11, 2)
    assert derive_transitions("r", day, fixes, tp) == \
        derive_transitions("r", day, fixes, tp, compiled=False)
