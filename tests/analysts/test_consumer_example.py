"""examples/consumer.py against the stack: after simulated uploads it ends holding exactly
the rep-days of ``rep_daily``, each at its current version with the same figures, and the
versions it accepted for a rep-day only ever increased."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.analysts.fielddata import FieldData
from tests.conftest import ROOT, Stack

pytestmark = pytest.mark.integration


def test_example_consumer_keeps_the_current_version_of_every_rep_day(
        field: tuple[Stack, FieldData]) -> None:
    stack, data = field
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "consumer.py"), "--bootstrap", stack.bootstrap,
         "--group-id", f"test-{uuid.uuid4()}", "--max-seconds", "20", "--json"],
        capture_output=True, text=True, timeout=90, check=True)
    lines = out.stdout.splitlines()
    final = {}
    for line in lines:
        if line.startswith("FINAL "):
            rec = json.loads(line[6:])
            final[(rec["rep_id"], rec["local_date"])] = rec
    stored = {(r["rep_id"], r["local_date"]): r for r in stack.sql(
        "SELECT rep_id, toString(local_date) AS local_date, version, field_s, visits "
        "FROM rep_daily")}
    assert len(stored) >= len(data.reps) * len(data.days)
    assert set(final) == set(stored)
    for key, rec in final.items():
        assert rec["version"] == int(stored[key]["version"]), key
        assert abs(rec["field_s"] - float(stored[key]["field_s"])) < 1e-3, key
        assert rec["visits"] == int(stored[key]["visits"]), key
    # UPDATE lines: per rep-day, strictly increasing versions
    seen: dict[tuple[str, str], int] = {}
    updates = 0
    for line in lines:
        if line.startswith("UPDATE "):
            rep, day, v = line.split()[1:4]
            version = int(v[2:])
            assert version > seen.get((rep, day), 0), line
            seen[(rep, day)] = version
            updates += 1
    assert updates >= len(final)
    assert seen == {k: r["version"] for k, r in final.items()}
