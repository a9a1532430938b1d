"""JSON logs (GEOTEL_LOG_FORMAT=json): one object per line with ts, level, logger, message,
from the CLI's logging and from the Faust worker (its own loggers included)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.logs import JsonFormatter
from tests.conftest import GEOTEL, ROOT, Stack

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_a_record_is_one_json_line() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("streams.x", logging.WARNING, __file__, 1, "took %s\nms",
                               (12,), exc_info)
    record.created = dt.datetime(2026, 3, 29, 1, 30, 0, 250_000, tzinfo=dt.UTC).timestamp()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["ts"] == "2026-03-29T01:30:00.250Z"
    assert (obj["level"], obj["logger"], obj["message"]) == ("warning", "streams.x",
                                                              "took 12\nms")
    assert "ValueError: bad" in obj["exc"]


def _cli_logs(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    code = ("import logging, warnings\n"
            "from streams.cli import _logging, _settings\n"
            "_logging(_settings())\n"
            "logging.getLogger('streams.t').info('hello %s', 'there')\n"
            "logging.getLogger('streams.t').debug('hidden')\n"
            "warnings.warn('careful')\n"
            "try:\n    1 / 0\n"
            "except ZeroDivisionError:\n    logging.getLogger('streams.t').exception('boom')\n")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def test_the_cli_logs_json_lines(tmp_path: Path) -> None:
    proc = _cli_logs(tmp_path, GEOTEL_LOG_FORMAT="json", GEOTEL_LOG_LEVEL="info")
    assert proc.returncode == 0, proc.stderr
    objs = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [(o["level"], o["logger"]) for o in objs] == [
        ("info", "streams.t"), ("warning", "py.warnings"), ("error", "streams.t")]
    assert objs[0]["message"] == "hello there"
    assert "careful" in objs[1]["message"]
    assert "ZeroDivisionError" in objs[2]["exc"]
    assert all(set(o) >= {"ts", "level", "logger", "message"} for o in objs)


def test_text_stays_the_default_and_a_bad_format_is_refused(tmp_path: Path) -> None:
    text = _cli_logs(tmp_path, GEOTEL_LOG_LEVEL="info")
    assert text.returncode == 0, text.stderr
    assert "INFO streams.t: hello there" in text.stderr
    bad = subprocess.run([*GEOTEL, "config", "show"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                     "GEOTEL_LOG_FORMAT": "xml"})
    assert bad.returncode == 2 and "log_format" in bad.stderr, bad.stderr


def _run_in_terminal(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``cmd`` with a pseudo-terminal as stdout/stderr; its exit code and output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.integration
def test_worker_logs_json_and_simulate_shows_progress(tmp_path: Path) -> None:
    stack = Stack(tmp_path, extra_env={"GEOTEL_LOG_FORMAT": "json", "GEOTEL_LOG_LEVEL": "info"})
    stack.start()
    try:
        code, out = _run_in_terminal([*GEOTEL, "simulate", "--reps", "2", "--speedup", "0"],
                                     stack.env, stack.root)
        plain = ANSI.sub("", out)
        assert code == 0, plain
        sent = re.search(r"sent (\d+) events", plain)
        assert sent, plain
        bar = re.findall(r"uploading.*?(\d+)/(\d+) events", plain)
        assert bar and bar[-1] == (sent.group(1), sent.group(1)), plain
        piped = stack.cli("simulate", "--reps", "1", "--speedup", "0", "--seed", "8")
        assert "uploading" not in piped.stdout and "sent " in piped.stdout
    finally:
        stack.stop()
    lines = [ln for ln in stack.log_path.read_text().splitlines() if ln.strip()]
    objs = [json.loads(ln) for ln in lines]  # every line: no plain text in the stream
    assert all(set(o) >= {"ts", "level", "logger", "message"} for o in objs)
    loggers = {o["logger"].split(".")[0] for o in objs}
    assert {"streams", "faust"} <= loggers, loggers
