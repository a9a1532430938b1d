"""Off-duty positions: what is stored outside a rep's work day, and at what precision.

Works councils ask first whether the system tracks reps after hours. It stores their
positions at full precision only inside the work day (and, by default, outside breaks):

* when a rep-day **closes** (its local end is ``sessions.lateness_s`` behind the rep's
  watermark, 36 h by default), :func:`redact_closed_days` rewrites that rep-day's stored
  positions outside work time: rounded to ``coarsen_decimals`` (about 1 km at 2) or removed
  (``drop``: only the territory stays). Until then a late check-in can still move the work
  day, so the full positions are kept that long;
* records published on ``field.segments`` and ``field.transitions`` are redacted before they
  are sent (:func:`redact_segments_for_topic`, :func:`redact_transitions_for_topic`), with
  the work day as derived at that moment.

The window and statement builders are pure; only :func:`redact_closed_days` talks to
ClickHouse. See docs/privacy.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from processors.records import RepDay, Segment, SegmentKind
from processors.rep_day import local_day_bounds

log = logging.getLogger(__name__)

Mode = Literal["keep", "coarsen", "drop"]
Window = tuple[dt.datetime, dt.datetime]

#: Mutations wait until every part (and replica) is rewritten, so a caller that reports
#: "redacted" or "erased" has the data gone when it returns.
MUTATION_SETTINGS: dict[str, Any] = {"mutations_sync": 2}


class PrivacySettings(BaseModel):
    """Positions outside work time, erasure (docs/privacy.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    off_duty_positions: Mode = Field(
        default="coarsen",
        description="Positions outside the rep's work day (and breaks, see `include_breaks`) "
        "once the rep-day closes, and on field.segments / field.transitions: `keep` (full "
        "precision), `coarsen` (lat/lon rounded to `coarsen_decimals`; speed, heading, "
        "altitude, accuracy and nearest-account fields removed) or `drop` (lat/lon removed; "
        "the territory stays).")
    coarsen_decimals: int = Field(
        default=2, ge=0, le=5,
        description="Decimal places kept by `coarsen`: 2 = about 1.1 km of latitude, "
        "1 = about 11 km.")
    include_breaks: bool = Field(
        default=True, description="Treat breaks inside the work day as off duty too.")
    admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the worker's POST /v1/admin/erase (secret); `geotel reps "
        "erase` sends it. Unset: the endpoint is disabled, and erasing needs the service "
        "stopped (embedded chDB) or direct access to the ClickHouse server.")


def privacy_settings(settings: Any) -> PrivacySettings:
    """The ``privacy`` section of the settings object (defaults when it has none)."""
    section = getattr(settings, "privacy", None)
    return section if isinstance(section, PrivacySettings) else PrivacySettings()


# -- windows (pure) ----------------------------------------------------------------------
def day_bounds(local_date: dt.date, tz: str | ZoneInfo) -> Window:
    """[start, end) of the rep's local day in UTC (23 or 25 hours on DST days)."""
    return local_day_bounds(local_date, ZoneInfo(tz) if isinstance(tz, str) else tz)


