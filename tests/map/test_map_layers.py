"""The map's layers and rep panel as pure functions: work-day windows (privacy of the
path), paths, account coverage, the day's timeline, filters and rep-id validation."""

from __future__ import annotations

import datetime as dt
import doctest

import pytest

import streams.map as map_mod
import streams.map_layers as ml

T = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


def _day(rep: str = "r1", **kw: object) -> dict[str, object]:
    row: dict[str, object] = {"rep_id": rep, "local_date": dt.date(2026, 11, 2),
                              "tz": "Europe/Berlin", "workday_start": T,
                              "workday_end": T + 8 * H, "workday_end_inferred": True}
    row.update(kw)
    return row


def test_doctests() -> None:
    for mod in (ml, map_mod):
        assert doctest.testmod(mod).failed == 0


def test_work_window_open_day_runs_to_at_and_a_checked_out_day_to_its_end() -> None:
    at = T + 3 * H
    assert ml.work_windows([_day()], at) == {"r1": (T, at)}
    closed = _day(workday_end=T + 2 * H, workday_end_inferred=False)
    assert ml.work_windows([closed], at) == {"r1": (T, T + 2 * H)}
    # an inferred end long past: the day is over, the pings after it are off duty
    over = _day(workday_end=T + 2 * H, workday_end_inferred=True)
    assert ml.work_windows([over], at) == {"r1": (T, T + 2 * H)}
    assert ml.work_windows([over], T + 2 * H + 10 * M) == {"r1": (T, T + 2 * H + 10 * M)}


def test_no_window_before_the_start_or_on_another_local_day() -> None:
    assert ml.work_windows([_day()], T - M) == {}
    assert ml.work_windows([_day(workday_start=None)], T + H) == {}
    # 23:30 UTC on Nov 2 is already Nov 3 in Berlin: the Nov 2 row is not "today"
    late = dt.datetime(2026, 11, 2, 23, 30, tzinfo=dt.UTC)
    assert ml.work_windows([_day()], late) == {}


def test_paths_keep_only_pings_inside_the_work_window_in_time_order() -> None:
    at = T + 2 * H
    ms = [int((T + k * 10 * M).timestamp() * 1000) for k in range(-3, 13)]
    pts = [(m, 13.0 + i * 0.01, 52.0 + (i % 2) * 0.01) for i, m in enumerate(ms)]
    rows = [{"rep_id": "r1", "pts": [*reversed(pts), (ms[5] + 1, None, None)]},
            {"rep_id": "r2", "pts": pts}]  # r2 has no work day: no path at all
    windows = ml.work_windows([_day()], at)
    paths = ml.build_paths(rows, windows)
    assert set(paths) == {"r1"}
    lons = [p[0] for p in paths["r1"]]
    # the three pings before the start and the three after `at` are gone
    assert lons[0] == pytest.approx(13.03) and lons[-1] == pytest.approx(13.15)
    assert lons == sorted(lons)


def test_accounts_days_since_the_last_verified_visit() -> None:
    accounts = [{"account_id": a, "name": a.upper(), "territory_id": "T1", "region": "n",
                 "lon": 13.0, "lat": 52.0, "radius_m": 80.0} for a in ("b", "a")]
    last = [{"account_id": "a", "last_verified": T - dt.timedelta(days=3, hours=12)}]
    out = ml.build_accounts(accounts, last, T)
    assert [a["account_id"] for a in out] == ["a", "b"]
    assert out[0]["days_since_verified"] == 3.5
    assert out[1]["days_since_verified"] is None and out[1]["last_verified_visit"] is None


def _seg(sid: str, kind: str, start: dt.datetime, end: dt.datetime, **kw: object
         ) -> dict[str, object]:
    return {"segment_id": sid, "kind": kind, "start": start, "end": end, "place_id": None,
            "place_kind": None, "distance_m": 0.0, "visit_source": None, "verified": None,
            **kw}


