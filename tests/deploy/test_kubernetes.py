"""Wiring of deploy/kubernetes/ (parsed, not applied: no cluster needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_cluster_ddl import CLUSTER as CLUSTER_SQL_NAME
from tests.deploy.wiring import (
    DEPLOY,
    REGISTRY_TOPICS,
    TOPICS_SCRIPT,
    assert_topics_like_geotel_creates,
    expected_topics,
    host_port,
    image_pinned,
    load_all,
    project_version,
    settings_env,
    topics_created,
)

K8S = DEPLOY / "kubernetes"
NAMESPACE = "geotel"
CLUSTER_SCOPED = {"Namespace"}


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        for d in load_all(f):
            d["_file"] = f.name
            out.append(d)
    return out


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def configmap(docs: list[dict[str, Any]]) -> dict[str, str]:
    return find(docs, "ConfigMap", "geotel-config")["data"]  # type: ignore[no-any-return]


def secret_keys() -> set[str]:
    (secret,) = load_all(K8S / "secret.example.yaml")
    return set(secret["stringData"])


def test_manifests_are_complete_objects_in_the_namespace(docs: list[dict[str, Any]]) -> None:
    for d in docs:
        assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d["_file"]
        if d["kind"] not in CLUSTER_SCOPED:
            assert d["metadata"].get("namespace") == NAMESPACE, d["_file"]
    (kust,) = load_all(K8S / "kustomization.yaml")
    listed = set(kust["resources"])
    on_disk = {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # the example Secret is never applied with the rest
    assert listed == on_disk - {"secret.example.yaml"}


def test_images_pinned_and_geotel_image_is_the_project_version(
        docs: list[dict[str, Any]]) -> None:
    images: list[str] = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            images += [c["image"] for c in containers(d)]
        elif d["kind"] in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
            for tpl in d["spec"]["templates"]["podTemplates"]:
                images += [c["image"] for c in tpl["spec"]["containers"]]
    assert len(images) >= 6
    for image in images:
        assert image_pinned(image), image
    geotel = {i for i in images if "/geotel:" in i}
    assert geotel and {i.rsplit(":", 1)[1] for i in geotel} == {project_version()}


@pytest.mark.parametrize("name", ["geotel-ingest", "geotel-worker"])
def test_deployment_wiring(docs: list[dict[str, Any]], name: str) -> None:
    dep = find(docs, "Deployment", name)
    cm = configmap(docs)
    known = settings_env()
    keys = secret_keys()
    web_port = int(cm["GEOTEL_WEB_PORT"])
    (main,) = pod_spec(dep)["containers"]
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert list(ports.values()) == [web_port]
    for probe in ("readinessProbe", "livenessProbe"):
        get = main[probe]["httpGet"]
        assert get["path"] == "/health"
        assert ports.get(get["port"], get["port"]) == web_port
    sel = dep["spec"]["selector"]["matchLabels"]
    assert sel.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    for c in containers(dep):
        res = c["resources"]
        assert {"cpu", "memory"} <= res["requests"].keys(), c["name"]
        assert {"cpu", "memory"} <= res["limits"].keys(), c["name"]
        assert [e["configMapRef"]["name"] for e in c["envFrom"]] == ["geotel-config"]
        for e in c.get("env", []):
            assert e["name"] in known, f"{name}: {e['name']} is not a setting"
            if known[e["name"]]:
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "geotel-secrets" and ref["key"] in keys
            assert "value" not in e or not known[e["name"]]
    role = name.removeprefix("geotel-")
    assert main["args"][0] == role


def test_configmap_holds_settings_and_no_secrets(docs: list[dict[str, Any]]) -> None:
    known = settings_env()
    for cmap in (d for d in docs if d["kind"] == "ConfigMap"):
        for k in cmap["data"]:
            assert not re.search(r"PASSWORD|TOKEN|SECRET|KEY$", k.upper()), (cmap["_file"], k)
    cm = configmap(docs)
    unknown = set(cm) - set(known)
    assert not unknown, f"not settings: {unknown}"
    assert not [k for k in cm if known[k]], "secret settings belong in geotel-secrets"
    assert cm["GEOTEL_PROFILE"] == "external"
    assert cm["GEOTEL_WEB_HOST"] == "0.0.0.0"
    assert float(cm["GEOTEL_KAFKA__REBALANCE_TIMEOUT_S"]) >= 30
    (secret,) = load_all(K8S / "secret.example.yaml")
    assert set(secret["stringData"].values()) == {"REPLACE_ME"}
    assert "data" not in secret
    assert not [d for d in docs if d["kind"] == "Secret" and d["_file"] != "secret.example.yaml"]


def test_service_and_hpa_target_ingest(docs: list[dict[str, Any]]) -> None:
    dep = find(docs, "Deployment", "geotel-ingest")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    svc = find(docs, "Service", "geotel-ingest")
    assert svc["spec"]["selector"].items() <= labels.items()
    (main,) = pod_spec(dep)["containers"]
    names = {p["name"] for p in main["ports"]} | {p["containerPort"] for p in main["ports"]}
    assert all(p["targetPort"] in names for p in svc["spec"]["ports"])
    hpa = find(docs, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "geotel-ingest")
    assert 1 <= hpa["spec"]["minReplicas"] <= dep["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"]


def test_kafka_cluster_and_topics(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    kafka = find(docs, "Kafka")
    pool = find(docs, "KafkaNodePool")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert pool["spec"]["replicas"] == 3
    conf = kafka["spec"]["kafka"]["config"]
    assert conf["default.replication.factor"] == 3 and conf["min.insync.replicas"] == 2
    assert conf["auto.create.topics.enable"] is False

    cm = configmap(docs)
    bootstrap = f"{kafka['metadata']['name']}-kafka-bootstrap"
    plain_ports = {lst["port"] for lst in kafka["spec"]["kafka"]["listeners"] if not lst["tls"]}
    for addr in cm["GEOTEL_KAFKA__BOOTSTRAP_SERVERS"].split(","):
        host, port = host_port(addr)
        assert host.split(".")[0] == bootstrap and port in plain_ports
    assert cm["GEOTEL_KAFKA__SECURITY_PROTOCOL"] == "PLAINTEXT"

    job = find(docs, "Job", "geotel-topics")
    script = find(docs, "ConfigMap", "geotel-topics-script")["data"]["create-topics.sh"]
    assert script == TOPICS_SCRIPT.read_text(), "k8s topics script differs from the compose one"
    (c,) = pod_spec(job)["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["BOOTSTRAP"] == cm["GEOTEL_KAFKA__BOOTSTRAP_SERVERS"]
    assert env["PARTITIONS"] == cm["GEOTEL_KAFKA__TOPIC_PARTITIONS"]
    assert env.get("PREFIX", "") == cm.get("GEOTEL_KAFKA__TOPIC_PREFIX", "")
    topics = topics_created(script, env, tmp_path)
    assert set(topics) == expected_topics()
    rf = int(cm["GEOTEL_KAFKA__REPLICATION_FACTOR"])
    assert_topics_like_geotel_creates(topics, int(cm["GEOTEL_KAFKA__TOPIC_PARTITIONS"]), rf)
    for t in topics.values():
        assert t.replication == rf <= pool["spec"]["replicas"]
        assert int(t.configs["min.insync.replicas"]) < rf
        if t.name in REGISTRY_TOPICS:
            assert t.partitions == 1 and t.configs["cleanup.policy"] == "compact"
        else:
            assert t.partitions == int(cm["GEOTEL_KAFKA__TOPIC_PARTITIONS"])


def test_worker_replicas_fit_the_partitions(docs: list[dict[str, Any]]) -> None:
    partitions = int(configmap(docs)["GEOTEL_KAFKA__TOPIC_PARTITIONS"])
    assert 1 <= find(docs, "Deployment", "geotel-worker")["spec"]["replicas"] <= partitions
    # an autoscaler over workers must not go beyond the partitions either
    for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == "geotel-worker":
            assert hpa["spec"]["maxReplicas"] <= partitions


def test_clickhouse_cluster_users_and_schema(docs: list[dict[str, Any]]) -> None:
    chi = find(docs, "ClickHouseInstallation")
    chk = find(docs, "ClickHouseKeeperInstallation")
    cfg = chi["spec"]["configuration"]
    (cluster,) = cfg["clusters"]
    assert cluster["name"] == CLUSTER_SQL_NAME
    assert cluster["layout"]["replicasCount"] >= 2
    keeper_hosts = {n["host"].split(".")[0] for n in cfg["zookeeper"]["nodes"]}
    assert keeper_hosts == {f"keeper-{chk['metadata']['name']}"}

    cm = configmap(docs)
    host, port = host_port(cm["GEOTEL_CLICKHOUSE__URL"])
    assert host.split(".")[0] == f"clickhouse-{chi['metadata']['name']}" and port == 8123
    users = cfg["users"]
    keys = secret_keys()
    writer = cm["GEOTEL_CLICKHOUSE__USER"]
    for user in (writer, "geotel_reader"):
        ns, secret, key = users[f"{user}/k8s_secret_password"].split("/")
        assert (ns, secret) == (NAMESPACE, "geotel-secrets") and key in keys
        assert not [k for k in users if k.startswith(f"{user}/") and k.endswith("/password")]
    assert users["geotel_reader/grants/query"] == ["GRANT SELECT ON geotel.*"]
    assert cfg["profiles"]["geotel_reader/readonly"] in (1, 2)

    # the workers create the cluster schema first, for the cluster named in the CHI
    worker = find(docs, "Deployment", "geotel-worker")
    (init,) = pod_spec(worker)["initContainers"]
    cmd = init["command"]
    assert cmd[:3] == ["python", "-m", "sinks.cluster"] and "--apply" in cmd
    assert cmd[cmd.index("--cluster") + 1] == cluster["name"]
