"""The command line as a user meets it: version, choices that reject bad values with the
usage code, where `schemas export` writes, and `simulate` against a stopped pipeline."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import SqlFormat, app, render_schemas
from tests.conftest import ROOT, free_port

runner = CliRunner()


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"geotel {md.version('geotel')}"


@pytest.mark.parametrize("args, choices", [
    (["simulate", "--noise", "bogus"], ["clean", "realistic"]),
    (["sql", "SELECT 1", "--format", "xml"], [f.value for f in SqlFormat]),
    (["simulate", "--start-date", "yesterday"], []),
])
def test_a_bad_choice_is_a_usage_error_listing_the_choices(args: list[str],
                                                           choices: list[str]) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "Invalid value" in text
    for choice in choices:
        assert f"'{choice}'" in text, text


def test_the_sql_formats_are_the_endpoints() -> None:
    from streams.query import FORMATS

    assert {f.value for f in SqlFormat} == set(FORMATS)


def test_schemas_export_writes_under_the_current_directory(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["schemas", "export"])
    assert res.exit_code == 0, res.output
    files = render_schemas()
    out = tmp_path / "schemas" / "json"
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    assert all((out / n).read_text() == text for n, text in files.items())
    assert runner.invoke(app, ["schemas", "export", "--check"]).exit_code == 0
    (out / next(iter(files))).write_text("{}\n")
    assert runner.invoke(app, ["schemas", "export", "--check"]).exit_code == 1


def test_simulate_against_a_stopped_pipeline_fails_at_once(tmp_path: Path) -> None:
    port = free_port()  # nothing listens on it
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GEOTEL_DATA_DIR": str(tmp_path / "var"),
           "GEOTEL_WEB_PORT": str(port), "GEOTEL_KAFKA__EMBEDDED_PORT": str(free_port())}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--reps", "2"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"http://127.0.0.1:{port}/health" in lines[0]
    assert "geotel up" in lines[0]
    assert elapsed < 20, elapsed  # one refused connection, not retries of every upload
    # Nothing was registered for reps that were never simulated.
    assert not (tmp_path / "var" / "devices.jsonl").exists()
