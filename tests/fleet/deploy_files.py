"""Readers of deploy/ and the Procfile: what each one runs, as the tool that reads it would run it.

A process's command is expanded by that tool's own rules (a shell for the Procfile, Compose's
interpolation, Kubernetes' `$(VAR)`, systemd's `${VAR}` and `%H`) with the environment it gives
the process: the image's ENV, the env file, the ConfigMap and Secret, the unit's Environment=.
"""
from __future__ import annotations

import configparser
import re
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
FLAVOURS = ("procfile", "compose", "kubernetes", "systemd")
# The settings file a user copies and fills in (Compose's .env, systemd's EnvironmentFile).
ENV_EXAMPLE = DEPLOY / "env.example"


def k8s_documents():
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            yield path.name, document


def dockerfile_lines() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    lines, pending = [], ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        pending += raw.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        lines.append(pending)
        pending = ""
    return lines


def dockerfile_stages() -> dict[str, list[str]]:
    """Each build stage's instructions after its FROM, by stage name."""
    stages: dict[str, list[str]] = {}
    for line in dockerfile_lines():
        if line.startswith("FROM "):
            stages[line.split(" AS ")[-1].strip()] = []
        elif stages:
            stages[list(stages)[-1]].append(line)
    return stages


def stage_bases() -> dict[str, str]:
    """Each build stage's FROM: an image, or an earlier stage."""
    return {name.strip(): base.strip() for base, _, name in
            (line[len("FROM "):].partition(" AS ") for line in dockerfile_lines() if line.startswith("FROM "))}


def target_instructions(target: str) -> list[str]:
    """What building `target` runs: its base stages' instructions first, each FROM included."""
    bases = stage_bases()
    base = bases[target]
    earlier = target_instructions(base) if base in bases else [f"FROM {base}"]
    return earlier + dockerfile_stages()[target]


@dataclass
class ImageConfig:
    """What an image gives every process that it runs: its working directory and ENV."""
    workdir: str
    env: dict[str, str]


def image_config(target: str) -> ImageConfig:
    config = ImageConfig("/", {})
    for line in target_instructions(target):
        keyword, _, rest = line.partition(" ")
        if keyword == "WORKDIR":
            config.workdir = str(Path(config.workdir, rest.strip()))
        elif keyword == "ENV":
            config.env.update(word.split("=", 1) for word in shlex.split(rest))
    return config


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as Compose's env_file and systemd's EnvironmentFile read them."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def procfile() -> dict[str, str]:
    return dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())


def compose_services() -> dict[str, dict]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]


def kubernetes_containers() -> dict[str, dict]:
    """The first container of each geoqueue Deployment, by process name (geoqueue-api -> api)."""
    return {doc["metadata"]["name"].removeprefix("geoqueue-"): doc["spec"]["template"]["spec"]["containers"][0]
            for _, doc in k8s_documents()
            if doc["kind"] == "Deployment" and doc["metadata"]["name"] != "geoqueue-redis"}


def systemd_services() -> dict[str, configparser.SectionProxy]:
    """The [Service] section of each unit, by process name (geoqueue-api.service -> api)."""
    services = {}
    for path in sorted((DEPLOY / "systemd").glob("geoqueue-*.service")):
        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.optionxform = str
        unit.read(path)
        services[path.stem.removeprefix("geoqueue-")] = unit["Service"]
    return services


# --- expansion, by each tool's rules ---
def shell_expand(command: str, env: dict[str, str]) -> list[str]:
    """${VAR} and ${VAR:-default} (the default when VAR is unset or empty), then split into words:
    a shell running a Procfile line, and Compose's interpolation of `command`."""
    filled = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m[1]) or m[2] or "", command)
    return shlex.split(filled)


