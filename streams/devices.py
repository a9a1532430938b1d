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
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter

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

    def active_for_device(self, device_id: str) -> list[DeviceRecord]:
        return [r for r in self._by_hash.values() if r.device_id == device_id and not r.revoked]

    def devices(self) -> dict[str, str]:
        """device_id -> rep_id of devices with an active token."""
        return {r.device_id: r.rep_id for r in self._by_hash.values() if not r.revoked}

    def __len__(self) -> int:
        return len(self._by_hash)


def encode(rec: DeviceRecord) -> bytes:
    return orjson.dumps(rec.model_dump(mode="json"))


def decode(raw: bytes) -> DeviceRecord:
    return DeviceRecord.model_validate_json(raw)


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
