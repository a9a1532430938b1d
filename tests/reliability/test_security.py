"""Security properties of the running stack: device tokens (entropy, stored hashed, revoke
and rotate take effect on the running ingest), spoofing rejected and counted, the per-device
rate limit, secrets kept out of logs and ``geotel config show``, and the read-only SQL
endpoint."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer

from streams.devices import TOKEN_PREFIX, new_token
from tests.conftest import Stack, ping, wait_for

pytestmark = pytest.mark.integration

SECRETS = {
    "GEOTEL_CLICKHOUSE__PASSWORD": "ch-pw-" + uuid.uuid4().hex,
    "GEOTEL_KAFKA__SASL_PASSWORD": "sasl-pw-" + uuid.uuid4().hex,
    "GEOTEL_QUERY__TOKEN": "sql-tok-" + uuid.uuid4().hex,
}
RATE = {"GEOTEL_INGEST__RATE_LIMIT_EVENTS_PER_S": "5",
        "GEOTEL_INGEST__RATE_LIMIT_BURST_EVENTS": "20"}


@pytest.fixture(scope="module")
def sec_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("sec"),
              extra_env={**SECRETS, **RATE, "GEOTEL_LOG_LEVEL": "debug"})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def sql(stack: Stack, query: str, token: str | None = SECRETS["GEOTEL_QUERY__TOKEN"]
        ) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return stack.http.post("/v1/sql", json={"sql": query, "format": "json"}, headers=headers)


def scalar(stack: Stack, query: str) -> Any:
    r = sql(stack, query)
    assert r.status_code == 200, r.text
    return next(iter(r.json()["data"][0].values()))


def now_ping(dev: str, rep: str) -> dict[str, Any]:
    return ping(dev, rep, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5))


def metric(stack: Stack, name: str) -> float:
    text = stack.http.get("/metrics").text
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


# -- tokens ---------------------------------------------------------------------------------
def _secret_bytes(token: str) -> bytes:
    body = token.removeprefix(TOKEN_PREFIX)
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def test_token_entropy_is_at_least_128_bits(sec_stack: Stack) -> None:
    issued = sec_stack.add_device("rep-sec-e", "dev-sec-e")
    assert issued.startswith(TOKEN_PREFIX)
    assert len(_secret_bytes(issued)) * 8 >= 128
    tokens = [new_token() for _ in range(10_000)]
    assert len(set(tokens)) == len(tokens)
    raw = [_secret_bytes(t) for t in tokens]
    bits = min(len(r) for r in raw) * 8
    assert bits >= 128
    # every bit position is a fair coin (|p - 0.5| < 0.03 over 10,000 tokens: > 6 sigma)
    ones = [0] * bits
    for r in raw:
        n = int.from_bytes(r, "big")
        for i in range(bits):
            ones[i] += (n >> i) & 1
    worst = max(abs(c / len(raw) - 0.5) for c in ones)
    assert worst < 0.03, worst
    print(f"RESULT security token_bits={bits} tokens_checked={len(tokens)} "
          f"worst_bit_bias={worst:.4f}")


def test_tokens_are_stored_only_hashed(sec_stack: Stack) -> None:
    token = sec_stack.add_device("rep-sec-h", "dev-sec-h")
    journal = (sec_stack.root / "var" / "devices.jsonl").read_bytes()
    assert token.encode() not in journal
    assert _secret_bytes(token) not in journal
    assert hashlib.sha256(token.encode()).hexdigest().encode() in journal
    consumer = KafkaConsumer("geotel.devices", bootstrap_servers=sec_stack.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    records = [(m.key or b"") + (m.value or b"") for m in consumer]
    consumer.close()
    assert records and not any(token.encode() in r for r in records)
    # nor anywhere else under the data directory (chDB files, logs, journals)
    for path in (sec_stack.root / "var").rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert token.encode() not in path.read_bytes(), path


def _until_status(stack: Stack, token: str, dev: str, rep: str, want: int,
                  timeout_s: float = 15) -> float:
    t0 = time.monotonic()
    wait_for(lambda: stack.post(token, [now_ping(dev, rep)]).status_code == want, timeout_s,
             f"ingest answers {want}", 0.1)
    return time.monotonic() - t0


def test_revoked_and_rotated_tokens_are_rejected_by_the_running_ingest(
        sec_stack: Stack) -> None:
    s = sec_stack
    tok = s.add_device("rep-sec-r", "dev-sec-r")
    assert s.post(tok, [now_ping("dev-sec-r", "rep-sec-r")]).status_code == 202
    out = s.cli("devices", "revoke", "--device", "dev-sec-r").stdout
    assert "revoked 1" in out
    revoke_s = _until_status(s, tok, "dev-sec-r", "rep-sec-r", 401)
    resp = s.post(tok, [now_ping("dev-sec-r", "rep-sec-r")])
    assert resp.json()["error"] == "unauthorized" and resp.json()["detail"]
    assert resp.headers.get("WWW-Authenticate") == "Bearer"

    old = s.add_device("rep-sec-o", "dev-sec-o")
    new = s.cli("devices", "rotate", "--device", "dev-sec-o").stdout.strip()
    assert new.startswith(TOKEN_PREFIX) and new != old
    rotate_s = _until_status(s, new, "dev-sec-o", "rep-sec-o", 202)
    _until_status(s, old, "dev-sec-o", "rep-sec-o", 401)
    # a revocation stays final: the old token never comes back
    for _ in range(5):
        assert s.post(old, [now_ping("dev-sec-o", "rep-sec-o")]).status_code == 401
    print(f"RESULT security revoke_effective_s={revoke_s:.2f} rotate_effective_s={rotate_s:.2f}")


def test_spoof_attempts_are_rejected_and_counted(sec_stack: Stack) -> None:
    s = sec_stack
    tok = s.add_device("rep-sec-s", "dev-sec-s")
    before = metric(s, "geotel_ingest_spoof_attempts_total")
    evs = [now_ping("dev-sec-s", "rep-sec-s"), now_ping("dev-sec-s", "rep-victim"),
           now_ping("dev-victim", "rep-sec-s"), now_ping("dev-victim", "rep-victim"),
           now_ping("dev-sec-s", "rep-sec-s")]
    resp = s.post(tok, evs)
    assert resp.status_code == 202
    res = resp.json()["results"]
    assert [r["status"] for r in res] == ["accepted", "rejected", "rejected", "rejected",
                                          "accepted"]
    assert all(r["reason"] == "identity_mismatch" for r in res[1:4])
    assert metric(s, "geotel_ingest_spoof_attempts_total") == before + 3
    wait_for(lambda: int(scalar(s, "SELECT count() FROM events WHERE device_id = "
                                "'dev-sec-s'")) == 2, 30, "the two honest events are stored")
    assert int(scalar(s, "SELECT count() FROM events WHERE rep_id = 'rep-victim' "
                      "OR device_id = 'dev-victim'")) == 0


def test_per_device_rate_limit_answers_429_with_retry_after(sec_stack: Stack) -> None:
    s = sec_stack
    tok = s.add_device("rep-sec-l", "dev-sec-l")
    other = s.add_device("rep-sec-m", "dev-sec-m")
    burst = [now_ping("dev-sec-l", "rep-sec-l") for _ in range(20)]
    assert s.post(tok, burst).status_code == 202  # the whole burst at once
    over = [now_ping("dev-sec-l", "rep-sec-l") for _ in range(10)]
    resp = s.post(tok, over)
    assert resp.status_code == 429, resp.text
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= 3  # 10 events at 5 events/s
    assert resp.json()["error"] == "rate_limited" and resp.json()["detail"]
    # another device is not limited by this one
    assert s.post(other, [now_ping("dev-sec-m", "rep-sec-m")]).status_code == 202
    time.sleep(retry_after + 0.2)
    assert s.post(tok, over).status_code == 202  # the same events, after waiting
    wait_for(lambda: int(scalar(s, "SELECT count() FROM events WHERE device_id = "
                                "'dev-sec-l'")) == 30, 30, "burst and retried events stored")
    # sustained: 5 events/s pass, more do not
    sent, limited = 0, 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0:
        r = s.post(tok, [now_ping("dev-sec-l", "rep-sec-l")])
        sent += r.status_code == 202
        limited += r.status_code == 429
        time.sleep(0.05)
    took = time.monotonic() - t0
    assert limited > 0 and sent <= 5 * took + 20 + 1
    print(f"RESULT security rate_limit retry_after_s={retry_after} "
          f"sustained_accepted_per_s={sent / took:.1f} limited={limited}")


def test_secrets_never_appear_in_logs_or_config_show(sec_stack: Stack) -> None:
    s = sec_stack
    # exercise the paths that log: a query, a failing query, uploads, a device command
    assert sql(s, "SELECT 1").status_code == 200
    assert sql(s, "SELECT nonsense(").status_code == 400
    s.cli("sql", "SELECT count() FROM events", "--format", "csv")
    shown = s.cli("config", "show").stdout
    assert "**" in shown  # masked, and present
    texts = {"config show": shown, "/health": s.http.get("/health").text,
             "/metrics": s.http.get("/metrics").text}
    for path in s.root.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            texts[str(path.relative_to(s.root))] = path.read_bytes().decode("utf-8", "replace")
    assert any(name.endswith("up.log") for name in texts)
    for env, secret in SECRETS.items():
        leaks = [name for name, text in texts.items() if secret in text]
        assert not leaks, f"{env} appears in {leaks}"
    print(f"RESULT security secrets_checked={len(SECRETS)} files_scanned={len(texts) - 3}")


def test_sql_endpoint_needs_its_token(sec_stack: Stack) -> None:
    for token in (None, "wrong", SECRETS["GEOTEL_QUERY__TOKEN"] + "x"):
        r = sql(sec_stack, "SELECT 1", token=token)
        assert r.status_code == 401, (token, r.text)
        assert r.json()["error"]
    assert sql(sec_stack, "SELECT 1").status_code == 200


REFUSED = [
    "INSERT INTO events_all (event_id) VALUES (generateUUIDv4())",
    "insert into events_all select * from events_all limit 1",
    "ALTER TABLE events_all DELETE WHERE 1",
    "ALTER TABLE events_all UPDATE rep_id = 'x' WHERE 1",
    "DELETE FROM events_all WHERE 1",
    "TRUNCATE TABLE events_all",
    "OPTIMIZE TABLE events_all FINAL",
    "CREATE TABLE x (a Int8) ENGINE = Memory",
    "DROP TABLE events_all",
    "RENAME TABLE events_all TO e2",
    "DETACH TABLE events_all",
    "SYSTEM DROP MARK CACHE",
    "KILL QUERY WHERE 1",
    "SET readonly = 0",
    "GRANT ALL ON *.* TO default",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1; DROP TABLE events_all",
    "SELECT 1 /* ; */ ; INSERT INTO events_all (event_id) VALUES (generateUUIDv4())",
    "WITH 1 AS x SELECT x INTO OUTFILE '{out}'",
    "SELECT 1 INTO   OUTFILE '{out}' FORMAT CSV",
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT file('/etc/hostname')",
    "SELECT * FROM FILE ('/etc/hostname', 'LineAsString')",
    "SELECT * FROM file/**/('/etc/hostname', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
    "SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV')",
    "SELECT * FROM remote('127.0.0.1:9', system.one)",
    "SELECT * FROM executable('id', 'TSV', 'x String')",
    "SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')",
    "SELECT * FROM loop(file('/etc/hostname', 'LineAsString')) LIMIT 1",
    "DESCRIBE TABLE file('/etc/hostname', 'LineAsString')",
    "EXPLAIN SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
]


def _refused(stack: Stack, queries: list[str], tmp_path: Path) -> list[str]:
    out = tmp_path / "leak.csv"
    allowed = []
    for q in queries:
        r = sql(stack, q.replace("{out}", str(out)))
        if not (400 <= r.status_code < 500 and r.json().get("error")):
            allowed.append(f"{q!r} -> {r.status_code} {r.text[:120]}")
    assert not out.exists(), "INTO OUTFILE wrote a file"
    return allowed


def test_sql_endpoint_is_read_only(sec_stack: Stack, tmp_path: Path) -> None:
    tables = len(sql(sec_stack, "SHOW TABLES").json()["data"])
    rows = int(scalar(sec_stack, "SELECT count() FROM events_all"))
    allowed = _refused(sec_stack, REFUSED, tmp_path)
    assert not allowed, allowed
    assert len(sql(sec_stack, "SHOW TABLES").json()["data"]) == tables
    assert int(scalar(sec_stack, "SELECT count() FROM events_all")) == rows
    print(f"RESULT security sql_statements_refused={len(REFUSED)}")


def test_sql_endpoint_refuses_quoted_table_functions(sec_stack: Stack, tmp_path: Path) -> None:
    bypasses = [
        "SELECT * FROM `file`('/etc/hostname', 'LineAsString')",
        'SELECT * FROM "file"(\'/etc/hostname\', \'LineAsString\')',
        "SELECT `file`('/etc/hostname')",
        r"SELECT * FROM `fi\x6ce`('/etc/hostname', 'LineAsString')",
        "SELECT $$'$$ AS a, file('/etc/hostname') AS b, $$'$$ AS c",
        # `url`(...) passes as well and connects out; left out here because ClickHouse
        # retries the refused connection for about 30 s
    ]
    allowed = _refused(sec_stack, bypasses, tmp_path)
    assert not allowed, allowed
