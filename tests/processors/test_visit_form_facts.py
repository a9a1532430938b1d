"""A visit segment carries its linked submission's facts (outcome, order, tags, form, notes,
number of photos): the visits view and field.segments consumers need no join."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from session_tracks import DAY, TZ, DayBuilder, place

from processors import InMemoryPlaces, RepSessionState, Segment, SegmentKind, derive_rep_day
from schemas.events import VisitOutcome, VisitSubmission

PLACES = InMemoryPlaces([place("A", 3000, 0), place("B", 3000, 2000)])


def _visits(segments: list[Segment] | tuple[Segment, ...]) -> list[Segment]:
    return [s for s in segments if s.kind == SegmentKind.visit]


def _day() -> tuple[DayBuilder, VisitSubmission]:
    """A checked-in visit at A with a full form, then an automatic visit at B."""
    b = DayBuilder()
    b.stay(300).drive(3000, 0)
    s1 = b.t
    b.check_in("visit_start", account_id="A", visit_id="v1").stay(1200)
    b.check_in("visit_end", account_id="A", visit_id="v1")
    sub = VisitSubmission(
        event_id="6f1d1e4e-0000-4000-8000-000000000001", device_id=b.device_id,
        rep_id=b.rep_id, ts=b.t, received_at=b.t, visit_id="v1", account_id="A",
        started_at=s1, ended_at=b.t, outcome="order_placed", notes="wants a demo",
        form={"competitor_seen": "Acme", "shelf_facings": 4, "needs": ["delivery", "promo"],
              "ok": True},
        photos=[{"photo_id": "p1", "sha256": "a" * 64, "content_type": "image/jpeg",
                 "bytes": 1000}],
        order={"currency": "EUR", "total": "120.50", "lines": []},
        tags=["competitor:Acme", "need:delivery"])
    b.drive(0, 2000).stay(1200).drive(0, 2000).stay(300)
    return b, sub


def test_linked_visit_carries_the_submission_facts_and_others_none() -> None:
    b, sub = _day()
    segs, _ = derive_rep_day(b.rep_id, DAY, TZ, [*b.events, sub], PLACES)
    linked, auto = _visits(segs)
    assert linked.submission_event_id == sub.event_id
    assert (linked.outcome, linked.order_currency, linked.order_total, linked.tags,
            linked.notes, linked.photo_count) == (
        VisitOutcome.order_placed, "EUR", Decimal("120.50"),
        ("competitor:Acme", "need:delivery"), "wants a demo", 1)
    assert linked.form == {"competitor_seen": "Acme", "shelf_facings": 4,
                           "needs": ["delivery", "promo"], "ok": True}
    assert auto.place_id == "B" and auto.submission_event_id is None
    for s in [auto, *(s for s in segs if s.kind != SegmentKind.visit)]:
        assert (s.outcome, s.order_currency, s.order_total, s.tags, s.form, s.notes,
                s.photo_count) == (None, None, None, (), {}, "", 0)
    # On the topic as JSON, and back.
    again = Segment.model_validate_json(linked.model_dump_json())
    assert again == linked


def test_a_submission_arriving_later_re_emits_the_day_with_its_facts() -> None:
    b, sub = _day()
    state = RepSessionState(b.rep_id, TZ)
    first = state.add(b.events, places=PLACES)
    (u1,) = [u for u in first.updates if u.local_date == DAY]
    assert [v.outcome for v in _visits(u1.segments)] == [None, None]
    later = state.add([sub], places=PLACES, received=b.t + dt.timedelta(minutes=1))
    (u2,) = [u for u in later.updates if u.local_date == DAY]
    assert u2.version > u1.version
    assert [v.outcome for v in _visits(u2.segments)] == [VisitOutcome.order_placed, None]
    # The segment id is the same: the current tables replace the row, form included.
    assert [v.segment_id for v in _visits(u2.segments)] == [
        v.segment_id for v in _visits(u1.segments)]
    assert not u2.retracted
