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
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from processors.records import RepDay, Segment, SegmentKind
from processors.rep_day import local_day_bounds
from sinks.exceptions import SinkError

log = logging.getLogger(__name__)

Mode = Literal["keep", "coarsen", "drop"]
Window = tuple[dt.datetime, dt.datetime]

#: Mutations wait until every part (and replica) is rewritten, so a caller that reports
#: "redacted" or "erased" has the data gone when it returns.
MUTATION_SETTINGS: dict[str, Any] = {"mutations_sync": 2}

#: Redaction issues its mutations without waiting (milliseconds under the writer lock) and
#: waits for them outside the lock (:func:`apply_statements`), so intake inserts go on while
#: the parts are rewritten; a synchronous mutation held the lock for seconds.
_ASYNC_MUTATION: dict[str, Any] = {"mutations_sync": 0}
MUTATION_WAIT_S = 900.0
_MUTATION_POLL_S = 0.05


def _mutated_table(sql: str) -> str | None:
    """The table an ``ALTER TABLE <t> UPDATE/DELETE`` statement mutates; None otherwise."""
    words = sql.split(None, 4)
    if len(words) >= 4 and words[0].upper() == "ALTER" and words[1].upper() == "TABLE" \
            and words[3].upper() in ("UPDATE", "DELETE"):
        return words[2]
    return None


def wait_for_mutations(client: Any, tables: Sequence[str], lock: Any = None, *,
                       timeout_s: float = MUTATION_WAIT_S) -> None:
    """Return once no mutation of ``tables`` is pending; raise ``SinkError`` (with
    ClickHouse's reason) for a mutation that failed, or one still pending after
    ``timeout_s``. Each check is one short query under ``lock``."""
    if not tables:
        return
    names = "(" + ", ".join(sql_str(t) for t in sorted(set(tables))) + ")"
    sql = ("SELECT table, mutation_id, latest_fail_reason FROM system.mutations "
           f"WHERE database = currentDatabase() AND NOT is_done AND table IN {names}")
    deadline = time.monotonic() + timeout_s
    poll = _MUTATION_POLL_S
    while True:
        with lock or nullcontext():
            pending = client.query(sql).result_rows
        if not pending:
            return
        failed = [(t, m, r) for t, m, r in pending if r]
        if failed:
            t, m, r = failed[0]
            raise SinkError(f"mutation {m} of {t} failed: {r}"[:500])
        if time.monotonic() > deadline:
            raise SinkError(f"{len(pending)} mutations still pending after {timeout_s:.0f} s "
                            f"(first: {pending[0][1]} of {pending[0][0]})")
        time.sleep(poll)
        poll = min(poll * 2, 1.0)


def apply_statements(client: Any, stmts: Sequence[str], lock: Any = None) -> None:
    """Run redaction statements in order, as if each mutation were synchronous: mutations
    are issued without waiting, and before any other statement (an INSERT ... SELECT that
    reads what they rewrite) and at the end, they are waited for outside ``lock``."""
    pending: list[str] = []
    for sql in stmts:
        table = _mutated_table(sql)
        if table is None and pending:
            wait_for_mutations(client, pending, lock)
            pending = []
        with lock or nullcontext():
            client.command(sql, settings=_ASYNC_MUTATION if table else {"async_insert": 0})
        if table is not None:
            pending.append(table)
    wait_for_mutations(client, pending, lock)


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
    sweep_interval_s: float = Field(
        default=600.0, ge=0,
        description="How often a worker looks for closed rep-days whose positions were "
        "never redacted (closed while no worker ran, or the redaction failed) and redacts "
        "them; also about a minute after start. 0 turns the sweep off.")
    sweep_lookback_days: int = Field(
        default=35, ge=1, le=3660,
        description="Local days the sweep looks back over (older ones were redacted when "
        "they closed, or are older than any accepted event).")
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


#: Longest redaction statement built. ClickHouse parses at most ``max_query_size`` bytes of
#: a query (256 KiB by default), so a batch of rep-days is split into statements below this.
MAX_STATEMENT_CHARS = 200_000
#: Most reps in one statement (the per-row lookup grows with it).
MAX_BATCH_REPS = 500
_EVENT_EXTRA = ("accuracy_m = NULL, speed_mps = NULL, heading_deg = NULL, altitude_m = NULL, "
                "geo_account_id = NULL, geo_account_distance_m = NULL")


