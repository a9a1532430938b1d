"""Time every query of docs/analysts.md on a team-sized synthetic history in chDB.

Fills a fresh chDB directory with the geotel schema (sinks.migrations) and synthetic data
shaped like the pipeline's output for ``--reps`` reps over ``--days`` days:

* ``rep_daily``: one row per rep-day; ``segments``: 20 per rep-day (8 visits, 9 travel,
  2 stops, 1 break); ``transitions``: 4 per rep-day (one into a foreign territory). As in
  the pipeline, each rep-day is derived ``DERIVATIONS`` (5) times as its day goes on: every
  derivation writes its summary, transitions (``transitions_all`` and
  ``transitions_current``) and segments (``segments_all`` and ``segments_current``), ids
  stay stable, and each derivation but the last has a provisional stop the next one
  retracts (a tombstone in ``segments_current``). A visit segment carries its form's facts, and the
  materialized view copies the visits and tombstones to ``visits_current``, as the
  pipeline's writes do. Every partition of the derived tables but the newest is then
  merged, as background merges leave a running store (``--unmerged``: not);
* ``events``: a visit form (visit_submission) per visit for every day, and pings every
  60 s of a 10-hour day for the last ``--ping-days`` days (the "right now" and
  account-territory queries read pings; older pings would be the bulk of a real store);
* ``accounts``: 40 customers per territory; ``rep_territories``: each rep assigned one of
  50 territories;
* ``deadletters``: 5,000 rows.

The data is generated inside ClickHouse (INSERT ... SELECT over ``numbers()``), so the fill
takes seconds. Each query then runs once to warm up and ``--runs`` times; the median is
printed. Run::

    python examples/cookbook_timing.py                 # 1,000 reps x 90 days
    python examples/cookbook_timing.py --markdown      # the table for docs/analysts.md
    python examples/cookbook_timing.py --compare       # + the visits view of migration 4
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "analysts.md"

_BLOCK = re.compile(r"^### (.+?)\n(?:(?!^### ).)*?^```sql\n(.*?)^```", re.S | re.M)


def cookbook(path: Path = DOC) -> list[tuple[str, str]]:
    """(question, sql) of every ```sql block, in document order."""
    return [(q.strip(), sql.strip()) for q, sql in _BLOCK.findall(path.read_text())]


#: A rep-day's final derivation: 20 segments, 700 events (its version).
SEGMENTS = 20
EVENTS = 700
#: How often each rep-day is derived (the pipeline re-derives as uploads arrive).
DERIVATIONS = 5


def _rep(r: str) -> str:
    return f"concat('rep-', leftPad(toString({r} + 1), 4, '0'))"


def _seg_id(family: int, idx: str) -> str:
    """A segment id stable across derivations (the pipeline's are uuid5 of kind and start)."""
    return (f"toUUID(concat(leftPad(hex(toUInt32(r)), 8, '0'), '-{family:04d}-4000-8000-',"
            f" leftPad(hex(toUInt64(d * 100 + {idx})), 12, '0')))")


SEGMENT_COLS = ("segment_id, rep_id, local_date, kind, start, end, duration_s, workday_s, lon,"
                " lat, distance_m, place_id, place_kind, visit_id, visit_source, verified,"
                " place_distance_m, submission_event_id, inferred, n_pings, version")
#: segments_current also has is_deleted and, on a visit, its submission's facts (the
#: pipeline's Segment fields; the visits_current materialized view copies the visits).
CURRENT_COLS = (f"{SEGMENT_COLS}, is_deleted, outcome, order_currency, order_total, tags, form,"
                " notes, photo_count")
#: The form columns of a segment without a form (and of a tombstone).
NO_FORM = "NULL, NULL, NULL, [], map(), '', 0"


#: A visit's outcome and form answers (per rep, day and visit k), and its tags.
FORM_FACTS = """['order_placed', 'follow_up', 'no_decision', 'not_interested'][
                         cityHash64(r, d, k, 'o') % 4 + 1] AS oc,
                     if(cityHash64(r, d, k, 'c') % 2 = 0,
                        map('competitor_seen', ['Acme', 'Globex', 'Initech'][
                            cityHash64(r, d, k, 'c') % 3 + 1]),
                        map()) AS frm"""
TAGS = ("arrayConcat(if(frm['competitor_seen'] = '', [], "
        "[concat('competitor:', frm['competitor_seen'])]), ['need:delivery'])")


def fill_statements(reps: int, days: int, ping_days: int,
                    derivations: int = DERIVATIONS) -> list[str]:
    rd = f"(SELECT number % {reps} AS r, intDiv(number, {reps}) AS d FROM numbers({reps * days}))"
    # Per rep-day pseudo-random but repeatable figures.
    h = "cityHash64(r, d)"
    territory = "concat('T', leftPad(toString(r % 50 + 1), 2, '0'))"
    account = ("concat('A', leftPad(toString((r % 50) * 40 + cityHash64(r, d, k) % 40 + 1),"
               " 4, '0'))")
    start = (f"toDateTime64(today() - d, 3, 'UTC') + toIntervalSecond(5 * 3600 + 1800"
             f" + {h} % 7200)")
    sub_id = ("toUUID(concat(leftPad(hex(toUInt32(r)), 8, '0'), '-0000-4000-8000-',"
              " leftPad(hex(toUInt64(d * 100 + k)), 12, '0')))")
    per = SEGMENTS // derivations  # segments a derivation adds
    stmts: list[str] = []
    for j in range(1, derivations + 1):
        ver = EVENTS * j // derivations  # version = size of the event set so far
        final = j == derivations
        n_seg = SEGMENTS if final else per * j
        stmts.append(f"""INSERT INTO rep_daily_all (day_id, rep_id, local_date, tz, workday_start,
            workday_end, workday_start_inferred, workday_end_inferred, workday_s, field_s,
            travel_s, customer_s, stopped_other_s, unknown_s, break_s, office_home_s,
            in_territory_s, out_territory_s, distance_m, visits, verified_visits,
            unverified_visits, auto_visits, pings_kept, pings_dropped, clock_offset_s,
            events, version)
        SELECT toUUID(concat(leftPad(hex(toUInt32(r)), 8, '0'), '-0003-4000-8000-',
                             leftPad(hex(toUInt64(d)), 12, '0'))), {_rep('r')}, today() - d,
               'Europe/Berlin', ws,
               ws + toIntervalSecond(toInt64(wd)), {h} % 10 = 0, {h} % 7 = 0, wd,
               wd - 3600, 0.2 * wd, 0.5 * wd, 0.05 * wd, 0.02 * wd, 2400, 1200,
               0.85 * (wd - 3600), 0.15 * (wd - 3600), 20000 + {h} % 60000, 8,
               8 - toUInt16({h} % 3 = 0), toUInt16({h} % 3 = 0), toUInt16({h} % 4 = 0),
               600, map('bad_accuracy', toUInt32({h} % 30), 'spike', toUInt32({h} % 5)),
               toFloat32({h} % 40 - 20), {ver}, {ver}
        FROM (SELECT r, d, {start} AS ws,
                     toFloat64(7 * 3600 + {h} % 10800) * {j} / {derivations} AS wd
              FROM {rd})""")
        # The derivation's segments: the day so far (ids stable across derivations), and,
        # before the last derivation, a provisional stop at the end of the day so far that
        # the next derivation replaces (its id is retracted).
        live = f"""SELECT {_seg_id(1, 'k')}, {_rep('r')}, today() - d,
               multiIf(k < 8, 'visit', k < 17, 'travel', k < 19, 'stop', 'break'),
               st, st + toIntervalSecond(dur), dur, dur,
               13.0 + (r % 50) * 0.02, 52.3 + (r % 7) * 0.05,
               if(k >= 8 AND k < 17, 2000 + cityHash64(r, d, k) % 8000, 0),
               if(k < 8, {account}, NULL), if(k < 8, 'customer', NULL),
               if(k < 8, concat('v-', toString(r), '-', toString(d), '-', toString(k)), NULL),
               if(k < 8, if(cityHash64(r, d, k) % 9 = 0, 'auto', 'check_in'), NULL),
               if(k < 8, cityHash64(r, d, k) % 17 != 0, NULL),
               if(k < 8, toFloat32(cityHash64(r, d, k) % 120), NULL),
               if(k < 8, {sub_id}, NULL), false, 20, {ver}{{flag}}
        FROM (SELECT r, d, k, {start} + toIntervalSecond(k * 1200) AS st,
                     toFloat64(600 + cityHash64(r, d, k) % 2400) AS dur, {FORM_FACTS}
              FROM {rd} ARRAY JOIN range({n_seg}) AS k)"""
        # The visit's form facts, as the visit_submission events below have them.
        facts = ("if(k < 8, oc, NULL), if(k < 8 AND oc = 'order_placed', 'EUR', NULL), "
                 "if(k < 8 AND oc = 'order_placed', "
                 "toDecimal64(cityHash64(r, d, k) % 200000 / 100, 4), NULL), "
                 f"if(k < 8, {TAGS}, []), if(k < 8, frm, map()), '', toUInt16(k < 8)")
        provisional = f"""SELECT {_seg_id(2, str(j))}, {_rep('r')}, today() - d, 'stop',
               st, st + toIntervalSecond(600), 600, 600, 13.0 + (r % 50) * 0.02,
               52.3 + (r % 7) * 0.05, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, 5,
               {ver}{{flag}}
        FROM (SELECT r, d, {start} + toIntervalSecond({n_seg} * 1200) AS st FROM {rd})"""
        stmts.append(f"INSERT INTO segments_all ({SEGMENT_COLS})\n        " + (
            live if final else f"{live}\n        UNION ALL\n        {provisional}"
        ).format(flag=""))
        current = live.format(flag=f", 0, {facts}")
        if not final:
            current += f"\n        UNION ALL\n        {provisional.format(flag=', 0, ' + NO_FORM)}"
        if j > 1:  # the tombstone of the previous derivation's provisional stop
            current += f"""
        UNION ALL
        SELECT {_seg_id(2, str(j - 1))}, {_rep('r')}, today() - d, 'stop',
               toDateTime64(0, 3, 'UTC'), toDateTime64(0, 3, 'UTC'), 0, 0, NULL, NULL, 0,
               NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, 0, {ver}, 1, {NO_FORM}
        FROM {rd}"""
        stmts.append(f"INSERT INTO segments_current ({CURRENT_COLS})\n        {current}")
        for table, flag in (("transitions_all", ""), ("transitions_current", ", 0")):
            stmts.append(f"""INSERT INTO {table} (transition_id, rep_id, local_date, kind,
            subject_id, at, lon, lat, geo_version, version{", is_deleted" if flag else ""})
        SELECT toUUID(concat(leftPad(hex(toUInt32(r)), 8, '0'), '-0004-4000-8000-',
                             leftPad(hex(toUInt64(d * 100 + k)), 12, '0'))),
               {_rep('r')}, today() - d,
               ['territory_enter', 'territory_exit', 'territory_enter', 'account_arrive'][k + 1],
               if(k = 2, concat('T', leftPad(toString((r + 1) % 50 + 1), 2, '0')),
                  if(k = 3, {account}, {territory})),
               {start} + toIntervalSecond(k * 3000), 13.0, 52.5, 1, {ver}{flag}
        FROM {rd} ARRAY JOIN range({min(4, j)}) AS k""")
    stmts += [
        f"""INSERT INTO events_all (event_id, rep_id, device_id, kind, ts, received_at,
            account_id, visit_id, started_at, ended_at, outcome, notes, form, tags,
            photo_count, photos, order_currency, order_total, order_lines, geo_version)
        SELECT {sub_id}, {_rep('r')}, concat('dev-', {_rep('r')}), 'visit_submission',
               st + toIntervalSecond(2400), st + toIntervalSecond(2500), {account},
               concat('v-', toString(r), '-', toString(d), '-', toString(k)),
               st, st + toIntervalSecond(2400), oc, '', frm,
               {TAGS},
               1, '[]', if(oc = 'order_placed', 'EUR', NULL),
               if(oc = 'order_placed', toDecimal64(cityHash64(r, d, k) % 200000 / 100, 4),
                  NULL), '[]', 1
        FROM (SELECT r, d, k, {start} + toIntervalSecond(k * 1200) AS st, {FORM_FACTS}
              FROM {rd} ARRAY JOIN range(8) AS k)""",
        f"""INSERT INTO events_all (event_id, rep_id, device_id, kind, ts, received_at, lat,
            lon, accuracy_m, speed_mps, provider, is_mock, territory_id, region,
            in_assigned_territory, geo_account_id, geo_account_distance_m, geo_version)
        SELECT generateUUIDv4(), {_rep('r')}, concat('dev-', {_rep('r')}), 'ping', ts,
               ts + toIntervalSecond(30), 52.3 + (r % 7) * 0.05 + (k % 97) * 0.0001,
               13.0 + (r % 50) * 0.02 + (k % 89) * 0.0001, 10, 8, 'gps', false,
               if(k % 10 = 0, concat('T', leftPad(toString((r + 1) % 50 + 1), 2, '0')),
                  {territory}),
               'R1', k % 10 != 0,
               if(k % 3 = 0, {account}, NULL), if(k % 3 = 0, 20, NULL), 1
        FROM (SELECT r, d, k, toDateTime64(today() - d, 3, 'UTC')
                                + toIntervalSecond(6 * 3600 + k * 60) AS ts
              FROM (SELECT number % {reps} AS r, intDiv(number, {reps}) AS d
                    FROM numbers({reps * ping_days}))
              ARRAY JOIN range(600) AS k)""",
        # the account set in use: 40 customers per territory, as the visits above use them
        """INSERT INTO accounts_all (account_id, name, kind, territory_id, region, lon, lat,
            radius_m, geo_version)
        SELECT concat('A', leftPad(toString(number + 1), 4, '0')),
               concat('Customer ', toString(number + 1)), 'customer',
               concat('T', leftPad(toString(intDiv(number, 40) + 1), 2, '0')), 'R1',
               13.0 + number * 0.0003, 52.3 + number * 0.0001, 100, 1
        FROM numbers(2000)""",
        # each rep's territory (the pings' and transitions' own territory above)
        f"""INSERT INTO rep_territories_all (rep_id, territory_id, geo_version)
        SELECT {_rep('number')}, concat('T', leftPad(toString(number % 50 + 1), 2, '0')), 1
        FROM numbers({reps})""",
        """INSERT INTO deadletters (at, reason, detail, source_topic, source_partition,
            source_offset, item_index, event_id, rep_id, payload)
        SELECT now64(3) - toIntervalSecond(number * 97 % 600000),
               ['invalid', 'too_late', 'undecodable', 'in_future'][number % 4 + 1],
               'synthetic', 'telemetry.raw', number % 4, number, 0, NULL,
               concat('rep-', leftPad(toString(number % 1000 + 1), 4, '0')), '{}'
        FROM numbers(5000)""",
    ]
    return stmts


DERIVED = ("rep_daily_all", "segments_all", "segments_current", "visits_current",
           "transitions_all", "transitions_current")


def merge_closed_partitions(client: Any) -> None:
    """Merge every partition of the derived tables but the newest, as background merges
    do in a running store: only open rep-days (the last two or three) are written, so older
    partitions end up as merged parts; the newest keeps its derivations unmerged."""
    for table in DERIVED:
        parts = [r[0] for r in client.query(
            "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() "
            f"AND table = '{table}' AND active ORDER BY partition_id").result_rows]
        for pid in parts[:-1]:
            client.command(f"OPTIMIZE TABLE {table} PARTITION ID '{pid}' FINAL")


def _times(client: Any, sql: str, runs: int) -> tuple[list[float], int]:
    """Milliseconds of ``runs`` runs after one warm-up, and the number of rows."""
    client.query(sql)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        res = client.query(sql)
        times.append((time.perf_counter() - t0) * 1000)
    return times, len(res.result_rows)


def view_definitions() -> dict[str, dict[str, str]]:
    """The ``segments`` and ``visits`` views of migration 4 (``old``: visits joins every
    visit form) and of the last migration (``new``: visits reads visits_current)."""
    from sinks.migrations import MIGRATIONS, View

    defs: dict[str, dict[str, str]] = {"old": {}, "new": {}}
    for m in MIGRATIONS:
        for o in m.objects:
            if isinstance(o, View) and o.name in ("segments", "visits"):
                if m.version == 4:
                    defs["old"][o.name] = o.ddl()
                defs["new"][o.name] = o.ddl()
    return defs


def compare_views(client: Any, runs: int, rounds: int = 2
                  ) -> list[tuple[str, float, float]]:
    """(question, old median ms, new median ms) of every query reading segments or visits,
    the two view versions alternating ``rounds`` times on the same data."""
    defs = view_definitions()
    queries = [(q, sql) for q, sql in cookbook()
               if re.search(r"\b(FROM|JOIN)\s+(visits|segments)\b", sql)]
    times: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    answers: dict[str, dict[str, list[Any]]] = {"old": {}, "new": {}}
    try:
        for _ in range(rounds):
            for variant in ("old", "new"):
                for ddl in defs[variant].values():
                    client.command(ddl)
                for q, sql in queries:
                    times[variant].setdefault(q, []).extend(_times(client, sql, runs)[0])
                    answers[variant].setdefault(q, sorted(map(repr, client.query(sql)
                                                              .result_rows)))
    finally:
        for ddl in defs["new"].values():
            client.command(ddl)
    differ = [q for q, _ in queries if answers["old"][q] != answers["new"][q]]
    if differ:
        print(f"old and new views answer differently: {differ}")
    return [(q, statistics.median(times["old"][q]), statistics.median(times["new"][q]))
            for q, _ in queries]


def run(reps: int, days: int, ping_days: int, runs: int, directory: Path,
        merge_history: bool = True, compare: bool = False
        ) -> tuple[dict[str, int], list[tuple[str, float, int]], list[tuple[str, float, float]]]:
    from sinks.clickhouse import connect
    from sinks.migrations import migrate

    client = connect(url=None, chdb_path=directory, database="geotel")
    migrate(client)
    if int(client.command("SELECT count() FROM rep_daily_all")) == 0:
        for stmt in fill_statements(reps, days, ping_days):
            client.command(stmt, settings={"async_insert": 0})
        if merge_history:
            merge_closed_partitions(client)
    sizes = {t: int(client.command(f"SELECT count() FROM {t}"))
             for t in ("rep_daily", "segments", "visits", "transitions", "events",
                       "deadletters", "segments_current", "visits_current",
                       "transitions_current", "rep_territories")}
    results: list[tuple[str, float, int]] = []
    for question, sql in cookbook():
        times, n = _times(client, sql, runs)
        results.append((question, statistics.median(times), n))
    compared = compare_views(client, runs) if compare else []
    client.close()
    return sizes, results, compared


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--ping-days", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--unmerged", action="store_true",
                    help="leave every derivation unmerged (default: merge all partitions of "
                    "the derived tables but the newest, as a running store would have them)")
    ap.add_argument("--compare", action="store_true",
                    help="also time the queries on segments/visits with the views of "
                    "migration 4 (visits joining the forms) and the current ones, alternating, "
                    "on the same data")
    ap.add_argument("--dir", type=Path, default=None,
                    help="keep the chDB directory here (filled once, reused by later runs)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.dir is not None:
        sizes, results, compared = run(args.reps, args.days, args.ping_days, args.runs,
                                       args.dir, not args.unmerged, args.compare)
    else:
        with tempfile.TemporaryDirectory(prefix="cookbook-") as tmp:
            sizes, results, compared = run(args.reps, args.days, args.ping_days, args.runs,
                                           Path(tmp), not args.unmerged, args.compare)
    total = time.perf_counter() - t0
    print("rows: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    width = max(len(q) for q, _, _ in results)
    if args.markdown:
        print("\n| question | median ms | rows |\n| --- | ---: | ---: |")
    for q, ms, n in results:
        if args.markdown:
            print(f"| {q} | {ms:.0f} | {n} |")
        else:
            flag = "" if ms <= args.target_ms else f"  (over {args.target_ms:.0f} ms)"
            print(f"{q:<{width}}  {ms:8.1f} ms  {n:6d} rows{flag}")
    if compared:
        print("\n| question | old views (migration 4) | new views |\n| --- | ---: | ---: |")
        for q, old_ms, new_ms in compared:
            print(f"| {q} | {old_ms:.0f} | {new_ms:.0f} |")
    slow = sum(1 for _, ms, _ in results if ms > args.target_ms)
    print(f"\n{len(results)} queries, {slow} over {args.target_ms:.0f} ms; "
          f"fill + runs took {total:.0f} s")


if __name__ == "__main__":
    main()
