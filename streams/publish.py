"""Writing the configuration records (device tokens, territory and account sets): to the
compacted topics, and in the embedded profile to their journals in ``data_dir`` first (the
embedded broker keeps topics in memory; ``geotel up`` replays the journals at start).

Used by the CLI, by the worker's admin erase, and by ``geotel up``."""

from __future__ import annotations

import logging

from kafka import KafkaProducer

from streams.broker import MAX_SET_BYTES, admin_kwargs, port_open
from streams.devices import DeviceRecord, Journal, device_key, encode
from streams.settings import DEVICES, Profile, Settings

log = logging.getLogger(__name__)


def journal(settings: Settings) -> Journal:
    return Journal(settings.data_dir / "devices.jsonl")


def publish_devices(settings: Settings, records: list[DeviceRecord], timeout_s: float = 10) -> None:
    """Publish device records to the devices topic and wait for the broker's ack."""
    key = device_key(settings)  # signed: ingest ignores records it cannot verify
    producer = KafkaProducer(acks="all", **admin_kwargs(settings))  # type: ignore[arg-type]
    try:
        for r in records:
            producer.send(settings.topic(DEVICES), key=r.token_hash.encode(),
                          value=encode(r, key))
        producer.flush(timeout=timeout_s)
    finally:
        producer.close(timeout=timeout_s)


def publish_geoset(settings: Settings, kind: str, value: bytes, timeout_s: float = 30) -> None:
    """Publish one territory/account set record (see streams/geosets.py)."""
    from streams.geosets import SETS

    producer = KafkaProducer(acks="all", max_request_size=MAX_SET_BYTES,
                             **admin_kwargs(settings))  # type: ignore[arg-type]
    try:
        producer.send(settings.topic(SETS[kind]), key=kind.encode(), value=value)
        producer.flush(timeout=timeout_s)
    finally:
        producer.close(timeout=timeout_s)


def embedded_running(settings: Settings) -> bool:
    return port_open("127.0.0.1", settings.kafka.embedded_port)


def save_devices(settings: Settings, records: list[DeviceRecord]) -> bool:
    """Journal (embedded profile) and publish device records; False when the embedded
    broker is not running (they are published when ``geotel up`` starts)."""
    if settings.profile is Profile.embedded:
        journal(settings).append(records)
        if not embedded_running(settings):
            return False
    publish_devices(settings, records)
    return True


def save_geoset(settings: Settings, kind: str, value: bytes) -> bool:
    """Journal (embedded profile) and publish a set record; False when the embedded broker
    is not running."""
    from streams.geosets import journal_path

    if settings.profile is Profile.embedded:
        path = journal_path(settings.data_dir, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value)
        if not embedded_running(settings):
            return False
    publish_geoset(settings, kind, value)
    return True
