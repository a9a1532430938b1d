"""Signed device records: a record the service did not write does not make a token."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import orjson
import pytest

from streams.devices import DeviceError, decode, encode, issue, signing_key


def test_only_records_signed_with_the_key_decode(tmp_path: Path) -> None:
    key = signing_key(tmp_path, None, embedded=True)
    assert key is not None and signing_key(tmp_path, None, embedded=True) == key
    assert stat.S_IMODE((tmp_path / "devices.key").stat().st_mode) == 0o600
    _, rec = issue("dev-1", "rep-1", dt.datetime(2026, 3, 3, tzinfo=dt.UTC))
    assert decode(encode(rec, key), key) == rec
    with pytest.raises(DeviceError):
        decode(encode(rec), key)  # unsigned
    with pytest.raises(DeviceError):
        decode(encode(rec, b"another key" * 4), key)
    doc = orjson.loads(encode(rec, key))
    doc["rep_id"] = "rep-2"  # a signed record altered
    with pytest.raises(DeviceError):
        decode(orjson.dumps(doc), key)
    # external profile without a configured key: unsigned, as before
    assert signing_key(tmp_path / "x", None, embedded=False) is None
    assert decode(encode(rec)) == rec
