from __future__ import annotations

import datetime as dt

from session_tracks import DAY, TZ, DayBuilder, place, standard_day

from processors import InMemoryPlaces, Segment, SegmentKind, VisitSource, derive_rep_day


def _visits(segments: list[Segment]) -> list[Segment]:
    return [s for s in segments if s.kind == SegmentKind.visit]


def test_checked_in_visit_is_verified_and_stop_at_customer_is_automatic() -> None:
    events, places, _ = standard_day()
    segs, day = derive_rep_day("rep-1", DAY, TZ, events, InMemoryPlaces(places))
    visits = _visits(segs)
    assert [(v.place_id, v.visit_source, v.verified) for v in visits] == [
        ("A", VisitSource.check_in, True), ("B", VisitSource.auto, True)]
    assert visits[0].visit_id == "v1"
    assert abs(visits[0].duration_s - 1800) < 90
    assert (day.visits, day.verified_visits, day.unverified_visits, day.auto_visits) == (
        2, 2, 0, 1)


def test_visit_claimed_far_from_the_customer_is_unverified() -> None:
    b = DayBuilder()
    b.stay(300).drive(3000, 0)
    b.check_in("visit_start", account_id="C", visit_id="v9")
    b.stay(900)
    b.check_in("visit_end", account_id="C", visit_id="v9")
    b.drive(3000, 0).stay(300)
    places = InMemoryPlaces([place("C", 3000, 2000)])  # two km away from where the rep was
    segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, places)
    (v,) = _visits(segs)
    assert v.verified is False and v.place_id == "C"
    assert day.unverified_visits == 1 and day.customer_s == 0.0


def test_mock_pings_do_not_verify_a_visit() -> None:
    b = DayBuilder(ping_s=60)
    b.stay(300)
    b.check_in("visit_start", account_id="C", visit_id="v1")
    t0 = b.t
    fake = []
    for k in range(10):
        b.t = t0 + dt.timedelta(seconds=60 * k)
        fake.append(b.ping_at(3000, 2000, is_mock=True))
    b.stay(600)
    b.check_in("visit_end", account_id="C", visit_id="v1")
    places = InMemoryPlaces([place("C", 3000, 2000)])
    segs, day = derive_rep_day("rep-1", DAY, TZ, [*b.events, *fake], places)
    (v,) = _visits(segs)
    assert v.verified is False
    assert day.pings_dropped.get("mock_location") == 10


def test_submission_links_by_visit_id_and_by_account_overlap() -> None:
    b = DayBuilder()
    b.stay(300).drive(3000, 0)
    s1 = b.t
    b.check_in("visit_start", account_id="A", visit_id="v1").stay(1200)
    b.check_in("visit_end", account_id="A", visit_id="v1")
    e1 = b.t
    b.submission("v1", "A", s1, e1)
    b.drive(0, 2000)
    s2 = b.t
    b.check_in("visit_start", account_id="B").stay(900)  # old app: no visit_id
    b.check_in("visit_end", account_id="B")
    e2 = b.t
    b.submission("v-other-id", "B", s2, e2).drive(0, 2000).stay(300)
    places = InMemoryPlaces([place("A", 3000, 0), place("B", 3000, 2000)])
    segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, places)
    visits = _visits(segs)
    assert len(visits) == 2 and day.verified_visits == 2
    subs = {s.event_id for s in b.events if s.kind == "visit_submission"}
    assert {v.submission_event_id for v in visits} == subs
    assert visits[1].visit_id == "v-other-id"


def test_submission_without_check_ins_is_a_visit_of_its_own() -> None:
    b = DayBuilder()
    b.stay(300).drive(3000, 0)
    s1 = b.t
    b.stay(1200)
    b.submission("v7", "A", s1, b.t).drive(3000, 0).stay(300)
    places = InMemoryPlaces([place("A", 3000, 0)])
    segs, _ = derive_rep_day("rep-1", DAY, TZ, b.events, places)
    (v,) = _visits(segs)
    assert v.visit_source == VisitSource.submission and v.verified and v.visit_id == "v7"


def test_missing_visit_end_is_taken_from_the_stop() -> None:
    b = DayBuilder()
    b.stay(300).drive(3000, 0)
    b.check_in("visit_start", account_id="A", visit_id="v1").stay(1500).drive(3000, 0)
    b.stay(300)
    segs, _ = derive_rep_day("rep-1", DAY, TZ, b.events, InMemoryPlaces([place("A", 3000, 0)]))
    (v,) = _visits(segs)
    assert v.verified and v.inferred
    assert abs(v.duration_s - 1500) < 90


def test_break_inside_a_customer_geofence_is_not_an_automatic_visit() -> None:
    b = DayBuilder()
    b.stay(300).drive(3000, 0)
    b.check_in("break_start").stay(1800)
    b.check_in("break_end").drive(3000, 0).stay(300)
    segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, InMemoryPlaces([place("A", 3000, 0)]))
    assert _visits(segs) == [] and day.visits == 0
    assert day.break_s > 1700


def test_one_stay_split_into_two_stops_is_one_visit() -> None:
    """A checked-in visit whose stay the stop detector splits in two (two ends of a large
    site 120 m apart): the second stop is part of the visit, not an automatic visit of
    the same account inside it (that counted the visit twice in RepDay.visits)."""
    b = DayBuilder(ping_s=30.0)
    b.stay(300).drive(3000, 0)
    b.e -= 60.0
    b.check_in("visit_start", account_id="A", visit_id="v1")
    b.stay(900)
    b.e += 120.0
    b.stay(900)
    b.check_in("visit_end", account_id="A", visit_id="v1")
    b.drive(3000, 0).stay(300)
    places = InMemoryPlaces([place("A", 3000, 0)])
    segs, day = derive_rep_day("rep-1", DAY, TZ, b.events, places)
    stops_at_a = [s for s in segs if s.kind == SegmentKind.stop and s.place_id == "A"]
    assert len(stops_at_a) == 2
    (v,) = _visits(segs)
    assert v.visit_source == VisitSource.check_in and v.verified
    assert abs(v.duration_s - 1800) < 90
    assert (day.visits, day.auto_visits) == (1, 0)
