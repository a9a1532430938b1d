"""Pure-unit tests of the stream glue: devices, the SQL guard, the rate limit, settings."""

from __future__ import annotations

import datetime as dt

import pytest

from streams.devices import DeviceError, DeviceRegistry, Journal, hash_token, issue, revoke_records
from streams.ingest import TokenBucket
from streams.settings import Profile, Settings
from streams.settings_doc import render

NOW = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def test_tokens_are_random_hashed_and_revocable(tmp_path) -> None:
    tok, rec = issue("dev-1", "rep-1", NOW)
    assert tok.startswith("gt_") and len(tok) >= 40
    assert rec.token_hash == hash_token(tok) and tok not in rec.model_dump_json()
    reg = DeviceRegistry()
    reg.apply(rec)
    assert reg.authenticate(tok).rep_id == "rep-1"
    assert reg.authenticate(tok[:-1] + "x") is None
    assert reg.authenticate(None) is None and reg.authenticate("Bearer") is None
    j = Journal(tmp_path / "d.jsonl")
    revoked = revoke_records(reg, "dev-1")
    j.append([rec, *revoked])
    reg2 = DeviceRegistry()
    reg2.apply_all(j.read())
    assert reg2.authenticate(tok) is None
    reg2.apply(rec)  # an old record arriving late does not undo a revocation
    assert reg2.authenticate(tok) is None
    with pytest.raises(DeviceError):
        revoke_records(reg2, "dev-1")
    with pytest.raises(DeviceError):
        issue("bad id with spaces", "rep", NOW)


def test_token_bucket() -> None:
    t = [0.0]
    b = TokenBucket(rate=10, burst=100, clock=lambda: t[0])
    assert b.take("d", 100) == 0
    wait = b.take("d", 50)
    assert wait == pytest.approx(5.0)
    t[0] = 5.0
    assert b.take("d", 50) == 0
    assert b.take("other", 1) == 0


def test_settings_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.profile is Profile.embedded and s.bootstrap_servers.startswith("127.0.0.1:")
    monkeypatch.setenv("GEOTEL_PROFILE", "external")
    with pytest.raises(ValueError, match="GEOTEL_KAFKA__BOOTSTRAP_SERVERS"):
        Settings()
    monkeypatch.setenv("GEOTEL_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("GEOTEL_CLICKHOUSE__URL", "https://ch:8443")
    monkeypatch.setenv("GEOTEL_CLICKHOUSE__PASSWORD", "hunter2")
    s = Settings()
    assert s.bootstrap_servers == "k1:9092,k2:9092"
    assert "hunter2" not in s.model_dump_json() and "hunter2" not in repr(s)


def test_configuration_doc_is_current() -> None:
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == render(), "run `geotel config docs`"


def test_enriched_messages_stay_small_for_a_big_backlog() -> None:
    import uuid

    import orjson

    from schemas.derived import Enrichment
    from schemas.events import EVENT_ADAPTER
    from streams.enrich import MAX_EVENTS_PER_MESSAGE, encode_enriched_batches

    evs = [EVENT_ADAPTER.validate_python({
        "event_id": str(uuid.uuid4()), "device_id": "d", "rep_id": "r" if i % 10 else "q",
        "kind": "ping", "ts": "2026-11-02T08:00:00Z", "lat": 1, "lon": 2}) for i in range(5000)]
    msgs = list(encode_enriched_batches(evs, [Enrichment()] * len(evs)))
    got = [(k, orjson.loads(v)) for k, v in msgs]
    assert all(len(d["events"]) <= MAX_EVENTS_PER_MESSAGE for _, d in got)
    assert sum(len(d["events"]) for _, d in got) == 5000
    assert {e["event_id"] for _, d in got for e in d["events"]} == {str(e.event_id) for e in evs}
    assert all(k.decode() == d["rep_id"] for k, d in got)


@pytest.mark.parametrize("name", ["streams.auth", "streams.sqlclient", "sinks.readonly"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_bearer_only() -> None:
    from pydantic import SecretStr

    from streams.auth import bearer_ok, bearer_token

    t = [SecretStr("tok-1"), None, SecretStr("tok-2")]
    assert bearer_ok("Bearer tok-2", t) and bearer_ok("bearer tok-1", t)
    for h in ("Digest tok-1", "Basic tok-1", "Bearertok-1", "Bearer tok-1 x", "tok-1", "",
              None, "Bearer ", "Bearer tok-"):
        assert not bearer_ok(h, t), h
    assert bearer_token("Bearer  abc ") == "abc"
    assert not bearer_ok("Bearer anything", [None, SecretStr("")])


@pytest.mark.parametrize("host, tokens, ok", [
    ("127.0.0.1", {}, True), ("localhost", {}, True), ("::1", {}, True),
    ("127.0.0.2", {}, True),
    ("0.0.0.0", {}, False), ("::", {}, False), ("10.0.0.5", {}, False),
    ("geotel.example", {}, False),
    ("0.0.0.0", {"token": "a"}, False), ("0.0.0.0", {"viewer_token": "b"}, False),
    ("0.0.0.0", {"token": "a", "viewer_token": "b"}, True),
])
def test_a_network_address_needs_both_tokens(host: str, tokens: dict[str, str],
                                              ok: bool) -> None:
    from streams.settings import QuerySettings, Settings

    s = Settings(web_host=host, query=QuerySettings(**tokens))  # type: ignore[arg-type]
    problem = s.exposure_problem()
    assert (problem is None) is ok, problem
    if problem:
        assert "GEOTEL_QUERY__" in problem and "\n" not in problem
