"""A minimal W3C WebDriver client for the map tests: Debian's chromium-driver drives headless
Chromium, spoken to over plain HTTP (httpx), so clicking a rep and reading the panel needs
no browser-automation package.

When no Chromium or chromedriver is installed the map tests FAIL with how to install them
(``make browser``), never skip: ``make test`` installs them first, and a missing browser
must not pass as a green run.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port

CHROMIUM = next((p for p in (shutil.which(n) for n in (
    "chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"))
    if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars"]
MISSING = ("the map tests need Chromium and chromedriver: `make browser` (Debian: "
           "apt-get install chromium chromium-driver)")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def require_browser() -> tuple[str, str]:
    """The Chromium and chromedriver binaries, or AssertionError saying how to install."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        raise AssertionError(MISSING)
    return CHROMIUM, CHROMEDRIVER


class Browser:
    """One chromedriver process and one headless Chromium session."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 900) -> None:
        chrome, driver = require_browser()
        port = free_port()
        self.proc = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.http.get("/status").json()["value"]["ready"]:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("chromedriver did not start")
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chrome, "args": [
                *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]},
        }}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self.http.request(method, path, json=body if body is not None else None)
        doc = r.json()
        if r.status_code >= 400:
            raise AssertionError(f"webdriver {method} {path}: {r.status_code} {doc}")
        return doc["value"]

    def _s(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self._s("POST", "/url", {"url": url})

    def js(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body; ``arguments`` holds ``args``) and return its value."""
        return self._s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def js_async(self, script: str, *args: Any) -> Any:
        """Run ``script``; it calls ``arguments[arguments.length - 1](value)`` when done."""
        return self._s("POST", "/execute/async", {"script": script, "args": list(args)})

    def wait(self, script: str, timeout_s: float = 30, what: str = "") -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            v = self.js(script)
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or script}")
            time.sleep(0.1)

    def click(self, css: str) -> None:
        el = self._s("POST", "/element", {"using": "css selector", "value": css})
        ref = el.get(ELEMENT) or el.get("ELEMENT")
        if ref is None:
            raise AssertionError(f"no element reference for {css}: {el}")
        self._s("POST", f"/element/{ref}/click", {})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self._s("GET", "/screenshot")))

    def close(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        except (AssertionError, httpx.HTTPError):
            pass
        finally:
            self.http.close()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
