"""Device tokens: issue, store hashed, revoke, rotate, look up.

A token is ``gt_`` + 32 bytes from ``secrets`` (256 random bits), shown once. Only its SHA-256
is stored: a fast hash is enough for a high-entropy secret (there is nothing to brute-force),
and it keeps the per-request check cheap.

Records live on the compacted topic ``geotel.devices`` (key: the token hash), which every
ingest process tails, so any number of ingest processes share one registry without a
database. The embedded broker keeps topics in memory only, so in the embedded profile every
record is also appended to ``data_dir/devices.jsonl`` and ``geotel up`` replays that journal
into the topic at start.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.errors import GeotelError
from schemas.events import Ident

TOKEN_PREFIX = "gt_"  # noqa: S105 - a prefix, not a secret
_IDENT: TypeAdapter[str] = TypeAdapter(Ident)


class DeviceError(GeotelError, ValueError):
    """A device command that cannot be carried out (unknown device, bad id)."""


class DeviceRecord(BaseModel):
    """One token of one device. ``revoked`` records stay, so a revocation is never undone by
    an older record arriving late."""

    model_config = ConfigDict(frozen=True)

    token_hash: str
    device_id: str
    rep_id: str
    created_at: dt.datetime
    revoked: bool = False
    sig: str | None = Field(default=None, description="HMAC-SHA256 (hex) of the other "
                            "fields as JSON with sorted keys, under the service's device key "
                            "(ingest.device_key): records without a valid one are ignored.")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Identity:
    device_id: str
    rep_id: str


class DeviceRegistry:
    """In-memory view of the device records, folded by token hash."""

    def __init__(self) -> None:
        self._by_hash: dict[str, DeviceRecord] = {}

    def apply(self, rec: DeviceRecord) -> None:
        prev = self._by_hash.get(rec.token_hash)
        if prev is not None and prev.revoked:
            return  # revocation is final
        self._by_hash[rec.token_hash] = rec

    def apply_all(self, recs: Iterable[DeviceRecord]) -> None:
        for r in recs:
            self.apply(r)

    def authenticate(self, token: str | None) -> Identity | None:
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        h = hash_token(token)
        rec = self._by_hash.get(h)
        # compare_digest: the dict lookup already matched; this keeps the check constant-time
        # should the lookup ever become a scan.
        if rec is None or rec.revoked or not hmac.compare_digest(rec.token_hash, h):
            return None
        return Identity(rec.device_id, rec.rep_id)

    def records(self) -> list[DeviceRecord]:
        """Every record held (the latest per token hash)."""
        return list(self._by_hash.values())

    def active_for_device(self, device_id: str) -> list[DeviceRecord]:
        return [r for r in self._by_hash.values() if r.device_id == device_id and not r.revoked]

    def devices(self) -> dict[str, str]:
        """device_id -> rep_id of devices with an active token."""
        return {r.device_id: r.rep_id for r in self._by_hash.values() if not r.revoked}

    def __len__(self) -> int:
        return len(self._by_hash)


def encode(rec: DeviceRecord, key: bytes | None = None) -> bytes:
    """The record's JSON; with ``key``, signed: ``sig`` is the HMAC-SHA256 of the record's
    other fields (sorted keys), so a record the service did not write is ignored."""
    doc = rec.model_dump(mode="json", exclude={"sig"})
    if key is not None:
        doc["sig"] = _signature(doc, key)
    return orjson.dumps(doc)


def decode(raw: bytes, key: bytes | None = None) -> DeviceRecord:
    """Parse a record; with ``key``, only a validly signed one (DeviceError otherwise)."""
    if key is None:
        return DeviceRecord.model_validate_json(raw)
    doc = orjson.loads(raw)
    sig = doc.pop("sig", None) if isinstance(doc, dict) else None
    if not isinstance(sig, str) or not hmac.compare_digest(sig, _signature(doc, key)):
        raise DeviceError("device record without a valid signature (not written by geotel)")
    return DeviceRecord.model_validate(doc)


def _signature(doc: dict[str, object], key: bytes) -> str:
    body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, body, hashlib.sha256).hexdigest()


KEY_FILE = "devices.key"


def signing_key(data_dir: Path, configured: str | None, embedded: bool) -> bytes | None:
    """The key that signs device records: ``configured`` (``ingest.device_key``), else in
    the embedded profile ``data_dir``/devices.key, created once (owner-only); else None
    (the external profile relies on the broker's SASL/ACLs)."""
    if configured:
        return configured.encode()
    if not embedded:
        return None
    path = data_dir / KEY_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    for _ in range(50):  # a process creating it at the same moment may not have written it
        key = path.read_text().strip()
        if len(key) >= 32:
            return key.encode()
        time.sleep(0.02)
    raise DeviceError(f"{path} holds no key; remove it to create a new one")


def device_key(settings: Any) -> bytes | None:
    """:func:`signing_key` of a ``streams.settings.Settings``."""
    configured = settings.ingest.device_key
    return signing_key(settings.data_dir, configured.get_secret_value() if configured else None,
                       settings.profile.value == "embedded")


def issue(device_id: str, rep_id: str, now: dt.datetime) -> tuple[str, DeviceRecord]:
    try:
        _IDENT.validate_python(device_id)
        _IDENT.validate_python(rep_id)
    except Exception as exc:
        raise DeviceError(f"invalid device or rep id: {exc}") from exc
    token = new_token()
    return token, DeviceRecord(token_hash=hash_token(token), device_id=device_id,
                               rep_id=rep_id, created_at=now)


def revoke_records(registry: DeviceRegistry, device_id: str) -> list[DeviceRecord]:
    recs = registry.active_for_device(device_id)
    if not recs:
        raise DeviceError(f"device {device_id!r} has no active token")
    return [r.model_copy(update={"revoked": True}) for r in recs]


class Journal:
    """Append-only local copy of device records (embedded profile)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, recs: Iterable[DeviceRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as f:
            for r in recs:
                f.write(encode(r) + b"\n")

    def read(self) -> list[DeviceRecord]:
        if not self.path.exists():
            return []
        return [decode(line) for line in self.path.read_bytes().splitlines() if line.strip()]