def photos_sql(windows: str, mode: Mode, decimals: int) -> str:
    """The ``photos`` JSON of a visit submission with the position of each photo taken in
    one of ``windows`` (an SQL array of (from, to) epoch milliseconds) coarsened or removed.
    A photo's time is its ``taken_at``, else the submission's ``ts``. The position object
    is flat (lat, lon, accuracy_m), so the first ``}`` after it closes it."""
    at = ("toUnixTimestamp64Milli(coalesce(parseDateTime64BestEffortOrNull("
          "JSONExtractString(p, 'taken_at'), 3, 'UTC'), ts))")
    key = "position(p, '\"position\":{')"
    if mode == "drop":
        new = "'\"position\":null'"
    else:
        new = ("concat('\"position\":{\"lat\":', toString(round(JSONExtractFloat(p, 'position', "
               f"'lat'), {int(decimals)})), ',\"lon\":', toString(round(JSONExtractFloat(p, "
               f"'position', 'lon'), {int(decimals)})), '}}')")
    redacted = (f"concat(substring(p, 1, {key} - 1), {new}, "
                f"substring(p, position(p, '}}', {key}) + 1))")
    inside = f"arrayExists(w -> {at} >= w.1 AND {at} < w.2, {windows})"
    return (f"concat('[', arrayStringConcat(arrayMap(p -> if({key} > 0 AND {inside}, "
            f"{redacted}, p), JSONExtractArrayRaw(photos)), ','), ']')")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _ms(t: dt.datetime) -> int:
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r}: times are UTC-aware")
    # floor, as sql_time truncates to the millisecond
    return (t - _EPOCH) // dt.timedelta(milliseconds=1)


def _ms_list(windows: Sequence[Window]) -> str:
    return "[" + ",".join(f"({_ms(a)},{_ms(b)})" for a, b in windows) + "]"


#: The tables holding stored segment positions (all created by the migrations):
#: ``visits_current`` too, because a mutation of ``segments_current`` does not reach the
#: materialized view that fills it.
SEGMENT_TABLES = ("segments_all", "segments_current", "visits_current")
#: The tables holding stored transition positions: every derivation, and the current ones
#: the ``transitions`` view reads (migration 8).
TRANSITION_TABLES = ("transitions_all", "transitions_current")


