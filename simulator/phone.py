"""Render the phone's view of a planned day: pings, check-ins and visit submissions.

Each event is the exact wire JSON of ``schemas.events`` plus the true instant the phone
recorded it (which drives upload timing). Noise comes from the profile through its own
random stream; cadence and form contents come from a "phone" stream that does not depend on
the profile, so ``clean()`` and ``realistic()`` runs of one seed describe the same visits.

Event ids are uuid5 of a meaningful key (``rep:date:ping:17``), so an event keeps its id
whether or not noise removed its neighbours.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from simulator.forms import submission_fields
from simulator.ids import event_id, event_namespace, sub_seed
from simulator.noise import NoiseProfile
from simulator.paths import Trajectory, road_path
from simulator.world import offset_point

if TYPE_CHECKING:
    from simulator.plan import DayPlan


@dataclass(frozen=True, slots=True)
class PhoneEvent:
    recorded_at: float  # true UTC epoch seconds when the phone created the event
    payload: dict[str, Any]  # wire JSON, ready for {"events": [...]}


@dataclass
class PhoneDay:
    events: list[PhoneEvent]
    clock_skew_s: float
    offline: list[tuple[float, float]] = field(default_factory=list)
    missing_checkins: list[str] = field(default_factory=list)
    pings_scheduled: int = 0
    pings_recorded: int = 0
    no_speed: bool = False
    off_duty_pings: int = 0  # recorded at home off duty (indoors) and on a night trip
    night_trip: tuple[float, float] | None = None


def device_clock_skew_s(seed: int, device_id: str, noise: NoiseProfile) -> float:
    """Constant per device (not per day): a phone's clock is wrong the same way every day."""
    return noise.clock_skew_s(random.Random(sub_seed(seed, "skew", device_id)))


def render_phone_day(plan: DayPlan, seed: int, noise: NoiseProfile) -> PhoneDay:
    rep_id, device_id, day = plan.rep.rep_id, plan.device_id, plan.day.isoformat()
    prng = random.Random(sub_seed(seed, "phone", rep_id, day))
    nrng = random.Random(sub_seed(seed, "noise", rep_id, day))
    ns = event_namespace(seed).bytes
    skew = device_clock_skew_s(seed, device_id, noise)
    tz = ZoneInfo(plan.rep.tz)
    # One fixed offset per day: DST switches happen at night, never inside a workday.
    noon = dt.datetime.combine(plan.day, dt.time(12), tzinfo=tz)
    offset = dt.timezone(noon.utcoffset() or dt.timedelta(0))
    traj = plan.trajectory
    out = PhoneDay(events=[], clock_skew_s=skew)

    def stamp(true_t: float) -> str:
        return dt.datetime.fromtimestamp(true_t + skew, offset).isoformat(timespec="milliseconds")

    def envelope(key: str, kind: str, true_t: float) -> dict[str, Any]:
        return {
            "event_id": event_id(ns, f"{rep_id}:{day}:{key}"),
            "device_id": device_id, "rep_id": rep_id, "kind": kind, "ts": stamp(true_t),
        }

    def position(true_t: float) -> dict[str, Any]:
        lat, lon, _, _ = traj.sample(true_t)
        f = noise.fix(nrng, lat, lon)
        return {"lat": round(f.lat, 6), "lon": round(f.lon, 6), "accuracy_m": f.accuracy_m}

    # Off-duty recording, speedless phones: drawn from a stream of their own, so the
    # profiles without them render the same events as before they existed.
    orng = random.Random(sub_seed(seed, "offduty", rep_id, day))
    out.no_speed = orng.random() < noise.no_speed_prob

    # -- pings -------------------------------------------------------------------------
    battery = prng.uniform(70, 100)
    t, k = plan.track_start, 0
    while t <= plan.track_end:
        lat, lon, speed, heading = traj.sample(t)
        moving = speed > 0
        out.pings_scheduled += 1
        # Drawn even for dropped pings so the phone stream does not depend on the noise.
        altitude, speed_err = 40 + prng.gauss(0, 5), prng.gauss(0, 0.4)
        if nrng.random() >= noise.missing_ping_prob:
            f = noise.fix(nrng, lat, lon)
            p = envelope(f"ping:{k}", "ping", t)
            p.update(lat=round(f.lat, 6), lon=round(f.lon, 6), accuracy_m=f.accuracy_m,
                     provider=f.provider, is_mock=f.is_mock,
                     battery_pct=round(max(5.0, battery - (t - plan.track_start) / 720), 1),
                     altitude_m=round(altitude, 1))
            # cell/wifi fixes, and some phones, carry no speed or bearing
            if f.provider != "network" and not out.no_speed:
                p["speed_mps"] = round(max(0.0, speed + speed_err) if moving else 0.0, 2)
                if moving:
                    p["heading_deg"] = round(heading, 1)
            out.events.append(PhoneEvent(t, p))
            out.pings_recorded += 1
        t += (prng.uniform(noise.ping_moving_min_s, noise.ping_moving_max_s) if moving
              else prng.uniform(noise.ping_stopped_min_s, noise.ping_stopped_max_s))
        k += 1

    # -- check-ins -----------------------------------------------------------------------
    def check_in(action: str, true_t: float, missing_prob: float, **extra: Any) -> None:
        key = f"{action}:{extra.get('visit_id') or int(true_t)}"
        if nrng.random() < missing_prob:
            out.missing_checkins.append(key)
            return
        e = envelope(f"check_in:{key}", "check_in", true_t)
        e["action"] = action
        e["position"] = position(true_t)
        e.update({k: v for k, v in extra.items() if v is not None})
        out.events.append(PhoneEvent(true_t, e))

    first_home, last_home = plan.stops[0], plan.stops[-1]
    check_in("workday_start", first_home.start + prng.uniform(0, 60),
             noise.missing_workday_start_prob)
    visit_times: dict[str, tuple[float, float]] = {}
    for s in plan.stops:
        if s.kind == "visit":
            vs = s.start + prng.uniform(0, 120)
            ve = max(vs + 30, s.end - prng.uniform(0, 60))
            visit_times[s.visit_id or ""] = (vs, ve)
            ids = {"account_id": s.account_id, "visit_id": s.visit_id}
            check_in("visit_start", vs, noise.missing_visit_checkin_prob, **ids)
            check_in("visit_end", ve, noise.missing_visit_checkin_prob, **ids)
        elif s.kind == "break":
            bs = s.start + prng.uniform(0, 60)
            check_in("break_start", bs, noise.missing_break_checkin_prob)
            check_in("break_end", max(bs + 30, s.end - prng.uniform(0, 60)),
                     noise.missing_break_checkin_prob)
    check_in("workday_end", last_home.end - prng.uniform(0, 60), noise.missing_workday_end_prob)

    # -- visit submissions: filled in the car after the visit -----------------------------
    for v in plan.visits:
        vs, ve = visit_times[v.visit_id]
        shots = sorted(prng.uniform(vs, ve) for _ in range(prng.choice((0, 1, 1, 2, 3))))
        body = submission_fields(
            prng, v.account.account_id, v.visit_id, [stamp(x) for x in shots],
            [position(x) for x in shots],
        )
        sent = ve + prng.uniform(60, 600)
        if nrng.random() < noise.missing_submission_prob:
            continue
        e = envelope(f"visit_submission:{v.visit_id}", "visit_submission", sent)
        e.update(started_at=stamp(vs), ended_at=stamp(ve), **body)
        out.events.append(PhoneEvent(sent, e))

    # -- offline: events still recorded, uploads wait (see simulator.uploads) -------------
    if nrng.random() < noise.offline_day_prob:
        span = max(0.0, plan.workday_end - plan.workday_start - noise.offline_duration_s)
        start = plan.workday_start + nrng.uniform(0, span)
        out.offline.append((start, start + noise.offline_duration_s))

    if orng.random() < noise.off_duty_home_prob:
        _off_duty(plan, noise, orng, out, envelope, battery)

    out.events.sort(key=lambda e: e.recorded_at)
    return out