def _merge(windows: Sequence[Window]) -> list[Window]:
    out: list[Window] = []
    for a, b in sorted(w for w in windows if w[1] > w[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def off_duty_windows(summary: RepDay | None, segments: Sequence[Segment],
                     day_bounds: Window, include_breaks: bool) -> list[Window]:
    """The parts of the local day ``day_bounds`` outside work time, sorted and merged.

    Outside ``[workday_start, workday_end)`` is off duty, and so are the break segments when
    ``include_breaks``. A day without a work day (no summary, a missing or empty bound) is
    off duty as a whole.

    >>> utc = dt.UTC
    >>> day = (dt.datetime(2025, 3, 3, tzinfo=utc), dt.datetime(2025, 3, 4, tzinfo=utc))
    >>> off_duty_windows(None, [], day, True) == [day]
    True
    """
    lo, hi = day_bounds
    start = summary.workday_start if summary is not None else None
    end = summary.workday_end if summary is not None else None
    if start is None or end is None:
        return [(lo, hi)]
    ws, we = max(start, lo), min(end, hi)
    if we <= ws:
        return [(lo, hi)]
    windows: list[Window] = [(lo, ws), (we, hi)]
    if include_breaks:
        windows += [(max(s.start, ws), min(s.end, we)) for s in segments
                    if s.kind is SegmentKind.break_]
    return _merge(windows)


def event_time_windows(summary: RepDay | None, segments: Sequence[Segment],
                       day_bounds: Window, include_breaks: bool) -> list[Window]:
    """:func:`off_duty_windows` in the phone's clock, for matching stored event times.

    Work-day and break times are clock-corrected (``RepDay.clock_offset_s`` is added to
    the phone's times); stored ``ts`` are not. The work day and breaks move back by the
    offset, the local day's bounds stay.
    """
    off = dt.timedelta(seconds=summary.clock_offset_s if summary is not None else 0.0)
    if summary is None or not off:
        return off_duty_windows(summary, segments, day_bounds, include_breaks)
    moved = summary.model_copy(update={
        "workday_start": summary.workday_start - off if summary.workday_start else None,
        "workday_end": summary.workday_end - off if summary.workday_end else None})
    breaks = [s.model_copy(update={"start": s.start - off, "end": s.end - off})
              for s in segments]
    return off_duty_windows(moved, breaks, day_bounds, include_breaks)


def in_windows(t: dt.datetime, windows: Sequence[Window]) -> bool:
    return any(a <= t < b for a, b in windows)


def interval_is_off_duty(start: dt.datetime, end: dt.datetime,
                         windows: Sequence[Window]) -> bool:
    """An interval is off duty when at least half of it lies in the windows (an instant:
    when it lies in one). A stop at a customer that runs a few minutes past the end of the
    work day keeps its position; the stop at home after it does not."""
    if end <= start:
        return in_windows(start, windows)
    off = sum(max(0.0, (min(end, b) - max(start, a)).total_seconds()) for a, b in windows)
    return 2 * off >= (end - start).total_seconds()


# -- derived records for the topics (pure) ------------------------------------------------
def _coarse(v: float | None, mode: Mode, decimals: int) -> float | None:
    if v is None or mode == "drop":
        return None
    return round(v, decimals)


def redact_segments_for_topic(segments: Sequence[Segment], windows: Sequence[Window],
                              mode: Mode, decimals: int) -> list[Segment]:
    """Segments as they may leave the worker: the position of an off-duty segment
    (:func:`interval_is_off_duty`) is coarsened or dropped, its distance to a place removed,
    and a plain stop loses its place label (a visit keeps its account). Use the same list
    for ``segments_all`` and ``field.segments``."""
    if mode == "keep" or not windows:
        return list(segments)
    out = []
    for s in segments:
        if not interval_is_off_duty(s.start, s.end, windows):
            out.append(s)
            continue
        upd: dict[str, Any] = {"lon": _coarse(s.lon, mode, decimals),
                               "lat": _coarse(s.lat, mode, decimals),
                               "place_distance_m": None}
        if s.kind is SegmentKind.stop:
            upd.update(place_id=None, place_kind=None)
        out.append(s.model_copy(update=upd))
    return out


_T = TypeVar("_T", bound=BaseModel)
_ACCOUNT_TRANSITIONS = ("account_arrive", "account_leave")


def redact_transitions_for_topic(transitions: Sequence[_T], windows: Sequence[Window],
                                 mode: Mode, decimals: int) -> list[_T]:
    """Transitions as they may leave the worker: off duty (``at`` in a window), territory
    changes keep only a coarsened position (or none), account arrivals/leaves are left out."""
    if mode == "keep" or not windows:
        return list(transitions)
    out = []
    for t in transitions:
        at: dt.datetime = t.at  # type: ignore[attr-defined]
        if not in_windows(at, windows):
            out.append(t)
        elif str(t.kind) not in _ACCOUNT_TRANSITIONS:  # type: ignore[attr-defined]
            out.append(t.model_copy(update={
                "lon": _coarse(t.lon, mode, decimals),  # type: ignore[attr-defined]
                "lat": _coarse(t.lat, mode, decimals)}))  # type: ignore[attr-defined]
    return out


# -- ClickHouse statements (pure) ------------------------------------------------------------
def sql_str(v: str) -> str:
    """A ClickHouse string literal."""
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_time(t: dt.datetime) -> str:
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r}: times are UTC-aware")
    stamp = t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"toDateTime64('{stamp}', 3, 'UTC')"


def _instant_sql(col: str, windows: Sequence[Window]) -> str:
    return "(" + " OR ".join(f"({col} >= {sql_time(a)} AND {col} < {sql_time(b)})"
                             for a, b in windows) + ")"


def _interval_sql(windows: Sequence[Window]) -> str:
    """SQL twin of :func:`interval_is_off_duty` over columns ``start`` and ``end``."""
    off = " + ".join(
        f"greatest(0, dateDiff('millisecond', greatest(start, {sql_time(a)}), "
        f"least(`end`, {sql_time(b)})))" for a, b in windows)
    return (f"((`end` > start AND 2 * ({off}) >= dateDiff('millisecond', start, `end`)) "
            f"OR (`end` <= start AND {_instant_sql('start', windows)}))")


def _pos(col: str, mode: Mode, decimals: int) -> str:
    return f"{col} = NULL" if mode == "drop" else f"{col} = round({col}, {int(decimals)})"


def redaction_statements(rep_id: str, windows: Sequence[Window], mode: Mode,
                         decimals: int, *,
                         event_windows: Sequence[Window] | None = None) -> list[str]:
    """ALTER ... UPDATE statements that redact one rep's stored positions in ``windows``.

    Run them with :data:`MUTATION_SETTINGS`. They are idempotent (rounding a rounded value,
    or nulling a null, changes nothing), so re-running after a crash is safe.

    * ``events_all``: pings and check-in positions whose ``ts`` is in a window (in
      ``event_windows`` when given: see :func:`event_time_windows`);
    * ``segments_all``: off-duty segments (:func:`interval_is_off_duty`), every version;
    * ``transitions_all``: positions of transitions whose ``at`` (a fix's own ts) is in an
      event window; off-duty account arrivals/leaves are deleted.

    ``rep_last_position_agg`` is refreshed separately (:func:`last_position_statements`):
    it holds the latest ping, which is on duty or replaced by the next ping, except when a
    rep's last ping before going idle was off duty.
    """
    if mode == "keep" or not windows:
        return []
    windows = _merge(windows)
    ev_windows = _merge(event_windows) if event_windows is not None else windows
    rep = f"rep_id = {sql_str(rep_id)}"
    lo, hi = sql_time(windows[0][0]), sql_time(windows[-1][1])
    extra = ("accuracy_m = NULL, speed_mps = NULL, heading_deg = NULL, altitude_m = NULL, "
             "geo_account_id = NULL, geo_account_distance_m = NULL")
    events = (f"ALTER TABLE events_all UPDATE {_pos('lat', mode, decimals)}, "
              f"{_pos('lon', mode, decimals)}, {extra} "
              f"WHERE {rep} AND kind IN ('ping', 'check_in') AND {_instant_sql('ts', ev_windows)}")
    # The time range first: it prunes by the sort key before the per-window arithmetic.
    seg_where = f"{rep} AND start < {hi} AND `end` >= {lo} AND {_interval_sql(windows)}"
    segments = (f"ALTER TABLE segments_all UPDATE {_pos('lat', mode, decimals)}, "
                f"{_pos('lon', mode, decimals)}, place_distance_m = NULL, "
                f"place_id = if(kind = 'stop', NULL, place_id), "
                f"place_kind = if(kind = 'stop', NULL, place_kind) WHERE {seg_where}")
    # a transition's `at` is its fix's own ts (not clock-corrected), like events
    tr_when = f"{rep} AND {_instant_sql('at', ev_windows)}"
    accounts = ("ALTER TABLE transitions_all DELETE WHERE kind IN ('account_arrive', "
                f"'account_leave') AND {tr_when}")
    territories = (f"ALTER TABLE transitions_all UPDATE {_pos('lat', mode, decimals)}, "
                   f"{_pos('lon', mode, decimals)} WHERE {tr_when}")
    return [events, segments, accounts, territories]


def last_position_statements(rep_id: str) -> list[str]:
    """Rebuild one rep's row of ``rep_last_position_agg`` from the (redacted) events.

    The rollup's states are written at insert time and mutations of ``events_all`` do not
    reach them, so when the latest stored ping of a rep lies in a redacted window (a rep
    idle since an off-duty ping), its row is deleted and re-aggregated. Aggregates are
    argMax, so a concurrent insert of the materialized view cannot be double-counted.
    """
    rep = sql_str(rep_id)
    return [
        f"ALTER TABLE rep_last_position_agg DELETE WHERE rep_id = {rep}",
        f"""INSERT INTO rep_last_position_agg SELECT rep_id,
       max(ts) AS last_ts,
       argMaxState(assumeNotNull(lat), ts) AS last_lat,
       argMaxState(assumeNotNull(lon), ts) AS last_lon,
       argMaxState(CAST(accuracy_m, 'Nullable(Float32)'), ts) AS last_accuracy_m,
       argMaxState(CAST(territory_id, 'Nullable(String)'), ts) AS last_territory_id
FROM events_all
WHERE rep_id = {rep} AND kind = 'ping' AND lat IS NOT NULL AND NOT is_mock
GROUP BY rep_id""",
    ]


def open_day_rows(rows: Sequence[dict[str, Any]], tz: str | ZoneInfo,
                  lateness_s: float) -> list[dict[str, Any]]:
    """Stored events (``sinks.rows.stored_event`` dicts) of the rep-days still open, judged
    against the newest ``ts`` among them, the rep's watermark.

    Rebuilding a rep's session state must skip closed days: their events may be redacted
    (a dropped ping has no position and is no valid event), and they must not be derived
    and published again.
    """
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    if not rows:
        return []
    wm = max(r["ts"] for r in rows)
    late = dt.timedelta(seconds=lateness_s)

    def is_open(r: dict[str, Any]) -> bool:
        when = r["started_at"] if r["kind"] == "visit_submission" else r["ts"]
        return day_bounds(when.astimezone(zone).date(), zone)[1] + late > wm

    return [r for r in rows if is_open(r)]


# -- at close (ClickHouse) ------------------------------------------------------------------
def _aware(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.replace(tzinfo=dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo is None
            else v for k, v in row.items()}


def _rows(client: Any, sql: str) -> list[dict[str, Any]]:
    res = client.query(sql)
    return [_aware(dict(zip(res.column_names, r, strict=True))) for r in res.result_rows]


def closed_day_windows(client: Any, rep_id: str, tz: str, days: Sequence[dt.date],
                       include_breaks: bool) -> dict[dt.date, tuple[list[Window], list[Window]]]:
    """Per day: the off-duty windows from the stored final summary and breaks, and the
    same in the phone's clock (for events)."""
    dates = "(" + ",".join(f"'{d.isoformat()}'" for d in days) + ")"
    where = f"rep_id = {sql_str(rep_id)} AND local_date IN {dates}"
    summaries = {r["local_date"]: RepDay.model_validate(r)
                 for r in _rows(client, f"SELECT * FROM rep_daily WHERE {where}")}
    breaks: dict[dt.date, list[Segment]] = {}
    for r in _rows(client, f"SELECT * FROM segments WHERE {where} AND kind = 'break'"):
        breaks.setdefault(r["local_date"], []).append(Segment.model_validate(r))
    out = {}
    for d in days:
        summary = summaries.get(d)
        bounds = day_bounds(d, summary.tz if summary is not None else tz)
        segs = breaks.get(d, [])
        out[d] = (off_duty_windows(summary, segs, bounds, include_breaks),
                  event_time_windows(summary, segs, bounds, include_breaks))
    return out


def redact_closed_days(client: Any, rep_id: str, tz: str, days: Sequence[dt.date],
                       privacy: PrivacySettings, *,
                       lock: threading.Lock | None = None) -> int:
    """Redact the stored off-duty positions of closed rep-days; return statements run.

    Call it after the days' last update was written (blocking: run it in the ClickHouse
    executor). ``tz`` is the rep's time zone, used for a day without a stored summary.
    """
    mode = privacy.off_duty_positions
    if mode == "keep" or not days:
        return 0
    with lock or nullcontext():
        per_day = closed_day_windows(client, rep_id, tz, days, privacy.include_breaks)
        windows = [w for ws, _ in per_day.values() for w in ws]
        event_windows = [w for _, ws in per_day.values() for w in ws]
        stmts = redaction_statements(rep_id, windows, mode, privacy.coarsen_decimals,
                                     event_windows=event_windows)
        last = client.query(
            f"SELECT max(last_ts) FROM rep_last_position_agg WHERE rep_id = {sql_str(rep_id)}"
        ).result_rows
        last_ts = last[0][0] if last and last[0][0] is not None else None
        if isinstance(last_ts, dt.datetime) and last_ts.tzinfo is None:
            last_ts = last_ts.replace(tzinfo=dt.UTC)
        if last_ts is not None and last_ts.year > 1970 and in_windows(last_ts, event_windows):
            stmts += last_position_statements(rep_id)
        for sql in stmts:
            client.command(sql, settings=MUTATION_SETTINGS)
    log.info("redacted off-duty positions of %s on %s (%s)", rep_id,
             ", ".join(d.isoformat() for d in days), mode)
    return len(stmts)
