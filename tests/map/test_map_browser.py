"""The team map in headless Chromium (driven through chromedriver, offline): the page loads
the vendored Leaflet from the service, fetches /v1/map.json and draws every layer (SVG
elements with data attributes): territories, reps with their status and accuracy circle,
today's path of each rep at work, accounts by days since the last verified visit. Clicking a
rep opens its day: the timeline is checked against `segments`, the figures against
`rep_daily`, the visits against `visits`. Filters and the day picker are checked too.

Screenshots go to the test's tmp dir (with GEOTEL_UPDATE_DOCS_IMG=1 also to docs/img/).
Chromium and chromedriver missing is a failure that says how to install them, not a skip.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.analysts.fielddata import FieldData
from tests.conftest import ROOT, Stack
from tests.map.conftest import BREAK_MAX_S
from tests.map.webdriver import Browser

pytestmark = [pytest.mark.integration, pytest.mark.browser]

READY = "return document.body.dataset.state === 'ready'"
DOC_IMAGES = ("map.png", "map-rep.png")  # what docs/map.md and the README show
PANEL_READY = "return document.getElementById('rep-panel').dataset.state === 'ready'"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(tmp_path_factory.mktemp("chromium")) as b:
        yield b


def _q(t: dt.datetime) -> str:
    return t.isoformat().replace("+", "%2B")


def _drawn(b: Browser, css: str, *attrs: str) -> list[list[str | None]]:
    return list(b.js("return Array.from(document.querySelectorAll(arguments[0])).map("
                     "e => arguments[1].map(a => e.getAttribute(a)))", css, list(attrs)))


def _open(b: Browser, url: str) -> None:
    b.get(url)
    b.wait(READY, 60, f"{url} ready")


def _save(b: Browser, tmp: Path, name: str) -> None:
    shot = tmp / name
    b.screenshot(shot)
    assert shot.stat().st_size > 20_000
    if os.environ.get("GEOTEL_UPDATE_DOCS_IMG") == "1" and name in DOC_IMAGES:
        (ROOT / "docs" / "img").mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / "docs" / "img" / name)


def _coverage(days: float | None) -> str:
    if days is None:
        return "cov-old"
    return "cov-week" if days <= 7 else "cov-month" if days <= 30 else "cov-old"


@pytest.mark.parametrize("when", ["replay", "live"])
def test_map_layers_match_the_data(mapstack: tuple[Stack, FieldData], browser: Browser,
                                   tmp_path: Path, when: str) -> None:
    stack, data = mapstack
    query = ""
    if when == "replay":  # yesterday mid-morning: every simulated rep at work
        at = dt.datetime.combine(data.days[0], dt.time(9, 30), dt.UTC)
        query = "?at=" + _q(at)
    _open(browser, f"{stack.base}/map{query}")
    sep = "&" if query else "?"
    expected = stack.http.get(f"/v1/map.json{query}{sep}paths=1&accounts=1&alerts=1").json()

    # offline: only this service was asked for anything, and no basemap tiles
    hosts = browser.js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert hosts and all(h.startswith(stack.base) for h in hosts), hosts
    assert any(h.endswith("/map/vendor/leaflet/leaflet.js") for h in hosts)
    assert browser.js("return document.body.dataset.basemap") == "territories"
    assert browser.js("return document.querySelectorAll('.leaflet-tile').length") == 0

    terr = _drawn(browser, "path.territory", "data-territory-id", "data-reps", "data-assigned")
    assert len(terr) == data.index.n_territories == 50
    assert {t: int(n or 0) for t, n, _ in terr if int(n or 0)} == expected["counts"]["territory"]
    assigned = {f["id"]: f["properties"]["assigned_reps"]
                for f in expected["territories"]["features"]}
    assert {t: int(a or 0) for t, _, a in terr} == assigned

    drawn = {r: s for r, s in _drawn(browser, "path.rep", "data-rep-id", "data-status")}
    placed = {r["rep_id"]: r["status"] for r in expected["reps"] if r["lon"] is not None}
    assert drawn == placed
    assert set(drawn) == set(data.reps)
    if when == "live":
        for rep, mode in data.live.items():
            assert drawn[rep] == mode
    else:
        assert len(set(drawn.values())) >= 2  # a working morning has more than one status
    acc = {r: float(m) for r, m in _drawn(browser, "path.accuracy", "data-rep-id",
                                          "data-accuracy-m")}
    assert acc == {r["rep_id"]: r["accuracy_m"] for r in expected["reps"]
                   if r["lon"] is not None}
    ages = _drawn(browser, "path.rep", "data-last-fix-age-s")
    assert all(a[0] is not None and int(a[0]) >= 0 for a in ages)

    # today's paths: only reps whose work day has started, as many points as the data
    paths = {r: int(n) for r, n in _drawn(browser, "path.path", "data-rep-id", "data-points")}
    assert paths == {r: len(p) for r, p in expected["paths"].items() if len(p) >= 2}
    if when == "live":  # only the reps at work now: the others' day was yesterday
        assert set(paths) <= set(data.live)
        started = {r["rep_id"] for r in expected["reps"] if r["workday_start"]}
        assert started & set(data.live) <= set(paths)
    else:
        assert len(paths) >= 6

    # accounts: every customer, coloured by the days since its last verified visit
    accounts = {a: (d, c) for a, d, c in _drawn(browser, "path.account", "data-account-id",
                                                "data-days", "data-coverage")}
    assert len(accounts) == len(expected["accounts"]) > 100
    for a in expected["accounts"]:
        assert accounts[a["account_id"]][1] == _coverage(a["days_since_verified"])
    if when == "live":  # yesterday's verified visits make some accounts green
        assert any(c == "cov-week" for _, c in accounts.values())

    # alerts: one ring per alert with a position
    rings = {(a, r, p) for a, r, p in _drawn(browser, "path.alert", "data-alert-id",
                                               "data-rule", "data-rep-id")}
    assert rings == {(a["alert_id"], a["rule"], a["rep_id"]) for a in expected["alerts"]
                     if a["lon"] is not None}

    counts = dict(_drawn(browser, "#status-counts li", "data-status", "data-count"))
    assert counts.pop("all") == str(len(data.reps))
    assert {k: int(v or 0) for k, v in counts.items()} == expected["counts"]["status"]
    rows = _drawn(browser, "#rep-table tbody tr", "data-rep-id", "data-field-minutes")
    assert sorted(r for r, _ in rows) == sorted(data.reps)
    _save(browser, tmp_path, f"map-{when}.png" if when == "live" else "map.png")


def _segments(stack: Stack, rep: str, day: dt.date) -> list[dict[str, Any]]:
    return stack.sql(f"SELECT toString(segment_id) AS id, toString(kind) AS kind, "
                     f"toUnixTimestamp64Milli(start) AS s, toUnixTimestamp64Milli(`end`) AS e "
                     f"FROM segments WHERE rep_id = '{rep}' AND local_date = '{day}' "
                     f"ORDER BY start")


def test_rep_day_panel_matches_segments_daily_and_visits(
        mapstack: tuple[Stack, FieldData], browser: Browser, tmp_path: Path) -> None:
    stack, data = mapstack
    day = data.days[0]
    rep = stack.sql(f"SELECT rep_id FROM segments WHERE local_date = '{day}' GROUP BY rep_id "
                    f"ORDER BY countIf(kind = 'visit') DESC, rep_id LIMIT 1")[0]["rep_id"]
    at = dt.datetime.combine(day, dt.time(20, 30), dt.UTC)  # after the day, before midnight
    _open(browser, f"{stack.base}/map?at={_q(at)}")
    browser.click(f"#rep-table tbody tr[data-rep-id='{rep}']")
    browser.wait(PANEL_READY, 60, "rep panel")
    assert browser.js("return document.getElementById('rep-panel').dataset.repId") == rep

    segs = _segments(stack, rep, day)
    assert len(segs) >= 5
    by_id = {s["id"]: s for s in segs}
    items = _drawn(browser, "#timeline li", "data-kind", "data-segment-id", "data-start",
                   "data-end", "data-account-id", "data-outcome")
    kinds = [i[0] for i in items]
    assert kinds[0] == "workday_start"
    shown = {i[1]: i[0] for i in items if i[1]}
    # every travel, visit and break of the day is on the timeline with its kind ...
    assert {s["id"]: s["kind"] for s in segs if s["kind"] != "stop"}.items() <= shown.items()
    # ... nothing that is not a segment of the day, and a stop left out lies under a visit
    assert set(shown) <= set(by_id)
    visits = [s for s in segs if s["kind"] == "visit"]
    for s in segs:
        if s["kind"] == "stop" and s["id"] not in shown:
            assert any(v["s"] - 120_000 <= s["s"] and s["e"] <= v["e"] + 120_000
                       for v in visits), s
    starts = [dt.datetime.fromisoformat(i[2]) for i in items if i[0] != "workday_end"]
    assert starts == sorted(starts)
    # a gap is a hole: no segment inside it
    for kind, _, start, end, *_ in items:
        if kind == "gap":
            a = dt.datetime.fromisoformat(start).timestamp() * 1000
            b = dt.datetime.fromisoformat(end).timestamp() * 1000
            assert not any(s["s"] < b - 1 and s["e"] > a + 1 for s in segs)

    # visits with account and outcome, as the visits view has them
    vrows = stack.sql(f"SELECT toString(segment_id) AS id, account_id, outcome FROM visits "
                      f"WHERE rep_id = '{rep}' AND local_date = '{day}'")
    on_tl = {i[1]: (i[4], i[5]) for i in items if i[0] == "visit"}
    assert {v["id"]: (v["account_id"] or "", v["outcome"] or "") for v in vrows} == on_tl
    assert any(o for _, o in on_tl.values())  # the simulated forms carry outcomes
    table = {r: o for r, o in _drawn(browser, "#rep-visits tbody tr", "data-segment-id",
                                     "data-outcome")}
    assert table == {v["id"]: v["outcome"] or "" for v in vrows}

    # the alerts: every break longer than the limit (tests/map/conftest.py) is one, and the
    # panel lists the rep's alerts of the data
    alerts = stack.http.get(f"/v1/map.json?at={_q(at)}&territories=0&alerts=1").json()["alerts"]
    breaks = stack.sql(f"SELECT rep_id, count() AS n FROM segments WHERE local_date = '{day}' "
                       f"AND kind = 'break' AND duration_s > {BREAK_MAX_S} GROUP BY rep_id")
    assert sum(b["n"] for b in breaks) >= 1  # the limit is low enough to plant some
    long_breaks: dict[str, int] = {}
    for a in alerts:
        if a["rule"] == "long_break" and a["local_date"] == day.isoformat():
            long_breaks[a["rep_id"]] = long_breaks.get(a["rep_id"], 0) + 1
            assert a["resolved_at"] is not None and a["detail"]["duration_s"] > BREAK_MAX_S
    assert long_breaks == {b["rep_id"]: b["n"] for b in breaks}
    listed = {a for (a,) in _drawn(browser, "#rep-alerts li", "data-alert-id")}
    assert listed == {a["alert_id"] for a in alerts if a["rep_id"] == rep}

    daily = stack.sql(f"SELECT field_s, travel_s, distance_m, visits, verified_visits "
                      f"FROM rep_daily WHERE rep_id = '{rep}' AND local_date = '{day}'")[0]
    figures = {k: float(v) for k, v in _drawn(browser, "#rep-figures tr", "data-figure",
                                              "data-value")}
    for k, v in daily.items():
        assert figures[k] == pytest.approx(float(v), abs=0.01), k
    _save(browser, tmp_path, "map-rep.png")

    # a click on the rep's marker opens the same panel
    browser.click("#rep-close")
    browser.js("document.querySelector('path.rep[data-rep-id=\"' + arguments[0] + '\"]')"
               ".dispatchEvent(new MouseEvent('click', {bubbles: true}))", rep)
    browser.wait(PANEL_READY, 60, "rep panel from the marker")
    assert len(_drawn(browser, "#timeline li", "data-kind")) == len(items)


def test_filters_and_day_picker(mapstack: tuple[Stack, FieldData], browser: Browser) -> None:
    stack, data = mapstack
    at = dt.datetime.combine(data.days[0], dt.time(10), dt.UTC)
    everyone = stack.http.get(f"/v1/map.json?at={_q(at)}").json()
    regions = {f["id"]: f["properties"]["region"]
               for f in everyone["territories"]["features"]}
    rep0 = next(r for r in everyone["reps"] if r["assigned_territories"])
    terr = rep0["assigned_territories"][0]
    region = regions[terr]
    _open(browser, f"{stack.base}/map?at={_q(at)}&region={region}")
    want = stack.http.get(f"/v1/map.json?at={_q(at)}&region={region}").json()
    assert rep0["rep_id"] in {r["rep_id"] for r in want["reps"]}
    assert 0 < len(want["reps"]) <= len(everyone["reps"])
    for r in want["reps"]:
        assert region in {regions[t] for t in [*r["assigned_territories"], r["territory_id"]]
                          if t}
    drawn = {r for (r,) in _drawn(browser, "path.rep", "data-rep-id")}
    assert drawn == {r["rep_id"] for r in want["reps"] if r["lon"] is not None}
    assert browser.js("return document.getElementById('region').value") == region
    options = {v for (v,) in _drawn(browser, "#region option", "value")}
    assert options == {"", *filter(None, regions.values())}

    # the territory select
    browser.js("document.body.dataset.state = 'navigating';"
               "var s = document.getElementById('territory'); s.value = arguments[0];"
               "s.dispatchEvent(new Event('change'))", terr)
    browser.wait(f"return location.search.indexOf('territory={terr}') >= 0 && "
                 "document.body.dataset.state === 'ready' && "
                 "document.getElementById('territory').value === arguments[0]".replace(
                     "arguments[0]", repr(terr)), 60, "territory filter")
    drawn = {r for (r,) in _drawn(browser, "path.rep", "data-rep-id")}
    want = stack.http.get(f"/v1/map.json?at={_q(at)}&region={region}&territory={terr}").json()
    assert drawn == {r["rep_id"] for r in want["reps"] if r["lon"] is not None}
    assert rep0["rep_id"] in drawn

    # picking a day and a time replays it: the page asks for that instant
    browser.js("document.body.dataset.state = 'navigating';"
               "document.getElementById('time').value = '11:15';"
               "var d = document.getElementById('day'); d.value = arguments[0];"
               "d.dispatchEvent(new Event('change'))", data.days[0].isoformat())
    browser.wait("return location.search.indexOf('at=') >= 0 && "
                 "document.body.dataset.state === 'ready'", 60, "day picker")
    shown_at = dt.datetime.fromisoformat(browser.js("return document.body.dataset.updated"))
    offset = browser.js("return new Date().getTimezoneOffset()")
    local = shown_at - dt.timedelta(minutes=offset)
    assert (local.date(), local.hour, local.minute) == (data.days[0], 11, 15)


def test_rep_day_endpoint_refuses_bad_input(mapstack: tuple[Stack, FieldData]) -> None:
    stack, data = mapstack
    r = stack.http.get("/v1/map/rep.json", params={"rep": "x' OR 1=1 --"})
    assert r.status_code == 400 and "rep id" in r.json()["detail"]
    r = stack.http.get("/v1/map/rep.json", params={"rep": data.reps[0], "at": "yesterday"})
    assert r.status_code == 400 and "ISO 8601" in r.json()["detail"]
    r = stack.http.get("/v1/map/rep.json", params={"rep": "rep-nobody"})
    assert r.status_code == 200
    assert r.json()["timeline"] == [] and r.json()["figures"] is None