def _off_duty(plan: DayPlan, noise: NoiseProfile, rng: random.Random, out: PhoneDay,
              envelope: Any, battery: float) -> None:
    """The phone recording off duty: at home indoors from local midnight to the work day
    and from it to the next midnight, and maybe a night trip (recorded outdoors)."""
    tz = ZoneInfo(plan.rep.tz)
    lo = dt.datetime.combine(plan.day, dt.time(0), tzinfo=tz).timestamp()
    hi = dt.datetime.combine(plan.day + dt.timedelta(days=1), dt.time(0), tzinfo=tz).timestamp()
    traj = plan.trajectory
    home_am = traj.sample(plan.track_start)[:2]
    home_pm = traj.sample(plan.track_end)[:2]
    trip: Trajectory | None = None
    if rng.random() < noise.night_trip_prob:
        evening = rng.random() < 0.5
        t0 = lo + (rng.uniform(21.5, 23.5) if evening else rng.uniform(1.0, 4.0)) * 3600
        home = home_pm if evening else home_am
        trip = Trajectory()
        trip.start(t0, home)
        ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(2000, 10000)
        dest = offset_point(home[0], home[1], dist * math.cos(ang), dist * math.sin(ang))
        trip.drive(rng, road_path(rng, home, dest))
        trip.wait(rng.uniform(10, 60) * 60)
        trip.drive(rng, road_path(rng, dest, home))
        if (trip.end >= hi - 60 or (evening and t0 < plan.track_end + 1800)
                or (not evening and trip.end > plan.track_start - 1800)):
            trip = None
        else:
            out.night_trip = (t0, trip.end)
    k = 0

    def record(t: float, lat: float, lon: float, indoor: bool, speed: float | None,
               heading: float | None) -> None:
        nonlocal k
        f = noise.fix(rng, lat, lon, indoor=indoor)
        p = envelope(f"ping:offduty:{k}", "ping", t)
        p.update(lat=round(f.lat, 6), lon=round(f.lon, 6), accuracy_m=f.accuracy_m,
                 provider=f.provider, is_mock=False, battery_pct=round(battery, 1))
        if speed is not None and f.provider != "network" and not out.no_speed:
            p["speed_mps"] = round(speed, 2)
            if heading is not None and speed > 0:
                p["heading_deg"] = round(heading, 1)
        out.events.append(PhoneEvent(t, p))
        out.off_duty_pings += 1
        k += 1

    for a, b, home in ((lo, plan.track_start, home_am), (plan.track_end, hi, home_pm)):
        t = a + rng.uniform(0, noise.indoor_ping_max_s)
        while t < b:
            if out.night_trip is None or not out.night_trip[0] <= t <= out.night_trip[1]:
                record(t, home[0], home[1], True, None, None)
            t += rng.uniform(noise.indoor_ping_min_s, noise.indoor_ping_max_s)
    if trip is not None and out.night_trip is not None:
        t = out.night_trip[0]
        while t <= out.night_trip[1]:
            lat, lon, speed, heading = trip.sample(t)
            record(t, lat, lon, False, speed, heading)
            t += (rng.uniform(noise.ping_moving_min_s, noise.ping_moving_max_s) if speed > 0
                  else rng.uniform(noise.ping_stopped_min_s, noise.ping_stopped_max_s))
