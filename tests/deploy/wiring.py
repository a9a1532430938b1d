"""Helpers of the deployment tests: the settings model as environment names, the topics the
create-topics script really creates, image pins."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from streams.broker import pipeline_topics
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOPICS_SCRIPT = DEPLOY / "kafka" / "create-topics.sh"
#: Derived-record topics for downstream services (docs/architecture.md); created by the
#: deployment even before the worker publishes to them.
DERIVED_TOPICS = {"field.transitions", "field.segments", "field.workdays", "field.alerts"}
#: Topics keyed by device_id/rep_id, spread over GEOTEL_KAFKA__TOPIC_PARTITIONS partitions.
REGISTRY_TOPICS = {"geotel.devices", "geotel.territories", "geotel.accounts", "geotel.places",
                   "geotel.reps"}


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_secret(tp: Any) -> bool:
    if tp is SecretStr:
        return True
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return any(_is_secret(a) for a in typing.get_args(tp))
    return False


def settings_env() -> dict[str, bool]:
    """Every GEOTEL_* variable the settings model reads -> whether it is a secret."""
    prefix = Settings.model_config.get("env_prefix", "GEOTEL_")
    delim = Settings.model_config.get("env_nested_delimiter", "__")
    out: dict[str, bool] = {}
    for name, f in Settings.model_fields.items():
        if _is_model(f.annotation):
            for sub, sf in f.annotation.model_fields.items():  # type: ignore[union-attr]
                out[f"{prefix}{name}{delim}{sub}".upper()] = _is_secret(sf.annotation)
        else:
            out[f"{prefix}{name}".upper()] = _is_secret(f.annotation)
    return out


def default_settings() -> Settings:
    return Settings(_env_file=None, kafka={"topic_prefix": ""})  # type: ignore[call-arg]


def expected_topics() -> set[str]:
    return {t.name for t in pipeline_topics(default_settings())} | DERIVED_TOPICS


def assert_topics_like_geotel_creates(topics: dict[str, Topic], partitions: int,
                                      replication: int) -> None:
    """What the deployment creates is what geotel itself would create with these settings
    (streams/broker.py): same partitions, at least the same topic configs."""
    s = Settings(_env_file=None, kafka={"topic_prefix": "",  # type: ignore[call-arg]
                                        "topic_partitions": partitions,
                                        "replication_factor": replication})
    for spec in pipeline_topics(s):
        got = topics[spec.name]
        assert got.partitions == spec.num_partitions, spec.name
        assert got.replication == spec.replication_factor, spec.name
        want = dict(spec.topic_configs or {})
        if "max.message.bytes" in want:  # the deployment may allow larger messages
            assert int(got.configs["max.message.bytes"]) >= int(want.pop("max.message.bytes"))
        assert want.items() <= got.configs.items(), spec.name


@dataclass
class Topic:
    name: str
    partitions: int
    replication: int
    configs: dict[str, str] = field(default_factory=dict)


def topics_created(script_text: str, env: dict[str, str], tmp: Path) -> dict[str, Topic]:
    """Run the create-topics script with a stand-in kafka-topics.sh that records its
    arguments; return what it would create."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = tmp / "calls.log"
    fake = bin_dir / "kafka-topics.sh"
    fake.write_text(f'#!/bin/bash\nprintf "%q " "$@" >> {shlex.quote(str(log))}\n'
                    f'echo >> {shlex.quote(str(log))}\n')
    fake.chmod(0o755)
    script = tmp / "create-topics.sh"
    script.write_text(script_text)
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env, "KAFKA_BIN": str(bin_dir)}
    subprocess.run(["bash", str(script)], env=run_env, check=True, capture_output=True,
                   timeout=60)
    topics: dict[str, Topic] = {}
    for line in log.read_text().splitlines():
        args = shlex.split(line)
        if "--create" not in args:
            continue
        assert "--if-not-exists" in args, "topic creation must be idempotent"
        opt = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("--")}
        configs = dict(args[i + 1].split("=", 1) for i, a in enumerate(args[:-1])
                       if a == "--config")
        topics[opt["--topic"]] = Topic(opt["--topic"], int(opt["--partitions"]),
                                       int(opt["--replication-factor"]), configs)
    return topics


_PINNED = re.compile(r"^[\w.\-/:]+:(?P<tag>[\w.\-]+)$")


def image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    m = _PINNED.match(image)
    return bool(m and m["tag"] != "latest" and "/" not in m["tag"]
                and re.search(r"\d", m["tag"]))


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def load_all(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def host_port(addr: str) -> tuple[str, int]:
    addr = re.sub(r"^[a-z]+://", "", addr).split("/")[0]
    host, _, port = addr.rpartition(":")
    return host, int(port)
