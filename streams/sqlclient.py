"""`geotel sql`: through the service's read-only endpoint when it runs, else directly."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import orjson

from streams.query import QueryError
from streams.settings import Settings

# C0 controls but newline and tab, DEL, and C1 controls (ESC starts terminal sequences).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    r"""Escape control characters, so stored text cannot drive the terminal it is shown on.

    >>> terminal_safe("note\x1b]0;owned\x07 ok\n")
    'note\\x1b]0;owned\\x07 ok\n'
    """
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _service_url(s: Settings) -> str:
    host = "127.0.0.1" if s.web_host in ("0.0.0.0", "::") else s.web_host  # noqa: S104
    return f"http://{host}:{s.web_port}/v1/sql"


def run_sql(s: Settings, query: str, fmt: str) -> bytes:
    req = urllib.request.Request(  # noqa: S310 - our own service, http(s) only
        _service_url(s), data=orjson.dumps({"sql": query, "format": fmt}),
        headers={"Content-Type": "application/json"}, method="POST")
    if s.query.token is not None:
        req.add_header("Authorization", f"Bearer {s.query.token.get_secret_value()}")
    try:
        with urllib.request.urlopen(req, timeout=s.query.max_execution_s + 10) as resp:  # noqa: S310
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            err = orjson.loads(exc.read())
            raise QueryError(err.get("error", "query_failed"), err.get("detail", str(err)),
                             exc.code) from exc
        except orjson.JSONDecodeError:
            raise QueryError("query_failed", f"HTTP {exc.code}", exc.code) from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass  # the service is not running: open the store directly
    from streams.storage import analyst_sql

    try:
        engine = analyst_sql(s, max_concurrent=1)
    except Exception as exc:
        raise QueryError("store_unavailable", f"the service is not answering on "
                         f"{_service_url(s)} and the store cannot be opened: {exc}") from exc
    try:
        body, _ = engine.run(query, fmt)
        return body
    finally:
        engine.close()