def test_timeline_orders_the_day_with_gaps_visits_and_the_checked_out_end() -> None:
    day = {"workday_start": T, "workday_end": T + 6 * H, "workday_end_inferred": False,
           "workday_start_inferred": False}
    segs = [_seg("s1", "travel", T, T + H, distance_m=12_345.0),
            _seg("s2", "visit", T + H, T + 2 * H, place_id="acc-1", verified=True),
            _seg("s2b", "stop", T + H, T + 2 * H, place_id="acc-1"),  # under the visit
            _seg("s3", "break", T + 3 * H, T + 3 * H + 30 * M),
            _seg("s4", "stop", T + 3 * H + 31 * M, T + 6 * H)]
    visits = [{"segment_id": "s2", "account_id": "acc-1", "outcome": "order",
               "verified": True, "source": "check_in"}]
    tl = ml.timeline(day, segs, visits, T + 10 * H)
    assert [e["kind"] for e in tl] == ["workday_start", "travel", "visit", "gap", "break",
                                       "stop", "workday_end"]
    gap = tl[3]
    assert gap["duration_s"] == 3600 and gap["start"] == (T + 2 * H).isoformat()
    assert tl[2]["account_id"] == "acc-1" and tl[2]["outcome"] == "order"
    assert tl[1]["distance_m"] == 12345
    # a one-minute hole is not a gap
    assert "gap" not in [e["kind"] for e in tl[4:]]


def test_timeline_replayed_mid_day_stops_at_at() -> None:
    day = {"workday_start": T, "workday_end": T + 6 * H, "workday_end_inferred": False}
    segs = [_seg("s1", "stop", T, T + 2 * H), _seg("s2", "travel", T + 3 * H, T + 4 * H)]
    tl = ml.timeline(day, segs, [], T + H)
    assert [e["kind"] for e in tl] == ["workday_start", "stop"]
    assert tl[1]["end"] == (T + H).isoformat()


@pytest.mark.parametrize("bad", ["", "x' OR 1=1 --", "a b", "-lead", "a" * 65, None])
def test_rep_ids_that_are_not_identifiers_are_refused(bad: str | None) -> None:
    with pytest.raises(ValueError, match="rep id"):
        ml.valid_rep(bad)


def test_filter_by_territory_and_region() -> None:
    reps = [{"rep_id": "a", "territory_id": "T1", "assigned_territories": ["T2"]},
            {"rep_id": "b", "territory_id": "T3", "assigned_territories": ["T3"]},
            {"rep_id": "c", "territory_id": None, "assigned_territories": []}]
    regions = {"T1": "north", "T2": "south", "T3": "south"}
    assert [r["rep_id"] for r in map_mod.filter_reps(reps, "T1", None, regions)] == ["a"]
    assert [r["rep_id"] for r in map_mod.filter_reps(reps, None, "south", regions)] == ["a", "b"]
    assert [r["rep_id"] for r in map_mod.filter_reps(reps, "T3", "north", regions)] == []
    assert len(map_mod.filter_reps(reps, None, None, regions)) == 3


def test_alerts_of_the_day_raised_by_at_and_open_when_they_end_later() -> None:
    from processors.alert_rules import AlertParams
    from schemas.records import SegmentKind
    from tests.processors.test_alert_rules import rep_day, seg, utc

    day = rep_day(7.0, 15.0).model_dump()
    brk = seg(SegmentKind.break_, 10.0, 11.5, 7, lon=13.1, lat=52.4).model_dump()
    day["workday_start"] = day["workday_start"].replace(tzinfo=None)  # as the store gives it
    rows = {"days": [day], "segments": [brk], "transitions": []}
    p = AlertParams(break_max_s=1800.0)

    def at(hour: float) -> list[dict[str, object]]:
        return ml.build_alerts(rows, utc(hour), lambda rep: ("T1",), p, {"r1": (13.5, 52.5)})

    assert at(10.4) == []  # 24 minutes into the break: under the limit
    (open_,) = at(11.0)
    assert open_["rule"] == "long_break" and open_["resolved_at"] is None
    assert (open_["lon"], open_["lat"]) == (13.1, 52.4)  # the break's own position
    (ended,) = at(12.0)
    assert ended["alert_id"] == open_["alert_id"]
    assert ended["resolved_at"] == utc(11.5).isoformat()
