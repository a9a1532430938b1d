"""The workload: simulated field days as the phones uploaded them, and their ground truth.

Every upload is kept, resends included, and each of its events is stamped with
``received_at = send_at`` as the ingest does, so the processors see what production sees.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.events import EVENT_ADAPTER
from simulator import NoiseProfile, simulate

AnyEvent = Any  # processors.rep_day.AnyEvent; kept loose so this module stays import-light


@dataclass(frozen=True, slots=True)
class RepUploads:
    """One rep's uploads in send order (raw wire dicts), its time zone and its truth."""

    rep_id: str
    tz: str
    uploads: list[tuple[dt.datetime, list[dict[str, Any]]]]
    truth: list[dict[str, Any]]  # one record per rep-day, by date


def simulate_reps(world: Path, reps: int, days: int, start: dt.date, seed: int,
                  noise: NoiseProfile) -> tuple[list[RepUploads], dict[str, int]]:
    """Simulate and split per rep; the counts say how much noise the run holds."""
    res = simulate(world, reps=reps, days=days, start_date=start, seed=seed, noise=noise)
    by_rep: dict[str, list[tuple[dt.datetime, list[dict[str, Any]]]]] = {}
    for u in res.uploads:  # already ordered by send_at
        by_rep.setdefault(u.rep_id, []).append((u.send_at, u.events))
    truth: dict[str, list[dict[str, Any]]] = {}
    for t in res.truth:
        truth.setdefault(t["rep_id"], []).append(t)
    out = [RepUploads(rep, truth[rep][0]["tz"], by_rep.get(rep, []),
                      sorted(truth[rep], key=lambda t: t["date"]))
           for rep in sorted(truth)]
    counts = {
        "rep_days": len(res.truth),
        "uploads": len(res.uploads),
        "resent_uploads": sum(u.resend for u in res.uploads),
        "events_sent": res.event_count,
        "offline_days": sum(bool(t["phone"]["offline"]) for t in res.truth),
        "true_visits": sum(len(t["visits"]) for t in res.truth),
    }
    return out, counts


def parse_upload(send_at: dt.datetime, events: Iterable[dict[str, Any]]) -> list[AnyEvent]:
    """Wire dicts -> event models, each stamped with the upload's receive time."""
    stamp = send_at.astimezone(dt.UTC).isoformat()
    return [EVENT_ADAPTER.validate_python({**e, "received_at": stamp}) for e in events]
