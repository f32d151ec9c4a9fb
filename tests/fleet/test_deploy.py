"""deploy/: every manifest parses, and compose, Kubernetes, systemd and the Procfile start the
same processes with the same commands."""
from __future__ import annotations

import configparser
import re
import shlex

import yaml

from devstack.processes import PROCESSES, STAND_INS
from tests.fleet.deploy_files import DEPLOY, dockerfile_stages, k8s_documents

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


def test_the_fleet_image_carries_no_sandbox():
    fleet = dockerfile_stages()["fleet"]
    assert not any("sandbox" in line for line in fleet)
    assert "RUN pip install --no-cache-dir ./client '.[fleet]'" in fleet
    assert not any("devstack" in line for line in fleet)
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    assert compose["control"]["build"]["target"] == "fleet"
    assert compose["sandbox"]["build"]["target"] == "sandbox"
    assert any("'.[local]'" in line for line in dockerfile_stages()["sandbox"])
