"""Profile one `geotel worker` on the end-to-end workload with py-spy (sampling, all threads).

Preloads the same workload as ``bench_e2e.py`` into a fresh embedded broker, starts one worker,
attaches ``py-spy record`` (collapsed stacks) while it drains the topic and the sessions
stage derives what it read (as ``bench_e2e.py`` times it), and prints the
functions with the most samples, by self time and by inclusive time. Needs ``py-spy``
(``pip install py-spy``) and permission to trace the worker process.

    python bench/profile_e2e.py --events 100000 --out bench/out/worker.collapsed
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e2e import wait_sessions
from common import (
    OUT,
    embedded_broker,
    prepare_topics_and_geo,
    produce,
    run_dir,
    settings_for,
    simulated_workload,
    sink_rows,
    start_worker,
    wait_for,
)


def summarise(collapsed: Path, top: int) -> None:
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = stack.split(";")
        self_t[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    print(f"{total} samples")
    for title, ctr in (("self", self_t), ("inclusive", incl)):
        print(f"-- top {top} by {title} time")
        for f, k in ctr.most_common(top):
            print(f"{k / total:6.1%}  {f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="py-spy profile of one worker on the e2e workload")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=OUT / "worker.collapsed")
    ap.add_argument("--rate", type=int, default=200, help="samples per second")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--native", action="store_true", help="also sample native frames")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra worker setting, e.g. GEOTEL_WORKER__BATCH_MAX_MESSAGES=1000")
    args = ap.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    wl = simulated_workload(args.events)
    root = run_dir("profile")
    with embedded_broker(root) as port, httpx.Client() as http:
        s = settings_for(root / "setup", port)
        prepare_topics_and_geo(s)
        produce(s.bootstrap_servers, s.topic("telemetry.raw"), wl.messages)
        extra = dict(kv.split("=", 1) for kv in args.env)
        proc, base = start_worker(root, port, extra_env=extra)
        try:
            wait_for(lambda: sink_rows(http, base) > 0, 120, "first rows", proc)
            cmd = [pyspy, "record", "--pid", str(proc.pid), "--format", "raw", "--rate",
                   str(args.rate), "--threads", "--output", str(args.out), "--nonblocking"]
            if args.native:
                cmd.append("--native")
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            t0 = time.perf_counter()
            wait_for(lambda: sink_rows(http, base) >= wl.events, 900, "all rows", proc, 0.2)
            print(f"intake drained in {time.perf_counter() - t0:.1f}s")
            wait_sessions(http, base, s.bootstrap_servers, s.topic("telemetry.enriched"),
                          proc, 900)
            print(f"sessions stage done in {time.perf_counter() - t0:.1f}s")
            spy.send_signal(2)
            spy.wait(30)
        finally:
            proc.stop()
    summarise(args.out, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
