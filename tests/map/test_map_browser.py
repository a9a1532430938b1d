"""The live map in headless Chromium: the page loads its bundled script, fetches the data
and draws every territory and every rep (SVG elements with data attributes), with the
status and territory counts the data endpoint reports. Saves a screenshot in the test's
tmp dir (and, with GEOTEL_UPDATE_DOCS_IMG=1, as docs/img/map.png).

Needs Chromium (Debian: ``apt-get install -y chromium chromium-driver``); skipped only when
no Chromium binary can be found at all.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.analysts.fielddata import FieldData
from tests.conftest import ROOT, Stack

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = next((p for p in (shutil.which(n) for n in (
    "chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"))
    if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars"]


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=True)


def _attrs(dom: str, tag: str, attr: str) -> list[str]:
    return re.findall(rf"<{tag}\b[^>]*\b{attr}=\"([^\"]*)\"", dom)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary found")
@pytest.mark.parametrize("when", ["replay", "live"])
def test_map_page_draws_territories_and_reps(mapstack: tuple[Stack, FieldData],
                                             tmp_path: Path, when: str) -> None:
    stack, data = mapstack
    query = ""
    if when == "replay":  # yesterday mid-morning: every simulated rep at work
        at = dt.datetime.combine(data.days[0], dt.time(9, 30), dt.UTC).isoformat()
        query = "?at=" + at.replace("+", "%2B")
    expected = stack.http.get("/v1/map.json" + query).json()
    url = f"{stack.base}/map{query}"
    dom = chromium(tmp_path, "--virtual-time-budget=8000", "--dump-dom", url).stdout
    assert 'data-state="ready"' in dom, dom[:2000]

    territories = _attrs(dom, "path", "data-territory-id")
    assert len(territories) == data.index.n_territories == 50
    drawn = dict(zip(_attrs(dom, "circle", "data-rep-id"), _attrs(dom, "circle", "data-status"),
                     strict=True))
    assert drawn == {r["rep_id"]: r["status"] for r in expected["reps"]}
    assert set(drawn) == set(data.reps)
    if when == "live":
        for rep, mode in data.live.items():
            assert drawn[rep] == mode
    else:
        assert len(set(drawn.values())) >= 2  # a working morning has more than one status
        assert "off_duty" not in drawn.values() or len(drawn) > 1
    # the counts panel: per status, and a table row per territory with reps
    counts = dict(zip(_attrs(dom, "li", "data-status"), _attrs(dom, "li", "data-count"),
                      strict=True))
    assert counts.pop("all") == str(len(data.reps))
    assert {k: int(v) for k, v in counts.items()} == expected["counts"]["status"]
    rows = dict(zip(_attrs(dom, "tr", "data-territory-id"), _attrs(dom, "tr", "data-reps"),
                    strict=True))
    assert {k: int(v) for k, v in rows.items()} == expected["counts"]["territory"]
    # each territory path carries its rep count
    reps_attr = _attrs(dom, "path", "data-reps")
    assert sum(int(v) for v in reps_attr) == sum(expected["counts"]["territory"].values())
    minutes = _attrs(dom, "tr", "data-field-minutes")
    assert len(minutes) == len(data.reps) and all(int(m) >= 0 for m in minutes)

    shot = tmp_path / f"map-{when}.png"
    chromium(tmp_path, "--virtual-time-budget=8000", "--window-size=1400,900",
             f"--screenshot={shot}", url)
    assert shot.exists() and shot.stat().st_size > 20_000
    if when == "replay" and os.environ.get("GEOTEL_UPDATE_DOCS_IMG") == "1":
        (ROOT / "docs" / "img").mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / "docs" / "img" / "map.png")