def redaction_batches(per_rep: Mapping[str, tuple[Sequence[Window], Sequence[Window] | None]],
                      mode: Mode, decimals: int, *,
                      segment_tables: Sequence[str] = ("segments_all",),
                      transition_tables: Sequence[str] = ("transitions_all",),
                      max_chars: int = MAX_STATEMENT_CHARS) -> list[tuple[list[str], list[str]]]:
    """ALTER ... UPDATE statements that redact many reps' stored positions at once.

    ``per_rep`` maps a rep to its off-duty windows and, optionally, the same in the phone's
    clock (:func:`event_time_windows`; the windows themselves when ``None``). Returns
    ``(reps, statements)`` batches, each one statement per table for many reps, under
    ``max_chars``: N rep-days cost a handful of mutations instead of four or more each.
    Same rules as :func:`redaction_statements`; the windows are constant arrays (epoch
    milliseconds) looked up by rep, which ClickHouse analyses much faster than an OR of
    per-rep conditions.
    """
    if mode == "keep":
        return []
    items: list[tuple[str, list[Window], list[Window], str, str]] = []
    for rep, (windows, event_windows) in per_rep.items():
        w = _merge(windows)
        if not w:
            continue
        ew = (_merge(event_windows) if event_windows is not None else []) or w
        items.append((rep, w, ew, _ms_list(w), _ms_list(ew)))
    groups: list[list[tuple[str, list[Window], list[Window], str, str]]] = []
    size = 0
    for it in items:
        n = len(sql_str(it[0])) + max(len(it[3]), len(it[4])) + 4
        if groups and size + n + 1000 <= max_chars and len(groups[-1]) < MAX_BATCH_REPS:
            groups[-1].append(it)
            size += n
        else:
            groups.append([it])
            size = n
    out = []
    pos = f"{_pos('lat', mode, decimals)}, {_pos('lon', mode, decimals)}"
    for g in groups:
        reps = [it[0] for it in g]
        names = "[" + ",".join(sql_str(r) for r in reps) + "]"
        idx = f"indexOf({names}, rep_id)"
        w_of = f"arrayElement([{','.join(it[3] for it in g)}], {idx})"
        ew_of = f"arrayElement([{','.join(it[4] for it in g)}], {idx})"
        ev_lo = sql_time(min(it[2][0][0] for it in g))
        ev_hi = sql_time(max(it[2][-1][1] for it in g))
        lo = sql_time(min(it[1][0][0] for it in g))
        hi = sql_time(max(it[1][-1][1] for it in g))

        def instant(col: str, windows: str) -> str:
            return (f"arrayExists(w -> toUnixTimestamp64Milli({col}) >= w.1 "
                    f"AND toUnixTimestamp64Milli({col}) < w.2, {windows})")

        # interval_is_off_duty: at least half of [start, end) in the windows; an instant
        # (end <= start) when it lies in one
        s, e = "toUnixTimestamp64Milli(start)", "toUnixTimestamp64Milli(`end`)"
        interval = (f"if(`end` > start, 2 * arraySum(w -> greatest(0, least({e}, w.2) - "
                    f"greatest({s}, w.1)), {w_of}) >= {e} - {s}, {instant('start', w_of)})")
        stmts = [f"ALTER TABLE events_all UPDATE {pos}, {_EVENT_EXTRA} "
                 f"WHERE has({names}, rep_id) AND kind IN ('ping', 'check_in') "
                 f"AND ts >= {ev_lo} AND ts < {ev_hi} AND {instant('ts', ew_of)}"]
        # photo positions of the closed days' visit submissions, each by its own time
        stmts.append(f"ALTER TABLE events_all UPDATE photos = "
                     f"{photos_sql(ew_of, mode, decimals)} WHERE has({names}, rep_id) "
                     f"AND kind = 'visit_submission' AND ts >= {ev_lo} AND ts < {ev_hi} "
                     f"AND position(photos, '\"position\":{{') > 0")
        stmts += [f"ALTER TABLE {table} UPDATE {pos}, place_distance_m = NULL, "
                  f"place_id = if(kind = 'stop', NULL, place_id), "
                  f"place_kind = if(kind = 'stop', NULL, place_kind) "
                  f"WHERE has({names}, rep_id) AND start < {hi} AND `end` >= {lo} "
                  f"AND {interval}" for table in segment_tables]
        # a transition's `at` is its fix's own ts (not clock-corrected), like events
        tr_when = (f"has({names}, rep_id) AND at >= {ev_lo} AND at < {ev_hi} "
                   f"AND {instant('at', ew_of)}")
        for table in transition_tables:
            stmts.append(f"ALTER TABLE {table} DELETE WHERE kind IN ('account_arrive', "
                         f"'account_leave') AND {tr_when}")
            stmts.append(f"ALTER TABLE {table} UPDATE {pos} WHERE {tr_when}")
        out.append((reps, stmts))
    return out


