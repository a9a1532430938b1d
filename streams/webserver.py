"""The web server's guard rails: a time limit for request heads, a cap on open connections,
an idle timeout, and logging that cannot flood.

Faust serves its views with aiohttp, which waits for a request head as long as a client
likes and accepts connections until the process runs out of file descriptors. This module
wraps the runner of Faust's aiohttp driver once (the only place that knows its private
``_runner``): every connection is counted, refused past ``web.max_connections``, and closed
when its request head has not arrived within ``web.header_timeout_s``; idle keep-alive
connections close after ``web.idle_timeout_s``. Bodies have their own limit in the views
that read them (``web.body_timeout_s``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp.web_runner import AppRunner

log = logging.getLogger(__name__)


@dataclass
class ConnectionGuard:
    """Counters and limits shared by the connections of one server."""

    max_connections: int
    header_timeout_s: float
    open: int = 0
    refused: int = 0
    slow_closed: int = 0


class _GuardedProtocol(asyncio.Protocol):
    """Stands between asyncio and aiohttp's RequestHandler of one connection."""

    def __init__(self, inner: Any, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._made = False
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        g = self._guard
        if g.open >= g.max_connections:
            g.refused += 1
            transport.abort()  # type: ignore[attr-defined]
            return
        self._made = True
        self._transport = transport
        g.open += 1
        self._inner.connection_made(transport)
        self._timer = asyncio.get_running_loop().call_later(g.header_timeout_s, self._too_slow)

    def _too_slow(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._guard.slow_closed += 1
            self._transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self._made:
            return
        self._inner.data_received(data)
        # A parsed request head is queued for the handler: the client was quick enough.
        if self._timer is not None and (getattr(self._inner, "_messages", None) or
                                        getattr(self._inner, "_request_in_progress", False)):
            self._timer.cancel()
            self._timer = None

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._made else None  # type: ignore[no-any-return]

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._made:
            self._made = False
            self._guard.open -= 1
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._made:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._made:
            self._inner.resume_writing()


class _GuardedServer:
    """aiohttp's Server (the protocol factory), its connections guarded."""

    def __init__(self, server: Any, guard: ConnectionGuard) -> None:
        self._server = server
        self._guard = guard

    def __call__(self) -> _GuardedProtocol:
        return _GuardedProtocol(self._server(), self._guard)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class GuardedRunner(AppRunner):
    def __init__(self, app: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> Any:
        return _GuardedServer(await super()._make_server(), self.guard)


class RateLimitedLog(logging.Filter):
    """Lets at most ``burst`` records of one logger and message through per ``window_s``,
    then one summary of how many were dropped."""

    def __init__(self, burst: int = 10, window_s: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:80])
        now = time.monotonic()
        start, n = self._seen.get(key, (now, 0))
        if now - start > self.window_s:
            if n > self.burst:
                record.msg = f"{record.msg} [{n - self.burst} like it dropped in the last " \
                             f"{self.window_s:.0f} s]"
            start, n = now, 0
        self._seen[key] = (start, n + 1)
        if len(self._seen) > 1000:
            self._seen.clear()
        return n < self.burst


_FILTER = RateLimitedLog()


def _loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # Accept errors (EMFILE) repeat for every connection attempt; asyncio itself backs off
    # and resumes accepting, so a few lines say it all.
    record = logging.LogRecord("asyncio", logging.ERROR, __file__, 0,
                               str(context.get("message", "event loop error")), None, None)
    if _FILTER.filter(record):
        exc = context.get("exception")
        logging.getLogger("asyncio").error("%s: %r", record.msg, exc)


def harden(app: Any, *, max_connections: int, header_timeout_s: float,
           idle_timeout_s: float) -> ConnectionGuard:
    """Install the guard on a Faust app's aiohttp web server (before it starts)."""
    guard = ConnectionGuard(max_connections, header_timeout_s)
    web = app.web
    web._runner = GuardedRunner(web.web_app, guard, access_log=None,
                                keepalive_timeout=idle_timeout_s)
    for name in ("aiohttp.server", "aiohttp.access", "aiohttp.web", "asyncio"):
        logging.getLogger(name).addFilter(_FILTER)

    @app.task
    async def _quiet_loop_errors() -> None:
        asyncio.get_running_loop().set_exception_handler(_loop_exception_handler)

    return guard


def raise_fd_limit() -> None:
    """Use the hard file-descriptor limit: the connection cap, Kafka and chDB all need
    descriptors, and the soft default (1,024) is the first to run out."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):  # not on this platform, or not allowed
        log.debug("file descriptor limit unchanged", exc_info=True)
