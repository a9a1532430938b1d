"""The sessions stage deletes stored copies that never count in statements that stay under
ClickHouse's max_query_size, however many there are (a crash replay of 500,000 events
produced statements of 2,000 keys, over the limit, and the stage failed on every take)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from sinks.migrations import migrate
from streams.privacy import delete_uncounted

pytestmark = pytest.mark.integration


def test_many_uncounted_copies_are_deleted_in_statements_the_store_accepts(ch: Any) -> None:
    migrate(ch)
    t0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
    rep = "rep-" + "x" * 60  # long rep ids make long keys
    copies = [(rep, uuid.UUID(int=i + 1), t0 + dt.timedelta(seconds=i), t0)
              for i in range(5000)]
    delete_uncounted(ch, copies)  # raised "Max query size exceeded" with 2,000 per statement
    mutations = ch.command("SELECT count() FROM system.mutations WHERE table = 'events_all' "
                           "AND database = currentDatabase()")
    assert 3 <= int(mutations) <= 10, mutations  # statements of about 200,000 characters
