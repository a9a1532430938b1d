"""Plan a rep's true field day: where they really were, and when.

The plan is the ground truth. It is drawn from its own random stream (seed, rep, date), so it
does not change with the noise profile. The phone's view of the day is rendered from it by
:mod:`simulator.phone`; :func:`generate_rep_day` does both.

A day: start work at home (a few minutes of preparation), sometimes a stint at the office,
then 4-8 customers, mostly clustered in the rep's own territory with the odd one across the
border, 10-60 min each; a lunch break around noon, at a cafe or parked by the road; maybe a
fuel stop; drive home, do the paperwork there and stop work.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from simulator.ids import device_id_for, sub_seed
from simulator.noise import NoiseProfile
from simulator.paths import LatLon, Trajectory, road_path
from simulator.phone import PhoneDay, render_phone_day
from simulator.plan import BREAK, OTHER, VISIT, DayPlan, TrueStop, TrueVisit
from simulator.truth import truth_record
from simulator.world import Account, Rep, World, distance_m, offset_point

MAX_VISITS = 8
FOREIGN_CANDIDATES = 300


class Planner:
    """Plans days over one world; caches the per-territory lookups that every day needs."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._own: dict[str, list[Account]] = {}
        self._all = world.customers()
        for a in self._all:
            self._own.setdefault(a.territory_id or "", []).append(a)
        self._offices = world.offices()
        self._foreign: dict[str, list[Account]] = {}

    def plan(self, rep: Rep, day: dt.date, seed: int) -> DayPlan:
        rng = random.Random(sub_seed(seed, "plan", rep.rep_id, day.isoformat()))
        tz = ZoneInfo(rep.tz)
        local_midnight = dt.datetime.combine(day, dt.time(0, 0), tzinfo=tz).timestamp()

        def local_hour(t: float) -> float:
            return (t - local_midnight) / 3600.0

        start = local_midnight + 7.5 * 3600 + rng.uniform(0, 75 * 60)
        home = rep.home
        home_pos = offset_point(home.lat, home.lon, rng.uniform(-10, 10), rng.uniform(-10, 10))
        traj = Trajectory()
        track_start = start - rng.uniform(0, 600)
        traj.start(track_start, home_pos)
        traj.start(start, home_pos)
        plan = DayPlan(rep, day, device_id_for(rep.rep_id), traj, start, start, track_start, 0.0)

        def stay(seconds: float, kind: str, place: str, acc: Account | None = None,
                 visit_id: str | None = None) -> None:
            t0 = traj.end
            traj.wait(seconds)
            lat, lon = traj.here
            aid = acc.account_id if acc else None
            plan.stops.append(TrueStop(t0, traj.end, lat, lon, kind, place, aid, visit_id))

        def go(to: LatLon) -> None:
            traj.drive(rng, road_path(rng, traj.here, to))

        stay(rng.uniform(5, 20) * 60, OTHER, "home", home)

        office = self._nearest_office(home_pos)
        if office is not None and rng.random() < 0.15:
            go(_park(rng, office))
            stay(rng.uniform(30, 75) * 60, OTHER, "office", office)

        n_planned = rng.randint(4, 8)
        customers = self._pick_customers(rng, rep, home_pos, n_planned)
        lunch_at = 11.75 + rng.uniform(0, 1.25)
        had_lunch = False
        fuel_after = rng.randrange(len(customers)) if customers and rng.random() < 0.25 else -1

        def lunch() -> None:
            cafe = rng.random() < 0.6
            dist = rng.uniform(300, 1500) if cafe else rng.uniform(100, 400)
            go(_around(rng, traj.here, dist))
            stay(rng.uniform(25, 60) * 60, BREAK, "cafe" if cafe else "roadside")

        for i, acc in enumerate(customers):
            if i >= n_planned and local_hour(traj.end) > 14.0:
                break  # the planned calls are done and it is late enough to go home
            if i >= 4 and local_hour(traj.end) > 17.0:
                break  # a long day: the remaining customers wait for tomorrow
            if not had_lunch and local_hour(traj.end) >= lunch_at:
                lunch()
                had_lunch = True
            go(_park(rng, acc))
            visit_id = f"v-{rep.rep_id}-{day:%Y%m%d}-{i + 1:02d}"
            arrive = traj.end
            stay(rng.triangular(10, 60, 40) * 60, VISIT, "customer", acc, visit_id)
            own = acc.territory_id == rep.territory_id
            plan.visits.append(TrueVisit(visit_id, acc, arrive, traj.end, own))
            if i == fuel_after:
                go(_around(rng, traj.here, rng.uniform(500, 2500)))
                stay(rng.uniform(5, 10) * 60, OTHER, "fuel")
        if not had_lunch:
            lunch()

        go(home_pos)
        # Reports and tomorrow's plan are done at home before signing off.
        stay(rng.uniform(5, 45) * 60, OTHER, "home", home)
        plan.workday_end = traj.end
        traj.wait(rng.uniform(0, 600))
        plan.track_end = traj.end
        return plan

    def _foreign_candidates(self, territory_id: str) -> list[Account]:
        """Customers of other territories nearest this one (cached: sorting all of them for
        every rep-day was a fifth of the generation time)."""
        cached = self._foreign.get(territory_id)
        if cached is None:
            own = self._own.get(territory_id) or self._all
            lat = sum(a.lat for a in own) / len(own)
            lon = sum(a.lon for a in own) / len(own)
            others = [a for a in self._all if a.territory_id != territory_id]
            others.sort(key=lambda a: distance_m(lat, lon, a.lat, a.lon))
            cached = self._foreign[territory_id] = others[:FOREIGN_CANDIDATES]
        return cached

    def _nearest_office(self, pos: LatLon) -> Account | None:
        best = min(self._offices, key=lambda a: distance_m(pos[0], pos[1], a.lat, a.lon),
                   default=None)
        if best is None or distance_m(pos[0], pos[1], best.lat, best.lon) > 40_000:
            return None
        return best

    def _pick_customers(
        self, rng: random.Random, rep: Rep, home: LatLon, planned: int
    ) -> list[Account]:
        """Up to 8 customers around a focus account, about one in eight across the border.

        Reps plan area days, so a day clusters around one customer rather than spanning the
        whole territory; foreign picks are the ones nearest that area, as in real life. The
        first ``planned`` form the tour from home; the rest continue it and are only visited
        when the planned calls end early (a short day gets filled, up to 8 calls).
        """
        own = self._own.get(rep.territory_id) or self._all
        n = MAX_VISITS
        focus = rng.choice(own)

        def near(cands: list[Account], k: int) -> list[Account]:
            return sorted(cands, key=lambda a: distance_m(focus.lat, focus.lon, a.lat, a.lon))[:k]

        own_pool = near(own, 15)
        foreign_pool = near(self._foreign_candidates(rep.territory_id), 8)
        chosen: list[Account] = []
        seen: set[str] = set()
        for _ in range(n * 4):
            if len(chosen) == n:
                break
            pool = foreign_pool if foreign_pool and rng.random() < 0.12 else own_pool
            acc = rng.choice(pool)
            if acc.account_id not in seen:
                seen.add(acc.account_id)
                chosen.append(acc)
        tour = _nearest_neighbour_tour(home, chosen[:planned])
        if tour:
            home = (tour[-1].lat, tour[-1].lon)
        return tour + _nearest_neighbour_tour(home, chosen[planned:])


