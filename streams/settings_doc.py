"""Render docs/configuration.md from the settings model, so the doc cannot drift."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from streams.settings import Settings

HEADER = """# Configuration

Generated from `streams/settings.py` by `geotel config docs`; a test fails when this file is
stale. Every key is an environment variable (or a line in `.env`) with the prefix `GEOTEL_`;
nested keys use `__`, e.g. `GEOTEL_KAFKA__BOOTSTRAP_SERVERS=kafka1:9092,kafka2:9092`.
Secrets are `SecretStr`: they are masked in logs and in `geotel config show`.

The embedded profile (default) needs no settings at all. The external profile needs
`GEOTEL_PROFILE=external`, `GEOTEL_KAFKA__BOOTSTRAP_SERVERS` and `GEOTEL_CLICKHOUSE__URL`.

| variable | type | default | meaning |
| --- | --- | --- | --- |
"""


def _type(info: FieldInfo) -> str:
    ann = info.annotation
    text = getattr(ann, "__name__", None) or str(ann)
    return text.replace("typing.", "").replace("pathlib.", "").replace("pydantic.types.", "")


def _default(info: FieldInfo) -> str:
    d: Any = info.default
    if d is None:
        return "unset"
    if hasattr(d, "get_secret_value"):
        return "(empty)" if not d.get_secret_value() else "(secret)"
    if hasattr(d, "value"):
        return str(d.value)
    return str(d)


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(_rows(ann, f"{prefix}{name.upper()}__"))
            continue
        desc = (info.description or "").replace("|", "\\|").replace("\n", " ")
        typ = _type(info).replace("|", "\\|")
        out.append(f"| `{prefix}{name.upper()}` | {typ} | `{_default(info)}` | {desc} |")
    return out


def render() -> str:
    return HEADER + "\n".join(_rows(Settings, "GEOTEL_")) + "\n"
