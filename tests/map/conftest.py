"""One stack per package: 8 simulated reps yesterday, three of them in the field now."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.analysts.fielddata import FieldData, populate
from tests.conftest import Stack

LIVE = {0: "visiting", 1: "travelling", 2: "stopped"}
BREAK_MAX_S = 600
ALERT_ENV = {"GEOTEL_ALERTS__BREAK_MAX_S": str(BREAK_MAX_S),
             "GEOTEL_ALERTS__OUT_OF_TERRITORY_MAX_S": "300"}


@pytest.fixture(scope="package")
def mapstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, FieldData]]:
    # Alert limits low enough that the simulated days raise some (docs/alerts.md)
    stack = Stack(tmp_path_factory.mktemp("map"), extra_env=ALERT_ENV)
    stack.start()
    try:
        yield stack, populate(stack, reps=8, days=1, seed=3, live=LIVE)
    finally:
        stack.stop()
