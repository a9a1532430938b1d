"""deploy/ checked by maintained validators, not only by our own reading of the YAML:

* the compose file by compose's own parser (``docker-compose config``, Debian's package,
  installed by ``make deploy-tools``; no container engine needed), with the secrets of an
  env file made from ``deploy/env.example``;
* every Kubernetes manifest by ``kubernetes-validate`` (PyPI: the Kubernetes OpenAPI schemas
  as JSON Schema), strictly (unknown fields are errors), for the oldest Kubernetes the
  manifests claim and the newest the validator knows.

Outside CI a missing compose binary skips its tests with the install hint; in CI (``CI`` is
set) it fails them."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.wiring import DEPLOY, load_all

COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "kubernetes"
#: Kinds with no schema in the Kubernetes API: the operators' custom resources (their CRD
#: schemas are not vendored here) and kustomize's own file.
NOT_IN_THE_API = {"Kafka", "KafkaNodePool", "ClickHouseInstallation",
                  "ClickHouseKeeperInstallation", "Kustomization"}
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


# -- compose --------------------------------------------------------------------------------
def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    msg = "compose is not installed: run `make deploy-tools` (Debian package docker-compose)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def env_file(tmp: Path, **override: str) -> Path:
    """deploy/env.example with a value for every empty key (as a user's deploy/.env)."""
    lines = []
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            value = override.pop(key, value or f"test-{key.lower()}")
            line = f"{key}={value}"
        lines.append(line)
    path = tmp / "env"
    path.write_text("\n".join(lines) + "\n")
    return path


def compose(tmp: Path, *args: str, file: Path = COMPOSE, env: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    cmd = [*compose_command(), "--project-directory", str(DEPLOY), "-f", str(file)]
    if env is not None:
        cmd += ["--env-file", str(env)]
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("CLICKHOUSE_", "GEOTEL_", "COMPOSE_"))}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120,
                          env=clean, cwd=tmp)


def test_compose_parses_the_file(tmp_path: Path) -> None:
    r = compose(tmp_path, "config", "-q", env=env_file(tmp_path))
    assert r.returncode == 0, r.stderr
    r = compose(tmp_path, "config", "--services", env=env_file(tmp_path))
    assert set(r.stdout.split()) == set(yaml.safe_load(COMPOSE.read_text())["services"])


def test_compose_resolves_the_secrets_from_the_env_file(tmp_path: Path) -> None:
    r = compose(tmp_path, "config", env=env_file(tmp_path, GEOTEL_QUERY_TOKEN="tok-123"))
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load(r.stdout)["services"]
    assert resolved["worker"]["environment"]["GEOTEL_QUERY__TOKEN"] == "tok-123"
    assert resolved["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"] == \
        "test-clickhouse_password"
    # the project is named geotel by the env file (volumes geotel_..., not deploy_...)
    assert "COMPOSE_PROJECT_NAME=geotel" in (DEPLOY / "env.example").read_text().splitlines()


def test_compose_refuses_a_missing_secret_and_a_bad_file(tmp_path: Path) -> None:
    r = compose(tmp_path, "config", "-q", env=env_file(tmp_path, CLICKHOUSE_PASSWORD=""))
    assert r.returncode != 0 and "CLICKHOUSE_PASSWORD" in r.stderr
    bad = yaml.safe_load(COMPOSE.read_text())
    bad["services"]["worker"]["restart_policy"] = "always"  # not a compose key
    broken = DEPLOY / f".test-{os.getpid()}-compose.yml"  # beside it: relative paths hold
    try:
        broken.write_text(yaml.safe_dump(bad))
        r = compose(tmp_path, "config", "-q", file=broken, env=env_file(tmp_path))
    finally:
        broken.unlink()
    assert r.returncode != 0 and "restart_policy" in r.stderr


# -- kubernetes -----------------------------------------------------------------------------
def manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(f.name, d) for f in sorted(K8S.glob("*.yaml")) for d in load_all(f)]


def validate(doc: dict[str, Any], version: str) -> str | None:
    """None when valid; the kind when the Kubernetes API has no schema for it."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return str(doc["kind"])
    return None


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate_strictly(version: str) -> None:
    unchecked = set()
    checked = 0
    for name, doc in manifests():
        try:
            kind = validate(doc, version)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            raise AssertionError(f"{name} {doc['kind']}/{doc['metadata'].get('name')}: "
                                 f"{path}: {exc.message}") from None
        if kind is None:
            checked += 1
        else:
            unchecked.add(kind)
    # a core kind with a mistyped apiVersion would land here instead of being checked
    assert unchecked == NOT_IN_THE_API
    assert checked >= 12


def test_the_validator_catches_what_we_would_get_wrong() -> None:
    (dep,) = [d for _, d in manifests() if d["kind"] == "Deployment"
              and d["metadata"]["name"] == "geotel-worker"]
    for mutate in (lambda d: d["spec"].update({"replicas": "three"}),
                   lambda d: d["spec"].update({"replica": 3}),  # strict: unknown field
                   lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"]
                   ["limits"].update({"cpu": {"cores": 1}})):
        bad = copy.deepcopy(dep)
        mutate(bad)
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)
    old = {**copy.deepcopy(dep), "apiVersion": "apps/v1beta1"}  # removed in 1.16
    assert validate(old, K8S_VERSIONS[0]) == "Deployment"
