"""deploy/: every manifest parses, and compose, Kubernetes, systemd and the Procfile start the
same processes with the same commands."""
from __future__ import annotations

from devstack.processes import STAND_INS
from tests.fleet.deploy_files import (
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
