"""Redaction's mutations run without holding the writer lock, in the order they were given.

``apply_statements`` issues each mutation without waiting and waits (outside the lock)
before any other statement and at the end, so a statement that reads what a mutation
rewrites sees it rewritten, and a failed mutation is an error with ClickHouse's reason.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sinks.exceptions import SinkError
from streams.privacy import _mutated_table, apply_statements, wait_for_mutations

pytestmark = pytest.mark.integration


def _table(ch: Any) -> None:
    ch.command("CREATE TABLE pos (rep String, lat Float64) ENGINE = MergeTree ORDER BY rep")
    ch.command("CREATE TABLE last (rep String, lat Float64) ENGINE = MergeTree ORDER BY rep")
    for k in range(4):  # a few parts, so the mutation has work to do
        ch.insert("pos", [[f"r{i % 50}", 48.123456] for i in range(k * 50_000, (k + 1) * 50_000)],
                  column_names=["rep", "lat"])


def test_statements_see_the_mutations_before_them(ch: Any) -> None:
    _table(ch)
    lock = threading.Lock()
    apply_statements(ch, ["ALTER TABLE pos UPDATE lat = round(lat, 2) WHERE rep = 'r1'",
                          "INSERT INTO last SELECT rep, max(lat) FROM pos GROUP BY rep"], lock)
    got = dict(ch.query("SELECT rep, lat FROM last").result_rows)
    assert got["r1"] == 48.12 and got["r2"] == 48.123456
    assert not ch.query("SELECT count() FROM system.mutations WHERE database = "
                        "currentDatabase() AND NOT is_done").result_rows[0][0]
    assert not lock.locked()


def test_the_lock_is_free_while_a_mutation_runs(ch: Any) -> None:
    _table(ch)
    lock = threading.Lock()
    waits: list[float] = []
    stop = threading.Event()

    def other_writer() -> None:  # takes the lock as an intake insert would
        while not stop.is_set():
            t = time.perf_counter()
            with lock:
                waits.append(time.perf_counter() - t)
            time.sleep(0.005)

    th = threading.Thread(target=other_writer)
    th.start()
    t0 = time.perf_counter()
    try:
        # sleepEachRow makes each mutation take about 0.4 s (4 parts x 50,000 rows x 2 us)
        apply_statements(ch, [f"ALTER TABLE pos UPDATE lat = lat + {k} + sleepEachRow(2e-6) "
                              "WHERE 1" for k in range(3)], lock)
    finally:
        stop.set()
        th.join()
    took = time.perf_counter() - t0
    assert ch.query("SELECT min(lat), max(lat) FROM pos").result_rows[0] == (51.123456,
                                                                             51.123456)
    assert took > 0.6, took  # the mutations did take time ...
    assert waits and max(waits) < took / 3, (max(waits), took)  # ... but not under the lock


def test_a_failed_mutation_is_an_error_with_its_reason(ch: Any) -> None:
    _table(ch)
    with pytest.raises(SinkError, match="boom"):
        apply_statements(ch, ["ALTER TABLE pos UPDATE lat = throwIf(lat > 0, 'boom') "
                              "WHERE rep = 'r1'"], None)
    ch.command("KILL MUTATION WHERE database = currentDatabase() AND table = 'pos'")


def test_wait_gives_up_after_its_timeout(ch: Any) -> None:
    _table(ch)
    ch.command("SYSTEM STOP MERGES pos")  # the mutation cannot run
    try:
        ch.command("ALTER TABLE pos UPDATE lat = 0 WHERE rep = 'r1'",
                   settings={"mutations_sync": 0})
        with pytest.raises(SinkError, match="still pending"):
            wait_for_mutations(ch, ["pos"], timeout_s=0.3)
    finally:
        ch.command("SYSTEM START MERGES pos")
        wait_for_mutations(ch, ["pos"], timeout_s=60)


def test_mutated_table() -> None:
    assert _mutated_table("ALTER TABLE events_all UPDATE lat = 1 WHERE x") == "events_all"
    assert _mutated_table("alter table t DELETE WHERE x") == "t"
    assert _mutated_table("INSERT INTO t SELECT 1") is None
    assert _mutated_table("ALTER TABLE t ADD COLUMN c UInt8") is None
