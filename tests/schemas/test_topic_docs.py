"""docs/topics.md agrees with the wire contracts of the derived topics (schemas/topics.py)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from schemas.derived import DeadLetter, EventStatus
from schemas.records import RepDay
from schemas.topics import SCHEMA_FILES, TOPIC_VALUES, FieldSegmentsMessage, encode
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "topics.md").read_text()


def section(title: str) -> str:
    m = re.search(rf"^### `{re.escape(title)}`\n(.*?)(?=^#)", DOC, re.S | re.M)
    assert m, f"no section for {title}"
    return m.group(1)


def table_row(topic: str) -> str:
    (row,) = [ln for ln in DOC.splitlines() if ln.startswith(f"| `{topic}` |")]
    return row


@pytest.mark.parametrize("stem, topic", sorted(SCHEMA_FILES.items()))
def test_the_topic_table_links_the_exported_schema(stem: str, topic: str) -> None:
    assert f"(../schemas/json/{stem}.json)" in table_row(topic)
    assert (ROOT / "schemas" / "json" / f"{stem}.json").exists()


def test_the_workday_section_names_every_field_of_the_message() -> None:
    text = section("field.workdays")
    missing = [f for f in RepDay.model_fields if f"`{f}`" not in text]
    assert not missing, f"docs/topics.md field.workdays does not name {missing}"


@pytest.mark.parametrize("topic", ["field.segments", "field.transitions"])
def test_the_envelope_keys_in_the_table_are_the_model_fields(topic: str) -> None:
    keys = re.findall(r'"(\w+)"', table_row(topic).split("|")[4])
    assert keys == list(TOPIC_VALUES[topic].model_fields), keys


def test_the_deadletter_reasons_in_the_doc_are_the_model_reasons() -> None:
    text = section("telemetry.deadletter")
    reasons = DeadLetter.model_fields["reason"].annotation
    assert reasons is not None
    missing = [r.value for r in reasons if f"`{r.value}`" not in text]  # type: ignore[union-attr]
    assert not missing, missing


def test_encode_takes_only_topic_models() -> None:
    with pytest.raises(TypeError):
        encode(EventStatus(index=0, status="accepted"))
    msg = FieldSegmentsMessage(rep_id="r", local_date=dt.date(2026, 11, 2), version=1,
                               segments=[])
    assert encode(msg) == (b'{"rep_id":"r","local_date":"2026-11-02","version":1,'
                           b'"segments":[],"retracted":[]}')
