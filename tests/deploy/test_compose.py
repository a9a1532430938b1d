"""Wiring of deploy/docker-compose.yml (parsed, not run: no container engine needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.broker import MAX_SET_BYTES
from tests.deploy.wiring import (
    DEPLOY,
    REGISTRY_TOPICS,
    TOPICS_SCRIPT,
    assert_topics_like_geotel_creates,
    default_settings,
    expected_topics,
    host_port,
    image_pinned,
    load_all,
    settings_env,
    topics_created,
)

COMPOSE = DEPLOY / "docker-compose.yml"
GEOTEL_SERVICES = ("ingest", "worker")
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def env_of(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v) for k, v in env.items()}


def healthcheck_cmd(svc: dict[str, Any]) -> str:
    test = svc["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def test_every_yaml_file_under_deploy_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert COMPOSE in files and len(files) >= 5
    for f in files:
        assert load_all(f), f"{f} is empty"


def test_kafka_is_a_three_node_kraft_quorum(services: dict[str, dict[str, Any]]) -> None:
    ids, cluster_ids, voters = {}, set(), set()
    for name in KAFKA_NODES:
        env = env_of(services[name])
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        ids[env["KAFKA_NODE_ID"]] = name
        cluster_ids.add(env["CLUSTER_ID"])
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert any(v.endswith(":/var/lib/kafka/data") for v in services[name]["volumes"])
        assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert len(cluster_ids) == 1 and len(voters) == 1 and len(ids) == 3
    quorum = dict(v.split("@") for v in voters.pop().split(","))
    assert {i: hp.split(":")[0] for i, hp in quorum.items()} == ids


def test_images_pinned_and_health_checked(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert image_pinned(svc["image"]), f"{name}: {svc['image']}"
        if svc.get("restart") != "no":  # one-shot init containers excepted
            assert "healthcheck" in svc, name
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    assert bases and all(b == "python:3.11-slim" for b in bases)
    assert re.search(r"pip install .*\s\.\s*$", dockerfile, re.M)


def test_geotel_services(services: dict[str, dict[str, Any]]) -> None:
    known = settings_env()
    for name in GEOTEL_SERVICES:
        svc = services[name]
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).exists()
        env = env_of(svc)
        unknown = {k for k in env if k.startswith("GEOTEL_")} - set(known)
        assert not unknown, f"{name}: not settings: {unknown}"
        assert env["GEOTEL_PROFILE"] == "external"
        assert env["GEOTEL_WEB_HOST"] == "0.0.0.0"
        assert float(env["GEOTEL_KAFKA__REBALANCE_TIMEOUT_S"]) >= 30
        port = env["GEOTEL_WEB_PORT"]
        assert [str(p) for p in svc["expose"]] == [port]
        hc = healthcheck_cmd(svc)
        assert f":{port}/health" in hc, hc
    assert services["ingest"]["command"][0] == "ingest"
    assert services["ingest"]["deploy"]["replicas"] == 2
    assert services["worker"]["command"][0] == "worker"


def test_bootstrap_and_clickhouse_point_at_compose_services(
        services: dict[str, dict[str, Any]]) -> None:
    for name in GEOTEL_SERVICES:
        env = env_of(services[name])
        for addr in env["GEOTEL_KAFKA__BOOTSTRAP_SERVERS"].split(","):
            host, port = host_port(addr)
            assert host in KAFKA_NODES
            listeners = env_of(services[host])["KAFKA_ADVERTISED_LISTENERS"]
            assert f"//{host}:{port}" in listeners
        host, port = host_port(env["GEOTEL_CLICKHOUSE__URL"])
        assert host == "clickhouse" and port == 8123
        deps = services[name]["depends_on"]
        assert deps["kafka-init"]["condition"] == "service_completed_successfully"
        assert deps["clickhouse"]["condition"] == "service_healthy"
    init = env_of(services["kafka-init"])
    assert init["BOOTSTRAP"] == env_of(services["worker"])["GEOTEL_KAFKA__BOOTSTRAP_SERVERS"]


def test_secrets_only_come_from_the_env_file(services: dict[str, dict[str, Any]]) -> None:
    secret_names = {k for k, secret in settings_env().items() if secret}
    ref = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")
    for name, svc in services.items():
        for k, v in env_of(svc).items():
            if k in secret_names or re.search(r"PASSWORD|TOKEN|SECRET", k):
                assert ref.match(v), f"{name}: {k} is inline; reference deploy/.env instead"
    example = (DEPLOY / "env.example").read_text()
    for k, v in (line.split("=", 1) for line in example.splitlines()
                 if line and not line.startswith("#")):
        if re.search(r"PASSWORD|TOKEN", k):
            assert v == "", f"env.example must not carry a value for {k}"
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()
    # the SQL endpoint listens on 0.0.0.0: it must require a token
    assert "GEOTEL_QUERY__TOKEN" in env_of(services["worker"])


def test_topics_match_the_pipeline(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    init = services["kafka-init"]
    assert any(v.startswith("./kafka/create-topics.sh:") for v in init["volumes"])
    assert image_pinned(init["image"])
    env = env_of(init)
    topics = topics_created(TOPICS_SCRIPT.read_text(), env, tmp_path)
    assert set(topics) == expected_topics()
    geotel = env_of(services["worker"])
    partitions = int(geotel["GEOTEL_KAFKA__TOPIC_PARTITIONS"])
    rf = int(geotel["GEOTEL_KAFKA__REPLICATION_FACTOR"])
    assert_topics_like_geotel_creates(topics, partitions, rf)
    assert env["PARTITIONS"] == str(partitions) and env.get("PREFIX", "") == geotel.get(
        "GEOTEL_KAFKA__TOPIC_PREFIX", "")
    s = default_settings()
    for t in topics.values():
        assert t.replication == rf == 3
        assert int(t.configs["min.insync.replicas"]) == 2 < t.replication
        if t.name in REGISTRY_TOPICS:
            assert t.partitions == 1 and t.configs["cleanup.policy"] == "compact"
        else:
            assert t.partitions == partitions
    for name in ("geotel.territories", "geotel.accounts"):
        assert int(topics[name].configs["max.message.bytes"]) >= MAX_SET_BYTES
    # an upload (one message) may be as large as the ingest body limit
    assert (int(topics["telemetry.raw"].configs["max.message.bytes"])
            >= s.ingest.max_body_bytes)
    workers = services["worker"]["deploy"]["replicas"]
    assert 1 <= workers <= partitions


def test_edge_proxy_routes_to_geotel_services(services: dict[str, dict[str, Any]]) -> None:
    edge = services["edge"]
    conf_mount = next(v for v in edge["volumes"] if "nginx" in v)
    conf = (DEPLOY / conf_mount.split(":")[0]).read_text()
    port = env_of(services["ingest"])["GEOTEL_WEB_PORT"]
    targets = dict(re.findall(r"set \$(\w+) http://([\w-]+:\d+);", conf))
    assert targets == {"ingest": f"ingest:{port}", "worker": f"worker:{port}"}
    assert re.search(r"location = /v1/events\s*\{\s*proxy_pass \$ingest;", conf)
    assert re.search(r"location = /v1/sql\s*\{\s*proxy_pass \$worker;", conf)
    assert re.search(r"location = /openapi.json\s*\{\s*proxy_pass \$ingest;", conf)
    for app in ("owntracks", "overland", "gpslogger"):
        assert re.search(rf"location = /v1/{app}\s*\{{\s*proxy_pass \$ingest;", conf), app
    for app in ("osmand", "traccar"):  # the token is in the path: kept out of the access log
        assert re.search(rf"location \^~ /v1/{app}/\s*\{{\s*access_log off;\s*"
                         rf"proxy_pass \$ingest;", conf), app


def test_depends_on_and_volumes_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown {dep}"
        for v in svc.get("volumes") or []:
            src = v.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name}: {src} missing"
            else:
                assert src in compose["volumes"], f"{name}: volume {src} undeclared"
