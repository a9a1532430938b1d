"""The team map with many reps in headless Chromium: page load and update time.

Starts the real stack (``geotel up``: embedded broker + chDB) on the sample world, registers
``--reps`` devices and uploads one morning per rep on a fixed past day (a work-day check-in,
a ping every ``--ping-s`` seconds for four hours on a random walk in the rep's territory,
two checked-in visits), waits until everything is stored and derived, then opens
``/map?at=<that day 11:00 UTC>`` (the replay of the day: every rep at work, every path
drawn) in headless Chromium through chromedriver and measures:

* ``map_load_ms``: navigation start until the page has drawn every layer (territories,
  2,000 accounts, reps, accuracy circles, paths);
* ``map_update_ms``: one refresh as the page does it every few seconds (the reps: fetch +
  draw), and of that ``map_render_ms`` (the drawing alone) and ``map_fetch_ms``;
* ``map_full_update_ms`` / ``map_full_render_ms``: a refresh with the paths and accounts
  too (the page does that every 30 s / 60 s);
* ``map_json_reps_ms`` / ``_kb``, ``map_json_paths_ms`` / ``_kb``: the data endpoint alone,
  uncached, without and with the paths; ``map_json_alerts_ms`` with the alerts;
* ``map_zoom_ms``: one zoom step with every layer on.

Figures are medians of ``--updates`` refreshes; RESULT lines as the other benchmarks.

    python bench/bench_map.py --reps 1000
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from geo import load_index  # noqa: E402
from streams.demo import register  # noqa: E402
from streams.settings import KafkaSettings, Settings  # noqa: E402
from tests.conftest import Stack, wait_for  # noqa: E402
from tests.map.webdriver import Browser  # noqa: E402

SAMPLE = ROOT / "data" / "sample"


def _ev(kind: str, dev: str, rep: str, ts: dt.datetime, **body: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "device_id": dev, "rep_id": rep, "kind": kind,
            "ts": ts.isoformat(), **body}


def morning(index: Any, i: int, day: dt.date, ping_s: int, rnd: random.Random
            ) -> tuple[str, str, list[dict[str, Any]]]:
    """Rep ``i``'s morning: 07:00-11:00 UTC in territory ``i % n``, two visits."""
    rep, dev = f"bench-rep-{i:05d}", f"bench-dev-{i:05d}"
    acc = index.accounts
    terr = str(index.territory_ids[i % index.n_territories])
    customers = [k for k in range(len(acc)) if acc.kind[k] == "customer"
                 and acc.territory_id[k] == terr]
    c1, c2 = rnd.sample(customers, 2)
    start = dt.datetime.combine(day, dt.time(7), dt.UTC)
    lon, lat = float(acc.lon[c1]), float(acc.lat[c1])
    events = [_ev("check_in", dev, rep, start, action="workday_start",
                  position={"lat": lat, "lon": lon, "accuracy_m": 10.0})]
    for k in range(0, 4 * 3600 + 1, ping_s):
        ts = start + dt.timedelta(seconds=k)
        # an hour at the first customer, drive to the second, an hour there, wander after
        if 3600 <= k < 5400:
            f = (k - 3600) / 1800
            lon = float(acc.lon[c1]) + f * (float(acc.lon[c2]) - float(acc.lon[c1]))
            lat = float(acc.lat[c1]) + f * (float(acc.lat[c2]) - float(acc.lat[c1]))
        elif k >= 9000:
            lon += rnd.uniform(-0.002, 0.002)
            lat += rnd.uniform(-0.0015, 0.0015)
        jitter = (3.0 * math.sin(k) / 70_000, 3.0 * math.cos(k) / 110_000)
        events.append(_ev("ping", dev, rep, ts, lat=lat + jitter[1], lon=lon + jitter[0],
                          accuracy_m=float(rnd.choice((5, 8, 12, 25, 40))), provider="gps"))
    for c, t0, t1 in ((c1, 300, 3300), (c2, 5700, 8700)):
        vid = f"v-{rep}-{c}"
        pos = {"lat": float(acc.lat[c]), "lon": float(acc.lon[c]), "accuracy_m": 8.0}
        events.append(_ev("check_in", dev, rep, start + dt.timedelta(seconds=t0),
                          action="visit_start", account_id=str(acc.account_id[c]),
                          visit_id=vid, position=pos))
        events.append(_ev("check_in", dev, rep, start + dt.timedelta(seconds=t1),
                          action="visit_end", account_id=str(acc.account_id[c]),
                          visit_id=vid, position=pos))
    return rep, dev, events


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--ping-s", type=int, default=120)
    ap.add_argument("--updates", type=int, default=7)
    ap.add_argument("--root", type=Path, default=ROOT / "bench" / "out" / "map")
    args = ap.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    root = args.root / time.strftime("%Y%m%d-%H%M%S")
    root.mkdir()
    stack = Stack(root)
    stack.start()
    try:
        geo_version = stack.load_sample_world()
        index, _ = load_index(SAMPLE / "territories.geojson", SAMPLE / "accounts.geojson",
                              version=geo_version)
        day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)
        rnd = random.Random(11)
        mornings = [morning(index, i, day, args.ping_s, rnd) for i in range(args.reps)]
        settings = Settings(data_dir=stack.root / "var", web_port=stack.web_port,
                            kafka=KafkaSettings(embedded_port=stack.kafka_port))
        t0 = time.monotonic()
        tokens = register(settings, [(dev, rep) for rep, dev, _ in mornings])
        n = 0
        for _rep, dev, events in mornings:
            r = stack.post(tokens[dev], events)
            if r.status_code != 202:
                raise RuntimeError(f"upload refused: {r.status_code} {r.text[:300]}")
            n += len(events)
        wait_for(lambda: stack.health()["components"]["sink"]["rows"] >= n, 600,
                 "events stored")
        wait_for(lambda: int(stack.scalar(
            f"SELECT count() FROM rep_daily WHERE local_date = '{day}'")) >= args.reps,
            600, "rep-days derived")
        print(f"# {args.reps} reps, {n} events uploaded, stored and derived in "
              f"{time.monotonic() - t0:.0f} s", flush=True)

        at = dt.datetime.combine(day, dt.time(11), dt.UTC).isoformat().replace("+", "%2B")
        json_ms, json_kb, reps_ms, reps_kb = [], 0.0, [], 0.0
        for _ in range(3):
            # each request after the service's 2 s cache: a miss
            t = time.perf_counter()
            r = stack.http.get(f"/v1/map.json?at={at}&territories=0")
            reps_ms.append((time.perf_counter() - t) * 1000)
            reps_kb = len(r.content) / 1024
            time.sleep(2.1)
            t = time.perf_counter()
            r = stack.http.get(f"/v1/map.json?at={at}&territories=0&paths=1")
            json_ms.append((time.perf_counter() - t) * 1000)
            json_kb = len(r.content) / 1024
            time.sleep(2.1)
        alerts_ms = []
        for _ in range(3):
            t = time.perf_counter()
            ra = stack.http.get(f"/v1/map.json?at={at}&territories=0&alerts=1")
            alerts_ms.append((time.perf_counter() - t) * 1000)
            time.sleep(2.1)
        print(f"# alerts: {len(ra.json()['alerts'])}", flush=True)
        body = r.json()
        placed = sum(1 for x in body["reps"] if x["lon"] is not None)
        print(f"# map.json: {len(body['reps'])} reps ({placed} placed), "
              f"{len(body['paths'])} paths, "
              f"{sum(len(p) for p in body['paths'].values())} path points", flush=True)

        loads, updates, renders, fetches, zooms = [], [], [], [], []
        full, full_renders = [], []
        with Browser(root / "chromium") as b:
            for _ in range(3):
                b.get(f"{stack.base}/map?at={at}")
                b.wait("return document.body.dataset.state === 'ready'", 180, "ready")
                drawn = b.js("return document.querySelectorAll('path.rep').length")
                if drawn != placed:
                    raise RuntimeError(f"{drawn} rep markers drawn, {placed} expected")
                loads.append(b.js("return window.geotelMap.stats.readyMs"))
                time.sleep(2.1)
            for k in range(2 * args.updates):
                time.sleep(2.1)  # past the service's 2 s cache: a real refresh
                ms = b.js_async(
                    "var done = arguments[arguments.length - 1], t = performance.now();"
                    "window.geotelMap.refresh(arguments[0]).then(function () {"
                    "  var s = window.geotelMap.stats;"
                    "  done([performance.now() - t, s.lastRenderMs, s.lastFetchMs]); });",
                    k % 2 == 1)  # every other one with paths and accounts
                if k % 2:
                    full.append(ms[0])
                    full_renders.append(ms[1])
                else:
                    updates.append(ms[0])
                    renders.append(ms[1])
                    fetches.append(ms[2])
            for _ in range(3):
                zooms.append(b.js_async(
                    "var done = arguments[arguments.length - 1], m = window.geotelMap.map,"
                    " t = performance.now();"
                    "m.once('zoomend', function () { requestAnimationFrame(function () {"
                    "  done(performance.now() - t); }); });"
                    "m.setZoom(m.getZoom() + (m.getZoom() > 12 ? -1 : 1), {animate: false});"))
            b.screenshot(root / "map-1000.png")
        med = statistics.median
        load = __import__("os").getloadavg()[0]
        for name, v, unit in (("map_load_ms", med(loads), "ms"),
                              ("map_update_ms", med(updates), "ms"),
                              ("map_render_ms", med(renders), "ms"),
                              ("map_fetch_ms", med(fetches), "ms"),
                              ("map_full_update_ms", med(full), "ms"),
                              ("map_full_render_ms", med(full_renders), "ms"),
                              ("map_json_reps_ms", med(reps_ms), "ms"),
                              ("map_json_reps_kb", reps_kb, "KiB"),
                              ("map_json_paths_ms", med(json_ms), "ms"),
                              ("map_json_paths_kb", json_kb, "KiB"),
                              ("map_json_alerts_ms", med(alerts_ms), "ms"),
                              ("map_zoom_ms", med(zooms), "ms")):
            print(f"RESULT {name}_{args.reps} {v:.0f} {unit}", flush=True)
        print(f"# load average {load:.2f}; loads {[round(x) for x in loads]}, updates "
              f"{[round(x) for x in updates]}, renders {[round(x) for x in renders]}, "
              f"zooms {[round(x) for x in zooms]}", flush=True)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
