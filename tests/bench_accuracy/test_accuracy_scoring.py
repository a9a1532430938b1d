"""The accuracy harness's visit matching and summary figures."""

from __future__ import annotations

import math

from bench.accuracy.ours import DayFigures
from bench.accuracy.scoring import match_visits, score_day, summarise

T0 = 1_790_000_000.0


def _iso(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _truth(visits: list[tuple[str, float, float]]) -> dict[str, object]:
    return {"date": "2026-11-02", "workday_start": _iso(T0), "workday_end": _iso(T0 + 8 * 3600),
            "field_s": 6 * 3600.0, "distance_m": 40_000.0,
            "visits": [{"account_id": a, "start": _iso(T0 + s), "end": _iso(T0 + e)}
                       for a, s, e in visits],
            "phone": {"missing_checkins": ["workday_end:123"], "offline": []}}


def test_matching_is_one_to_one_by_account_and_overlap() -> None:
    true = _truth([("A", 0, 600), ("A", 900, 1500), ("B", 2000, 2600)])["visits"]
    derived = [("A", T0 + 100, T0 + 1400), ("A", T0 + 950, T0 + 1450), ("C", T0 + 2000,
                                                                       T0 + 2600)]
    tp, spurious, missed = match_visits(derived, true)  # type: ignore[arg-type]
    # The long derived visit overlaps both true A visits; each true visit is used once.
    assert tp == 2 and spurious == [2] and missed == [2]


def test_score_and_summary() -> None:
    truth = _truth([("A", 0, 600)])
    got = DayFigures(start=T0 + 60, end=T0 + 8 * 3600 - 120, field_s=6 * 3600 * 1.01,
                     distance_m=39_000.0, visits=[("A", T0 + 30, T0 + 610)])
    s = score_day("rep-1", truth, got)
    assert s.tags == ["no_workday_end"]
    assert (s.start_err_min, s.end_err_min) == (1.0, -2.0)
    assert math.isclose(s.field_err_pct, 1.0) and math.isclose(s.distance_err_pct, -2.5)
    fig = summarise([s, score_day("rep-2", truth, None)])
    assert fig["visit_precision"] == 1.0 and fig["visit_recall"] == 0.5
    assert fig["workday_start_median_err_min"] == 1.0  # the underived day has no error
