"""The simulator's entry point: many reps over many days, ready for the CLI to post."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.fieldday import Planner, RepDay, generate_rep_day
from simulator.ids import device_id_for
from simulator.noise import NoiseProfile
from simulator.truth import write_truth
from simulator.uploads import Upload, build_uploads, merge_uploads
from simulator.world import Rep, World, load_world, pick_reps


@dataclass
class SimulationResult:
    uploads: list[Upload]  # every upload of every device, ordered by send_at
    devices: list[tuple[str, str]]  # (device_id, rep_id), to register before posting
    truth: list[dict[str, Any]]  # one ground-truth record per rep-day

    @property
    def event_count(self) -> int:
        """Events in all uploads, resends included (what the server will be sent)."""
        return sum(len(u.events) for u in self.uploads)

    def write_truth(self, path: Path | str) -> int:
        return write_truth(path, self.truth)


def iter_rep_days(
    world: World, reps: list[Rep], days: int, start_date: dt.date, seed: int, noise: NoiseProfile
) -> Iterator[RepDay]:
    """Rep-days in (date, rep) order, generated lazily: for runs too big to hold at once.

    Every calendar day is a work day: the caller chooses the dates.
    """
    planner = Planner(world)
    for d in range(days):
        day = start_date + dt.timedelta(days=d)
        for rep in reps:
            yield generate_rep_day(planner, rep, day, seed, noise)


def uploads_for(rep_day: RepDay, seed: int, noise: NoiseProfile) -> list[Upload]:
    plan, phone = rep_day.plan, rep_day.phone
    return build_uploads(
        phone.events, plan.device_id, plan.rep.rep_id, seed=seed, day=plan.day, noise=noise,
        offline=phone.offline,
    )


def simulate(
    world_dir: Path,
    reps: int,
    days: int,
    start_date: dt.date,
    seed: int,
    noise: NoiseProfile,
) -> SimulationResult:
    """Simulate ``reps`` reps (spread over territories) for ``days`` days from ``start_date``.

    Deterministic: the same arguments give the same uploads, event ids and truth.
    """
    world = load_world(Path(world_dir))
    chosen = pick_reps(world, reps, seed)
    streams: list[list[Upload]] = []
    truth: list[dict[str, Any]] = []
    for rep_day in iter_rep_days(world, chosen, days, start_date, seed, noise):
        truth.append(rep_day.truth)
        streams.append(uploads_for(rep_day, seed, noise))
    return SimulationResult(
        uploads=list(merge_uploads(streams)),
        devices=[(device_id_for(r.rep_id), r.rep_id) for r in chosen],
        truth=truth,
    )
