"""Session-derivation settings: one frozen object, every field with its unit and default.

The defaults are argued in ``docs/sessions.md``. The streams layer builds one
:class:`SessionParams` at its entry point (from its own settings) and passes it down; nothing
here reads the environment.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SessionParams(BaseModel):
    """Knobs of GPS filtering, stop/visit/travel detection and work-day derivation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # -- GPS filter ---------------------------------------------------------------------
    max_accuracy_m: float = Field(
        100.0, gt=0, description="Fixes whose reported accuracy (68% radius) is worse than "
        "this are dropped (reason bad_accuracy). Cell/Wi-Fi fixes are usually 150 m or worse.")
    max_speed_mps: float = Field(
        70.0, gt=0, description="Implied speed between two fixes, beyond both accuracy "
        "radii, above which the pair is inconsistent (about 250 km/h).")
    jump_max_points: int = Field(
        5, ge=1, le=20, description="Longest run of consecutive inconsistent fixes that is "
        "dropped as an outlier (reason speed_jump); a longer run is kept as real.")
    spike_min_excess_m: float = Field(
        250.0, gt=0, description="A single fix whose detour (d(a,x)+d(x,b)-d(a,b)) over its "
        "neighbours exceeds this is a position spike (reason spike), even when the implied "
        "speed looks plausible.")
    spike_max_window_s: float = Field(
        600.0, gt=0, description="Spike test applies only when the two neighbours are at "
        "most this far apart in time.")
    max_future_s: float = Field(
        300.0, ge=0, description="Events whose ts is more than this after their received_at "
        "are rejected (reason in_future); they never advance the watermark.")
    clock_correction: bool = Field(
        True, description="Estimate each device's clock offset per rep-day as the minimum "
        "of received_at - ts and shift its event times by it.")
    max_clock_correction_s: float = Field(
        300.0, ge=0, description="Offsets larger than this (offline days) are not corrected.")
    # -- stops and travel ---------------------------------------------------------------
    stop_radius_m: float = Field(
        100.0, gt=0, description="A stop is a run of fixes within this distance of their "
        "running centroid (trackintel 100 m; Traccar 200 m).")
    stop_min_duration_s: float = Field(
        180.0, gt=0, description="Minimum span of a stop (Traccar 180 s; trackintel 300 s); "
        "shorter halts (traffic lights) stay travel.")
    stop_excursion_max_s: float = Field(
        180.0, ge=0, description="Fixes that leave the stop radius but return within this "
        "time are outliers of the stop, not a departure.")
    stop_max_gap_s: float = Field(
        14_400.0, gt=0, description="Longest gap between two fixes at the same place that "
        "is still bridged as one stop (phone asleep or indoors).")
    stop_merge_gap_s: float = Field(
        900.0, ge=0, description="Two stops whose centroids are within stop_radius_m and "
        "whose gap is at most this are merged (a GPS excursion split one stay).")
    travel_max_gap_s: float = Field(
        900.0, gt=0, description="Longest gap between fixes still counted as travel; longer "
        "gaps are unknown time (field time, but neither travel nor stop).")
    gap_travel_speed_mps: float = Field(
        30.0, gt=0, description="Two stops with no fix between them (back to back): the "
        "move between them lasts the straight line at this speed (at most the interval "
        "between the two fixes), centred on its midpoint, never 0 s. A fast speed (108 "
        "km/h) takes the least from the stops' midpoint estimates.")
    travel_min_step_m: float = Field(
        20.0, ge=0, description="Distance is summed between fixes at least this far apart "
        "(and at least their summed accuracy), so jitter adds no distance.")
    speed_integration_max_dt_s: float = Field(
        180.0, ge=0, description="Doppler speeds of fixes at most this far apart are "
        "integrated (trapezoid) for the distance between them, kept within the straight "
        "line +- the fixes' accuracy and turn_max_ratio; 0 = straight lines only.")
    turn_max_ratio: float = Field(
        1.5, ge=1.0, description="When the headings of two consecutive fixes show a turn, "
        "their distance is the path through the corner; no leg is counted longer than this "
        "times the straight line (a right-angle corner is 1.41x); 1 = straight lines only.")
    # -- places and visits --------------------------------------------------------------
    default_place_radius_m: float = Field(
        100.0, gt=0, description="Geofence radius of a place that has none of its own.")
    visit_min_duration_s: float = Field(
        240.0, ge=0, description="A stop inside a customer geofence becomes an automatic "
        "visit when it lasts at least this.")
    verify_tolerance_m: float = Field(
        50.0, ge=0, description="Added to the place radius when GPS confirms a visit "
        "(typical fix accuracy).")
    verify_slack_s: float = Field(
        120.0, ge=0, description="Pings this long before/after a check-in visit still count "
        "towards its verification; stops this close in time may be merged with it.")
    verify_min_pings: int = Field(
        1, ge=1, description="Near pings needed to verify an explicit visit without a stop.")
    verify_min_fraction: float = Field(
        0.5, ge=0, le=1, description="Share of the visit's pings that must be near the "
        "place to verify it without a stop.")
    # -- work day -----------------------------------------------------------------------
    day_idle_s: float = Field(
        3600.0, gt=0, description="A stay of at least this long anywhere but a customer or "
        "office (home included) that opens (closes) the day's data is off duty: an inferred "
        "work day starts at the departure from it (ends at the arrival); shorter stays at "
        "either end count as work.")
    day_idle_radius_m: float = Field(
        250.0, gt=0, description="Consecutive stops within this distance of the first of "
        "them, with no fix farther away in between, are one stay (home split into stops by "
        "indoor noise or sparse pings) for the off-duty rule.")
    day_gap_s: float = Field(
        10_800.0, gt=0, description="A stretch without data of at least this (outside any "
        "stop) ends an activity session: it never bounds an inferred work day from inside, "
        "and inside the work day it is off duty (break), not field time.")
    night_start_h: float = Field(
        21.0, ge=0, le=24, description="Local hour from which activity is night: an "
        "off-duty stay reaching into the night is where the rep spends it, and a session "
        "entirely at night without a customer/office stop or work check-in is not work.")
    night_end_h: float = Field(
        5.0, ge=0, le=24, description="Local hour at which the night ends (see "
        "night_start_h).")
    break_infer_min_s: float = Field(
        1200.0, gt=0, description="On a day without break check-ins, the longest stop away "
        "from customers, office and home of at least this is taken as the (inferred) break.")
    break_infer_max_s: float = Field(
        7200.0, gt=0, description="An inferred break lasts at most this: a longer stay at "
        "an unknown place is work there (an office the place set does not know).")
    break_window_start_h: float = Field(
        10.0, ge=0, le=24, description="An inferred break has its middle between this "
        "local hour and break_window_end_h.")
    break_window_end_h: float = Field(
        17.0, ge=0, le=24, description="See break_window_start_h.")
    infer_breaks: bool = Field(True, description="Enable the inferred break above.")
    # -- streaming ----------------------------------------------------------------------
    lateness_s: float = Field(
        129_600.0, ge=0, description="Events older than the rep's watermark minus this are "
        "rejected (reason too_late); a rep-day closes when its local end is this far "
        "behind the watermark (36 h: a phone offline for a whole shift).")


DEFAULT_PARAMS = SessionParams()
