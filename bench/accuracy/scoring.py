"""Scoring derived rep-days against the simulator's ground truth.

* visits: a derived visit (verified or automatic) matches a true visit of the same account
  whose interval it overlaps; pairs are taken one-to-one, largest overlap first. Precision
  = matched / derived, recall = matched / true, over all rep-days pooled;
* work-day start/end: absolute error in minutes per rep-day; median and 95th percentile;
* field time and distance: absolute error in % of the true figure per rep-day; median.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.accuracy.ours import DayFigures


def _t(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def match_visits(derived: list[tuple[str, float, float]], true: list[dict[str, Any]]
                 ) -> tuple[int, list[int], list[int]]:
    """(matched pairs, indexes of unmatched derived, indexes of unmatched true visits).

    >>> match_visits([("A", 0, 10), ("A", 12, 20), ("B", 0, 5)],
    ...              [{"account_id": "A", "start": "1970-01-01T00:00:01Z",
    ...                "end": "1970-01-01T00:00:15Z"}])
    (1, [1, 2], [])
    """
    pairs = []
    for i, (acc, s, e) in enumerate(derived):
        for j, v in enumerate(true):
            if v["account_id"] != acc:
                continue
            ov = min(e, _t(v["end"])) - max(s, _t(v["start"]))
            if ov > 0:
                pairs.append((ov, i, j))
    used_d: set[int] = set()
    used_t: set[int] = set()
    for _, i, j in sorted(pairs, reverse=True):
        if i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
    return (len(used_d), [i for i in range(len(derived)) if i not in used_d],
            [j for j in range(len(true)) if j not in used_t])


@dataclass
class DayScore:
    rep_id: str
    date: str
    tags: list[str]  # the noise that hit this day (offline, missing check-ins, ...)
    tp: int
    n_derived: int
    n_true: int
    start_err_min: float  # signed: derived - true (nan when no work day was derived)
    end_err_min: float
    field_err_pct: float  # signed
    distance_err_pct: float  # signed
    missed: list[str] = field(default_factory=list)  # true visits not found
    spurious: list[str] = field(default_factory=list)  # derived visits matching none


def noise_tags(truth: dict[str, Any]) -> list[str]:
    phone = truth.get("phone") or {}
    tags = []
    if phone.get("offline"):
        tags.append("offline")
    missing = [str(m) for m in phone.get("missing_checkins") or []]  # "action:key"
    for key in ("workday_start", "workday_end"):
        if any(m.startswith(key) for m in missing):
            tags.append(f"no_{key}")
    if any(m.startswith("visit_") for m in missing):
        tags.append("no_visit_checkin")
    if any(m.startswith("break_") for m in missing):
        tags.append("no_break_checkin")
    if truth.get("office_s", 0) > 0:
        tags.append("office")
    if truth.get("other_stop_s", 0) > 0:
        tags.append("fuel")
    if phone.get("night_trip"):
        tags.append("night_trip")
    return tags


def score_day(rep_id: str, truth: dict[str, Any], got: DayFigures | None) -> DayScore:
    true_visits = truth["visits"]
    tags = noise_tags(truth)
    nan = float("nan")
    if got is None:
        return DayScore(rep_id, truth["date"], [*tags, "not_derived"], 0, 0, len(true_visits),
                        nan, nan, nan, nan, missed=[v["account_id"] for v in true_visits])
    tp, spurious, missed = match_visits(got.visits, true_visits)

    def minutes(derived: float | None, true_iso: str) -> float:
        return nan if derived is None else (derived - _t(true_iso)) / 60.0

    def pct(derived: float, true: float) -> float:
        return (derived - true) / true * 100.0 if true > 0 else nan

    return DayScore(
        rep_id, truth["date"], tags, tp, len(got.visits), len(true_visits),
        minutes(got.start, truth["workday_start"]), minutes(got.end, truth["workday_end"]),
        pct(got.field_s, truth["field_s"]), pct(got.distance_m, truth["distance_m"]),
        missed=[true_visits[j]["account_id"] for j in missed],
        spurious=[got.visits[i][0] for i in spurious])


def _abs(scores: list[DayScore], attr: str) -> np.ndarray:
    v = np.abs(np.array([getattr(s, attr) for s in scores], dtype=float))
    return v[np.isfinite(v)]


def summarise(scores: list[DayScore]) -> dict[str, float]:
    """The RESULT figures of one system over all scored rep-days."""
    tp = sum(s.tp for s in scores)
    nd = sum(s.n_derived for s in scores)
    nt = sum(s.n_true for s in scores)
    precision = tp / nd if nd else 0.0
    recall = tp / nt if nt else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    def q(attr: str, p: float) -> float:
        v = _abs(scores, attr)
        return float(np.percentile(v, p)) if len(v) else float("nan")

    return {
        "visit_f1": f1, "visit_precision": precision, "visit_recall": recall,
        "workday_start_median_err_min": q("start_err_min", 50),
        "workday_start_p95_err_min": q("start_err_min", 95),
        "workday_end_median_err_min": q("end_err_min", 50),
        "workday_end_p95_err_min": q("end_err_min", 95),
        "field_time_err_pct": q("field_err_pct", 50),
        "distance_err_pct": q("distance_err_pct", 50),
    }


def breakdown(scores: list[DayScore], attr: str) -> list[tuple[str, int, float, float]]:
    """Per noise tag (and ``clean`` for days without any): (tag, days, median |err|, p95)."""
    groups: dict[str, list[DayScore]] = {"all": scores}
    for s in scores:
        for tag in s.tags or ["clean"]:
            groups.setdefault(tag, []).append(s)
    out = []
    for tag, group in sorted(groups.items()):
        v = _abs(group, attr)
        if len(v):
            out.append((tag, len(v), float(np.median(v)), float(np.percentile(v, 95))))
    return out
