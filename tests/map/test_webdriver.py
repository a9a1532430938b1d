"""Without Chromium the map tests fail and say how to install it: never a silent skip."""

from __future__ import annotations

import pytest

import tests.map.webdriver as wd


def test_missing_chromium_fails_with_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wd, "CHROMIUM", None)
    with pytest.raises(AssertionError, match="make browser"):
        wd.require_browser()
    monkeypatch.setattr(wd, "CHROMIUM", "/usr/bin/chromium")
    monkeypatch.setattr(wd, "CHROMEDRIVER", None)
    with pytest.raises(AssertionError, match="chromium-driver"):
        wd.Browser.__init__(wd.Browser.__new__(wd.Browser), profile=None)  # type: ignore[arg-type]