def _nearest_neighbour_tour(start: LatLon, accounts: list[Account]) -> list[Account]:
    left, tour, here = list(accounts), [], start
    while left:
        nxt = min(left, key=lambda a: distance_m(here[0], here[1], a.lat, a.lon))
        left.remove(nxt)
        tour.append(nxt)
        here = (nxt.lat, nxt.lon)
    return tour


def _park(rng: random.Random, acc: Account) -> LatLon:
    """Where the car stands: inside the account's radius, rarely on the centre point."""
    r = acc.radius_m * 0.5 * math.sqrt(rng.random())
    a = rng.uniform(0, 2 * math.pi)
    return offset_point(acc.lat, acc.lon, r * math.cos(a), r * math.sin(a))


def _around(rng: random.Random, pos: LatLon, dist_m: float) -> LatLon:
    a = rng.uniform(0, 2 * math.pi)
    return offset_point(pos[0], pos[1], dist_m * math.cos(a), dist_m * math.sin(a))


@dataclass
class RepDay:
    """One simulated rep-day: the plan (truth), the phone's events and the truth record."""

    plan: DayPlan
    phone: PhoneDay
    truth: dict[str, Any]


def generate_rep_day(
    planner: Planner, rep: Rep, day: dt.date, seed: int, noise: NoiseProfile
) -> RepDay:
    """Plan the true day, render the phone's view of it and build the truth record."""

    plan = planner.plan(rep, day, seed)
    phone = render_phone_day(plan, seed, noise)
    territory = planner.world.territories.get(rep.territory_id)
    return RepDay(plan, phone, truth_record(plan, phone, territory))
