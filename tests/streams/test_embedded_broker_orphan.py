"""The embedded broker does not outlive the process that started it, and a broker left on
the port by an earlier run is stopped at the next start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker, port_open, port_taken, tansu_binary
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration


def _wait(cond: object, timeout_s: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if cond():  # type: ignore[operator]
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s}s")


def test_the_broker_dies_with_a_sigkilled_parent(tmp_path: Path) -> None:
    port = free_port()
    code = ("import sys, time\n"
            "from pathlib import Path\n"
            "from streams.broker import EmbeddedBroker\n"
            f"b = EmbeddedBroker({port}, log_path=Path({str(tmp_path / 't.log')!r}))\n"
            "b.start()\n"
            "print('up', flush=True)\n"
            "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)},
                              start_new_session=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == b"up"
        assert port_open("127.0.0.1", port)
        os.killpg(parent.pid, signal.SIGKILL)  # the broker is in a session of its own
        parent.wait()
        gone_s = _wait(lambda: not port_open("127.0.0.1", port), 3.0)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert gone_s < 3.0


def test_a_broker_left_on_the_port_is_stopped_at_start(tmp_path: Path) -> None:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    # a broker whose starter is not a geotel process, as after a crash with no death signal
    stale = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", url,
                              "--advertised-listener-url", url, "--storage-engine",
                              "memory://tansu/"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    pid_path = tmp_path / "tansu.pid"
    pid_path.write_text(f"{stale.pid}\n")
    broker = EmbeddedBroker(port, log_path=tmp_path / "t.log", pid_path=pid_path)
    try:
        _wait(lambda: port_open("127.0.0.1", port), 10.0)
        broker.start()
        assert stale.wait(5) == -signal.SIGKILL
        assert broker.proc is not None and broker.proc.poll() is None
        assert int(pid_path.read_text()) == broker.proc.pid
    finally:
        broker.stop()
        if stale.poll() is None:
            stale.kill()


def test_a_busy_port_of_someone_else_is_not_taken(tmp_path: Path) -> None:
    port = free_port()
    other = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                              "127.0.0.1"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    pid_path = tmp_path / "tansu.pid"
    pid_path.write_text(f"{other.pid}\n")  # not a broker: left alone
    try:
        _wait(lambda: port_open("127.0.0.1", port), 10.0)
        with pytest.raises(Exception, match="already in use"):
            EmbeddedBroker(port, log_path=tmp_path / "t.log", pid_path=pid_path).start()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_taken_port_whose_accept_queue_is_full_is_still_taken() -> None:
    """A listener that accepts nothing (its queue full, as on a loaded machine): connecting
    times out, so only binding tells that the port is taken."""
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen(0)
        waiting = [socket.create_connection(("127.0.0.1", port), timeout=1)]
        for _ in range(8):  # fill the queue: later connects are not answered
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            waiting.append(s)
        try:
            assert port_taken(port)
        finally:
            for s in waiting:
                s.close()
    assert not port_taken(port)
