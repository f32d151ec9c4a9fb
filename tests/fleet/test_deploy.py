"""deploy/: every manifest parses, and compose, Kubernetes, systemd and the Procfile start the
same processes with the same commands."""
from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import yaml

from devstack.processes import PROCESSES, STAND_INS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXPECTED = {**PROCESSES, **STAND_INS}


def normalized(command: str | list[str]) -> list[str]:
    """Same command whatever the syntax: ${X:-d}, ${X}, $(X) -> <X>; %H -> %h; no install path."""
    words = command if isinstance(command, list) else shlex.split(command)
    text = " ".join(words)
    text = re.sub(r"\$\{(\w+)(:-[^}]*)?\}|\$\((\w+)\)", lambda m: f"<{m.group(1) or m.group(3)}>", text)
    words = text.replace("%H", "%h").split()
    return [words[0].rsplit("/", 1)[-1], *words[1:]]


def expected(name: str) -> list[str]:
    return normalized(EXPECTED[name])


def test_compose_services_run_the_fleet_processes():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in EXPECTED:
        assert normalized(services[name]["command"]) == expected(name), name
    redis_command = services["redis"]["command"]
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command
    assert all(services[name]["profiles"] == ["sandbox"] for name in STAND_INS)


def k8s_documents():
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            yield path.name, document


def test_kubernetes_manifests():
    deployments, scaled = {}, {}
    for _, doc in k8s_documents():
        assert {"apiVersion", "kind", "metadata"} <= set(doc)
        if doc["kind"] == "Deployment":
            deployments[doc["metadata"]["name"]] = doc
        elif doc["kind"] == "ScaledObject":
            scaled[doc["spec"]["scaleTargetRef"]["name"]] = doc
    for name in ("control", "transfer", "beat", "flower", "metrics", "api", "webhooks"):
        container = deployments[f"geoqueue-{name}"]["spec"]["template"]["spec"]["containers"][0]
        assert normalized(container["command"]) == expected(name), name
    for queue in ("control", "transfer"):
        trigger = scaled[f"geoqueue-{queue}"]["spec"]["triggers"][0]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == queue
        assert "livenessProbe" in deployments[f"geoqueue-{queue}"]["spec"]["template"]["spec"]["containers"][0]
    assert deployments["geoqueue-beat"]["spec"]["replicas"] == 1
    secret = next(doc for _, doc in k8s_documents() if doc["kind"] == "Secret")
    assert "GEOQUEUE_FLOWER_BASIC_AUTH" in secret["stringData"]


def test_systemd_units():
    for name in ("control", "transfer", "beat", "flower", "metrics", "api", "webhooks"):
        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.optionxform = str
        unit.read(DEPLOY / "systemd" / f"geoqueue-{name}.service")
        assert normalized(unit["Service"]["ExecStart"]) == expected(name), name
        assert unit["Service"]["KillSignal"] == "SIGTERM"


def dockerfile_stages() -> dict[str, list[str]]:
    """Each build stage's instructions, by stage name."""
    stages: dict[str, list[str]] = {}
    current = None
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            current = line.split(" AS ")[-1].strip()
            stages[current] = []
        elif line.strip() and not line.startswith("#") and current:
            stages[current].append(line.strip())
    return stages


def test_the_fleet_image_carries_no_sandbox():
    fleet = dockerfile_stages()["fleet"]
    assert not any("sandbox" in line for line in fleet)
    assert "RUN pip install --no-cache-dir ./client '.[fleet]'" in fleet
    assert not any("devstack" in line for line in fleet)
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    assert compose["control"]["build"]["target"] == "fleet"
    assert compose["sandbox"]["build"]["target"] == "sandbox"
    assert any("'.[local]'" in line for line in dockerfile_stages()["sandbox"])


def test_redis_asks_for_a_password_everywhere_it_is_deployed():
    """Whoever reaches Redis is the fleet's admin: every deploy runs it with a password, and every
    process (and KEDA) gets the password from a secret, never from plain settings."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert "--requirepass ${GEOQUEUE_REDIS_PASSWORD:?" in compose["services"]["redis"]["command"]
    assert compose["x-geoqueue"]["environment"]["GEOQUEUE_REDIS_URL"].startswith(
        "redis://:${GEOQUEUE_REDIS_PASSWORD:?")
    assert "GEOQUEUE_REDIS_PASSWORD=" in (DEPLOY / "env.example").read_text()
    documents = [doc for _, doc in k8s_documents()]
    [redis_set] = [doc for doc in documents if doc["kind"] == "StatefulSet"]
    assert "--requirepass" in redis_set["spec"]["template"]["spec"]["containers"][0]["command"]
    configmap = next(doc for doc in documents if doc["kind"] == "ConfigMap")
    assert "GEOQUEUE_REDIS_URL" not in configmap["data"]
    secrets = {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Secret"}
    assert {"GEOQUEUE_REDIS_URL", "GEOQUEUE_REDIS_PASSWORD"} <= set(secrets["geoqueue-redis"]["stringData"])
    for doc in documents:
        if doc["kind"] == "Deployment":
            sources = doc["spec"]["template"]["spec"]["containers"][0]["envFrom"]
            assert {"secretRef": {"name": "geoqueue-redis"}} in sources, doc["metadata"]["name"]
        if doc["kind"] == "ScaledObject":
            assert doc["spec"]["triggers"][0]["authenticationRef"] == {"name": "geoqueue-redis"}
    assert "requirepass" in (DEPLOY / "systemd" / "README.md").read_text()


def test_compose_publishes_redis_flower_and_metrics_on_no_public_interface():
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    assert "ports" not in services["redis"]
    for name in ("flower", "metrics", *STAND_INS):
        assert services[name]["ports"] and all(p.startswith("127.0.0.1:") for p in services[name]["ports"]), name
