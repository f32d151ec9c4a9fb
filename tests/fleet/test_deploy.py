"""deploy/: every manifest parses, and compose, Kubernetes, systemd and the Procfile start the
same processes with the same commands."""
from __future__ import annotations

import yaml

from devstack.processes import STAND_INS
from tests.fleet.deploy_files import (
    DEPLOY,
    FLAVOURS,
    compose_services,
    dockerfile_stages,
    effective_argv,
    k8s_documents,
    launches,
    systemd_services,
)

# Settings a user changes (deploy/.env, the ConfigMap, /etc/geoqueue/geoqueue.env): every file must follow them.
CHANGED_SETTINGS = {"GEOQUEUE_CONTROL_CONCURRENCY": "7", "GEOQUEUE_TRANSFER_POOL": "gevent",
                    "GEOQUEUE_TRANSFER_CONCURRENCY": "9", "SANDBOX_HOST": "0.0.0.0", "SANDBOX_PORT": "18900"}
# As shipped, but for the one default that differs by design: the stand-ins listen on loopback from
# the Procfile, and on every address in Compose, where the fleet's containers reach them.
SHIPPED_SETTINGS = {"SANDBOX_HOST": "127.0.0.1"}


def test_every_deploy_file_runs_the_procfile_commands():
    """Each process as Compose, Kubernetes and systemd start it, expanded by their own rules, runs
    the Procfile's command: with the settings as shipped, and with settings changed."""
    for changes in (SHIPPED_SETTINGS, CHANGED_SETTINGS):
        procfile = {name: effective_argv(launch.argv) for name, launch in launches("procfile", changes).items()}
        fleet = {name for name, launch in launches("procfile", changes).items() if launch.target == "fleet"}
        for flavour in FLAVOURS[1:]:
            started = launches(flavour, changes)
            assert set(started) == (set(procfile) if flavour == "compose" else fleet), flavour
            for name, launch in started.items():
                assert effective_argv(launch.argv) == procfile[name], (flavour, name, changes)
    assert effective_argv(launches("procfile", CHANGED_SETTINGS)["control"].argv)[-4] == "7"


def test_compose_services():
    services = compose_services()
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
    for queue in ("control", "transfer"):
        trigger = scaled[f"geoqueue-{queue}"]["spec"]["triggers"][0]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == queue
        assert "livenessProbe" in deployments[f"geoqueue-{queue}"]["spec"]["template"]["spec"]["containers"][0]
    assert deployments["geoqueue-beat"]["spec"]["replicas"] == 1
    secret = next(doc for _, doc in k8s_documents() if doc["kind"] == "Secret")
    assert "GEOQUEUE_FLOWER_BASIC_AUTH" in secret["stringData"]


def test_systemd_units():
    assert all(service["KillSignal"] == "SIGTERM" for service in systemd_services().values())


def test_the_fleet_image_carries_no_sandbox():
    fleet = dockerfile_stages()["fleet"]
    assert not any("sandbox" in line for line in fleet)
    assert "RUN pip install --no-cache-dir ./client '.[fleet]'" in fleet
    assert not any("devstack" in line for line in fleet)
    compose = compose_services()
    assert compose["control"]["build"]["target"] == "fleet"
    assert compose["sandbox"]["build"]["target"] == "sandbox"
    assert any("'.[local]'" in line for line in dockerfile_stages()["sandbox"])


def test_redis_asks_for_a_password_everywhere_it_is_deployed():
    """Whoever reaches Redis is the fleet's admin: every deploy runs it with a password, and every
    process (and KEDA) gets the password from a secret, never from plain settings."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert "--requirepass ${GEOQUEUE_REDIS_PASSWORD:?" in compose["services"]["redis"]["command"]
    assert compose["x-geoqueue"]["environment"]["GEOQUEUE_REDIS_URL"].startswith(     # or the sentinels (ha)
        "${GEOQUEUE_REDIS_URL:-redis://:${GEOQUEUE_REDIS_PASSWORD:?")
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
