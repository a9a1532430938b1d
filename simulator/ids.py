"""Seeds and identifiers that stay the same from run to run for the same seed."""

from __future__ import annotations

import hashlib
import uuid


def sub_seed(seed: int, *parts: object) -> int:
    """A 64-bit seed for one random stream; stable across runs and Python versions."""
    text = ":".join([str(seed), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def device_id_for(rep_id: str) -> str:
    return f"dev-{rep_id}"


def event_namespace(seed: int) -> uuid.UUID:
    """The uuid5 namespace of one simulation seed: event ids are uuid5(namespace, key)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"geotel-simulator/{seed}")