def redaction_statements(rep_id: str, windows: Sequence[Window], mode: Mode,
                         decimals: int, *,
                         event_windows: Sequence[Window] | None = None) -> list[str]:
    """ALTER ... UPDATE statements that redact one rep's stored positions in ``windows``.

    Run them with :data:`MUTATION_SETTINGS`. They are idempotent (rounding a rounded value,
    or nulling a null, changes nothing), so re-running after a crash is safe.

    * ``events_all``: pings and check-in positions whose ``ts`` is in a window (in
      ``event_windows`` when given: see :func:`event_time_windows`), and the photo
      positions of visit submissions taken in one (:func:`photos_sql`);
    * ``segments_all``: off-duty segments (:func:`interval_is_off_duty`), every version;
    * ``transitions_all``: positions of transitions whose ``at`` (a fix's own ts) is in an
      event window; off-duty account arrivals/leaves are deleted.

    ``rep_last_position_agg`` is refreshed separately (:func:`last_position_statements`):
    it holds the latest ping, which is on duty or replaced by the next ping, except when a
    rep's last ping before going idle was off duty. For many reps at once (what the
    worker runs) see :func:`redaction_batches`.
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
    photos = (f"ALTER TABLE events_all UPDATE photos = "
              f"{photos_sql(_ms_list(ev_windows), mode, decimals)} WHERE {rep} "
              f"AND kind = 'visit_submission' AND ts >= {sql_time(ev_windows[0][0])} "
              f"AND ts < {sql_time(ev_windows[-1][1])} "
              f"AND position(photos, '\"position\":{{') > 0")
    return [events, photos, segments, accounts, territories]


def last_position_statements(rep_id: str | Sequence[str]) -> list[str]:
    """Rebuild reps' rows of ``rep_last_position_agg`` from the (redacted) events.

    The rollup's states are written at insert time and mutations of ``events_all`` do not
    reach them, so when the latest stored ping of a rep lies in a redacted window (a rep
    idle since an off-duty ping), its row is deleted and re-aggregated. Aggregates are
    argMax, so a concurrent insert of the materialized view cannot be double-counted.
    """
    reps = [rep_id] if isinstance(rep_id, str) else list(rep_id)
    names = "(" + ", ".join(sql_str(r) for r in reps) + ")"
    return [
        f"ALTER TABLE rep_last_position_agg DELETE WHERE rep_id IN {names}",
        f"""INSERT INTO rep_last_position_agg SELECT rep_id,
       max(ts) AS last_ts,
       argMaxState(assumeNotNull(lat), ts) AS last_lat,
       argMaxState(assumeNotNull(lon), ts) AS last_lon,
       argMaxState(CAST(accuracy_m, 'Nullable(Float32)'), ts) AS last_accuracy_m,
       argMaxState(CAST(territory_id, 'Nullable(String)'), ts) AS last_territory_id
FROM events_all
WHERE rep_id IN {names} AND kind = 'ping' AND lat IS NOT NULL AND NOT is_mock
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
        if r["kind"] == "ping" and r.get("lat") is None:
            return False  # positions removed by `drop`: only a closed day has such pings
        when = r["started_at"] if r["kind"] == "visit_submission" else r["ts"]
        return day_bounds(when.astimezone(zone).date(), zone)[1] + late > wm

    return [r for r in rows if is_open(r)]


# -- at close (ClickHouse) ------------------------------------------------------------------
#: One row per rep-day that closed, with how it was redacted (sinks/migrations.py). The
#: sweep redacts closed rep-days without a row (or with a weaker mode); a rebuilt session
#: state starts at the newest ``watermark`` of its rep, so a closed day is not re-opened.
CLOSED_DAYS_TABLE = "closed_rep_days"
CLOSED_DAYS_COLUMNS = ["rep_id", "local_date", "watermark", "mode", "decimals", "closed_at"]
#: (rep, date) pairs per windows query.
_PAIRS_PER_QUERY = 2000