def kubernetes_expand(command: list[str], env: dict[str, str]) -> list[str]:
    """$(VAR) from the container's environment; an undefined one stays as written, as Kubernetes leaves it."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), word) for word in command]


def systemd_expand(command: str, env: dict[str, str]) -> list[str]:
    """Split, then ${VAR} (an unset one is empty), %H (the host name) and %%."""
    def specifier(match: re.Match) -> str:
        known = {"H": socket.gethostname(), "%": "%"}
        if match[1] not in known:
            raise ValueError(f"systemd specifier %{match[1]} in {command!r}: add it here")
        return known[match[1]]
    words = [re.sub(r"\$\{(\w+)\}", lambda m: env.get(m[1], ""), word) for word in shlex.split(command)]
    return [re.sub(r"%(.)", specifier, word) for word in words]


def effective_argv(argv: list[str]) -> list[str]:
    """The command as it finally runs, for comparison: the program by name (wherever installed) and
    Celery's %h in a node name expanded, as Celery does."""
    words = [word.replace("%h", socket.gethostname()) for word in argv]
    return [words[0].rsplit("/", 1)[-1], *words[1:]]


# --- what each file starts ---
@dataclass
class Launch:
    """One process as a deploy file starts it. Paths are the ones the file names (/app, /opt/geoqueue)."""
    argv: list[str]
    env: dict[str, str]
    cwd: str
    target: str  # the Dockerfile target whose image (or installed tree) runs it


def launches(flavour: str, changes: dict[str, str]) -> dict[str, Launch]:
    """Every process that `flavour`'s file names, with `changes` made where a user makes them (the
    env file; the ConfigMap and Secret)."""
    return {"procfile": _procfile, "compose": _compose, "kubernetes": _kubernetes,
            "systemd": _systemd}[flavour](changes)


def _compose_target(service: dict) -> str:
    return service["build"]["target"]


def _procfile(changes: dict[str, str]) -> dict[str, Launch]:
    # A Procfile runner (honcho, foreman) in the project's directory, with the settings in its .env.
    targets = {name: _compose_target(service) for name, service in compose_services().items() if "build" in service}
    env = {**env_file(ENV_EXAMPLE), **changes}
    return {name: Launch(shell_expand(command, env), env, image_config(targets[name]).workdir, targets[name])
            for name, command in procfile().items()}


def _compose(changes: dict[str, str]) -> dict[str, Launch]:
    settings = {**env_file(ENV_EXAMPLE), **changes}  # deploy/.env: interpolation and env_file alike
    result = {}
    for name, service in compose_services().items():
        if "build" not in service:
            continue  # redis: not ours
        image = image_config(_compose_target(service))
        env = {**image.env, **settings, **service.get("environment", {}), **changes}
        result[name] = Launch(shell_expand(service["command"], settings), env,
                              service.get("working_dir", image.workdir), _compose_target(service))
    return result


def _kubernetes(changes: dict[str, str]) -> dict[str, Launch]:
    sources = {doc["metadata"]["name"]: doc.get("data") or doc.get("stringData") or {}
               for _, doc in k8s_documents() if doc["kind"] in ("ConfigMap", "Secret")}
    targets = {service["image"]: _compose_target(service) for service in compose_services().values()
               if "build" in service}
    result = {}
    for name, container in kubernetes_containers().items():
        target = targets[container["image"]]
        image = image_config(target)
        env = dict(image.env)
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source.get("secretRef")
            env.update(sources[ref["name"]])
        env.update({item["name"]: item["value"] for item in container.get("env", [])})
        env.update(changes)
        result[name] = Launch(kubernetes_expand(container["command"], env), env,
                              container.get("workingDir", image.workdir), target)
    return result


def _systemd(changes: dict[str, str]) -> dict[str, Launch]:
    # EnvironmentFile= (the user's settings) overrides Environment=, as systemd reads them.
    result = {}
    for name, service in systemd_services().items():
        env = dict(word.split("=", 1) for word in shlex.split(service.get("Environment", "")))
        env.update({**env_file(ENV_EXAMPLE), **changes})
        result[name] = Launch(systemd_expand(service["ExecStart"], env), env, service["WorkingDirectory"], "fleet")
    return result
