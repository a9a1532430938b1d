"""The examples in the geo docstrings run and stay true."""

from __future__ import annotations

import doctest
import importlib
import os

import pytest
from geo_fixtures import ROOT

MODULES = ["geo.errors", "geo.report", "geo.fields", "geo.geometry", "geo.loader",
           "geo.metric", "geo.overlap", "geo.grid", "geo.places", "geo.index", "geo.sample"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # examples read data/sample relative to the repository
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
    assert os.getcwd() == str(ROOT)