def _aware(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.replace(tzinfo=dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo is None
            else v for k, v in row.items()}


def _rows(client: Any, sql: str) -> list[dict[str, Any]]:
    res = client.query(sql)
    return [_aware(dict(zip(res.column_names, r, strict=True))) for r in res.result_rows]


def _pairs_sql(pairs: Sequence[tuple[str, dt.date]]) -> str:
    return "(rep_id, local_date) IN (" + ", ".join(
        f"({sql_str(r)}, '{d.isoformat()}')" for r, d in pairs) + ")"


def closed_day_windows_many(client: Any, closed: Mapping[str, tuple[str, Sequence[dt.date]]],
                            include_breaks: bool
                            ) -> dict[str, dict[dt.date, tuple[list[Window], list[Window]]]]:
    """Per rep and day: the off-duty windows from the stored final summary and breaks, and
    the same in the phone's clock (for events). ``closed`` maps a rep to its time zone
    (for a day without a stored summary) and days. A few queries for any number of days."""
    pairs = [(rep, d) for rep, (_, days) in closed.items() for d in days]
    summaries: dict[tuple[str, dt.date], RepDay] = {}
    breaks: dict[tuple[str, dt.date], list[Segment]] = {}
    for i in range(0, len(pairs), _PAIRS_PER_QUERY):
        where = _pairs_sql(pairs[i:i + _PAIRS_PER_QUERY])
        for r in _rows(client, f"SELECT * FROM rep_daily WHERE {where}"):
            summaries[(r["rep_id"], r["local_date"])] = RepDay.model_validate(r)
        for r in _rows(client, f"SELECT * FROM segments WHERE {where} AND kind = 'break'"):
            breaks.setdefault((r["rep_id"], r["local_date"]), []).append(
                Segment.model_validate(r))
    out: dict[str, dict[dt.date, tuple[list[Window], list[Window]]]] = {}
    for rep, d in pairs:
        summary = summaries.get((rep, d))
        bounds = day_bounds(d, summary.tz if summary is not None else closed[rep][0])
        segs = breaks.get((rep, d), [])
        out.setdefault(rep, {})[d] = (
            off_duty_windows(summary, segs, bounds, include_breaks),
            event_time_windows(summary, segs, bounds, include_breaks))
    return out


def closed_day_windows(client: Any, rep_id: str, tz: str, days: Sequence[dt.date],
                       include_breaks: bool) -> dict[dt.date, tuple[list[Window], list[Window]]]:
    """:func:`closed_day_windows_many` for one rep."""
    return closed_day_windows_many(client, {rep_id: (tz, days)}, include_breaks).get(rep_id, {})


def _utc(v: Any) -> dt.datetime | None:
    if not isinstance(v, dt.datetime):
        return None
    v = v.replace(tzinfo=dt.UTC) if v.tzinfo is None else v
    return v if v.year > 1970 else None


def redact_rep_days(client: Any, closed: Mapping[str, tuple[str, Sequence[dt.date]]],
                    privacy: PrivacySettings, *, lock: threading.Lock | None = None,
                    watermarks: Mapping[str, dt.datetime] | None = None,
                    max_chars: int = MAX_STATEMENT_CHARS) -> int:
    """Redact the stored off-duty positions of many closed rep-days and record them in
    ``closed_rep_days``; return the statements run (mutations, and the re-aggregation of
    ``rep_last_position_agg`` where needed).

    ``closed`` maps a rep to its time zone and closed days; ``watermarks`` the watermark
    that closed them (recorded; the day's end when not given). The statements are batched
    (:func:`redaction_batches`): a few mutations per table for any number of rep-days. The
    lock is held only to issue a statement or check progress (:func:`apply_statements`), so
    other writers interleave while parts are rewritten. Idempotent: running it twice
    changes nothing. Call it after the days' last update was written (blocking: run it in
    the ClickHouse executor).
    """
    closed = {rep: (tz, sorted(set(days))) for rep, (tz, days) in closed.items() if days}
    if not closed:
        return 0
    mode = privacy.off_duty_positions
    lock_cm = lock or nullcontext()
    per_day: dict[str, dict[dt.date, tuple[list[Window], list[Window]]]] = {}
    batches: list[tuple[list[str], list[str]]] = []
    if mode != "keep":
        with lock_cm:
            per_day = closed_day_windows_many(client, closed, privacy.include_breaks)
        per_rep = {rep: ([w for ws, _ in days.values() for w in ws],
                         [w for _, ws in days.values() for w in ws])
                   for rep, days in per_day.items()}
        batches = redaction_batches(per_rep, mode, privacy.coarsen_decimals,
                                    segment_tables=SEGMENT_TABLES,
                                    transition_tables=TRANSITION_TABLES, max_chars=max_chars)
    batched = {r for reps, _ in batches for r in reps}
    # reps without a window (nothing off duty) only get their marker rows
    batches += [([r for r in closed if r not in batched], [])]
    decimals = privacy.coarsen_decimals if mode == "coarsen" else 0
    statements = 0
    for reps, stmts in batches:
        if not reps:
            continue
        if stmts:
            # Every redacted rep's rollup row is rebuilt, not only where the latest ping is
            # off duty: each insert wrote its own argMax state, and the states of off-duty
            # pings stayed exact in the parts until a merge (issue 14). Deleting the rows
            # rewrites those parts.
            stmts = stmts + last_position_statements(reps)
            apply_statements(client, stmts, lock)
            statements += len(stmts)
        with lock_cm:
            now = dt.datetime.now(dt.UTC)
            rows = []
            for rep in reps:
                tz, days = closed[rep]
                for d in days:
                    end = day_bounds(d, tz)[1]
                    wm = (watermarks or {}).get(rep) or end
                    rows.append([rep, d, max(wm, end), mode, decimals, now])
            client.insert(CLOSED_DAYS_TABLE, rows, column_names=CLOSED_DAYS_COLUMNS,
                          settings={"async_insert": 0})
    log.info("closed %d rep-days of %d reps (%s): %d statements", sum(
        len(d) for _, d in closed.values()), len(closed), mode, statements)
    return statements


def redact_closed_days(client: Any, rep_id: str, tz: str, days: Sequence[dt.date],
                       privacy: PrivacySettings, *,
                       lock: threading.Lock | None = None) -> int:
    """Redact the stored off-duty positions of one rep's closed days; return statements run
    (:func:`redact_rep_days` for one rep)."""
    return redact_rep_days(client, {rep_id: (tz, days)}, privacy, lock=lock)


def closed_watermarks(client: Any, reps: Sequence[str]) -> dict[str, dt.datetime]:
    """The newest watermark that closed a day of each rep (reps without one are absent): a
    rebuilt session state starts there, so late events of a closed day stay ``too_late``."""
    out: dict[str, dt.datetime] = {}
    for i in range(0, len(reps), 1000):
        names = "(" + ", ".join(sql_str(r) for r in reps[i:i + 1000]) + ")"
        for rep, wm in client.query(f"SELECT rep_id, max(watermark) FROM {CLOSED_DAYS_TABLE} "
                                    f"WHERE rep_id IN {names} GROUP BY rep_id").result_rows:
            t = _utc(wm)
            if t is not None:
                out[rep] = t
    return out


def unredacted_closed_days(client: Any, privacy: PrivacySettings, lateness_s: float, *,
                           clock: Any = None, lookback_days: int | None = None,
                           limit: int = 20_000
                           ) -> dict[str, tuple[str, list[dt.date], dt.datetime]]:
    """Closed rep-days of ``rep_daily`` that have no ``closed_rep_days`` row for the current
    mode (never redacted: closed while no worker ran, or the redaction failed; or redacted
    in a weaker mode): rep -> (time zone, days, the watermark that closes them).

    A day is closed when its local end is ``lateness_s`` behind the rep's watermark: the
    newest stored ping of the rep (``rep_last_position_agg``), or ``clock(rep)`` when that
    is later (the session stage's idle clock, see streams/sessions.py); ``clock`` may
    return ``None``. Only days of the last ``lookback_days`` are looked at; at most
    ``limit`` rep-days are returned per call.
    """
    mode = privacy.off_duty_positions
    if mode == "keep":
        return {}
    if mode == "drop":
        done = "mode = 'drop'"
    else:
        done = f"mode = 'drop' OR (mode = 'coarsen' AND decimals <= {privacy.coarsen_decimals})"
    lookback = privacy.sweep_lookback_days if lookback_days is None else lookback_days
    sql = f"""
SELECT d.rep_id AS rep_id, d.local_date AS local_date, d.tz AS tz, w.wm AS wm
FROM (SELECT rep_id, local_date, tz FROM rep_daily
      WHERE local_date >= today() - {int(lookback)} AND local_date < today()) AS d
LEFT JOIN (SELECT rep_id, max(last_ts) AS wm FROM rep_last_position_agg GROUP BY rep_id) AS w
       ON d.rep_id = w.rep_id
WHERE (d.rep_id, d.local_date) NOT IN (SELECT rep_id, local_date
                                       FROM {CLOSED_DAYS_TABLE} FINAL WHERE {done})
ORDER BY d.local_date, d.rep_id"""
    late = dt.timedelta(seconds=lateness_s)
    out: dict[str, tuple[str, list[dt.date], dt.datetime]] = {}
    n = 0
    for rep, day, tz, wm in client.query(sql).result_rows:
        marks = [t for t in (_utc(wm), clock(rep) if clock is not None else None)
                 if t is not None]
        if not marks:
            continue
        mark = max(marks)
        if day_bounds(day, tz)[1] + late > mark:
            continue
        entry = out.setdefault(rep, (tz, [], mark))
        entry[1].append(day)
        n += 1
        if n >= limit:
            break
    return out


#: Rep-days one sweep redacts at most (a few batches of mutations; the rest waits for the
#: next sweep), so a sweep never holds the sessions stage for long.
SWEEP_MAX_DAYS = 2000


def sweep_closed_days(client: Any, privacy: PrivacySettings, lateness_s: float, *,
                      clock: Any = None, skip: Any = None,
                      lock: threading.Lock | None = None,
                      limit: int = SWEEP_MAX_DAYS) -> tuple[int, int]:
    """Redact closed rep-days that were never redacted (:func:`unredacted_closed_days`),
    at most ``limit``; ``skip(rep)`` leaves a rep out (one whose open days a session stage
    holds). Returns (rep-days, statements). Idempotent and safe to run from several
    workers at once."""
    with lock or nullcontext():
        found = unredacted_closed_days(client, privacy, lateness_s, clock=clock, limit=limit)
    if skip is not None:
        found = {r: v for r, v in found.items() if not skip(r)}
    if not found:
        return 0, 0
    mutations = redact_rep_days(client, {r: (tz, days) for r, (tz, days, _) in found.items()},
                                privacy, lock=lock,
                                watermarks={r: wm for r, (_, _, wm) in found.items()})
    days = sum(len(d) for _, d, _ in found.values())
    log.warning("privacy sweep: redacted %d closed rep-days that had not been redacted", days)
    return days, mutations


# -- events that never count -----------------------------------------------------------------
#: Position details removed from the payload of an event that never counts.
_PAYLOAD_DETAILS = ("accuracy_m", "speed_mps", "heading_deg", "altitude_m", "geo_account_id",
                    "geo_account_distance_m")


def _coarse_position(doc: dict[str, Any], mode: Mode, decimals: int) -> None:
    for k in ("lat", "lon"):
        v = doc.get(k)
        if isinstance(v, int | float):
            doc[k] = None if mode == "drop" else round(float(v), decimals)
    for k in _PAYLOAD_DETAILS:
        if doc.get(k) is not None:
            doc[k] = None


def redact_payload(payload: bytes, mode: Mode, decimals: int) -> bytes:
    """The JSON of an event that will never count (``too_late``, ``in_future``) with its
    positions coarsened or removed by the off-duty rule: the event's own, a check-in's
    ``position`` and every photo's. Kept as it is with ``keep`` or when it is not JSON."""
    if mode == "keep":
        return payload
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    if not isinstance(doc, dict):
        return payload
    _coarse_position(doc, mode, decimals)
    inner = [doc.get("position"), *[p.get("position") for p in doc.get("photos") or []
                                    if isinstance(p, dict)]]
    for pos in inner:
        if isinstance(pos, dict):
            _coarse_position(pos, mode, decimals)
    return orjson.dumps(doc)


def _copy_key(copy: tuple[str, Any, dt.datetime, dt.datetime]) -> str:
    rep, eid, ts, rcv = copy
    return f"({sql_str(rep)}, toUUID('{eid}'), {sql_time(ts)}, {sql_time(rcv)})"


def uncounted_delete_sql(copies: Sequence[tuple[str, Any, dt.datetime, dt.datetime]]) -> str:
    """Delete stored copies that never count: events dead-lettered by the sessions stage,
    and copies of an event id received again with another ``ts`` that lost to the first
    received (their sort key differs, so ReplacingMergeTree never folds them). Each copy is
    named by (rep, event id, ts, received_at), so the counted copy of the same event id and
    ts, received earlier, stays."""
    return _uncounted_delete(", ".join(_copy_key(c) for c in copies))


def _uncounted_delete(keys: str) -> str:
    return (f"ALTER TABLE events_all DELETE WHERE (rep_id, event_id, ts, received_at) "
            f"IN ({keys})")


def delete_uncounted(client: Any, copies: Sequence[tuple[str, Any, dt.datetime, dt.datetime]],
                     lock: threading.Lock | None = None, max_chars: int = 200_000) -> None:
    """Run :func:`uncounted_delete_sql` (blocking; the mutations are awaited outside the
    lock), in statements of at most ``max_chars`` characters of keys: ClickHouse refuses a
    query over max_query_size (256 KiB), and 2,000 keys of about 130 characters were over."""
    stmts: list[str] = []
    keys: list[str] = []
    size = 0
    for c in copies:
        key = _copy_key(c)
        if keys and size + len(key) + 2 > max_chars:
            stmts.append(_uncounted_delete(", ".join(keys)))
            keys, size = [], 0
        keys.append(key)
        size += len(key) + 2
    if keys:
        stmts.append(_uncounted_delete(", ".join(keys)))
    apply_statements(client, stmts, lock)
