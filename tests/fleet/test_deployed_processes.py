"""Every process that deploy/ and the Procfile name starts from what deploy/Dockerfile builds.

The fleet and sandbox images are assembled from the Dockerfile (tests/fleet/image_tree.py), each
with a fresh virtualenv: no image registry is reachable here, and a base image built from Debian's
packages takes longer to fetch than this whole test runs. Every process runs from its image's
tree with the environment its deploy file gives it, never with this checkout on its path.

The test stack: a redis-server, and the vendor and S3 stand-ins of the sandbox image, started as
Compose starts them. Then for the Procfile, Compose, Kubernetes and systemd in turn, each fleet
process starts until it is ready: a worker answers ping under the node name its file gives it,
beat holds RedBeat's lock, the API answers /healthz and /openapi.json, the exporter its metrics,
Flower its health check and an authenticated page, and the webhook deliverer takes a job's end
from its stream.
"""
from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import redis
import requests
from celery import Celery

from api.keys import new_key
from devstack.loopback import free_port
from devstack.redis_service import redis_answers, redis_server_binary
from devstack.supervision import Process
from devstack.waiting import wait_until
from geoqueue.ledger_keys import ENDED_STREAM
from tests.fleet import image_tree
from tests.fleet.deploy_files import FLAVOURS, ROOT, Launch, launches
from tests.fleet.test_fresh_machine import copy_of_the_checkout
from webhooks.delivery import GROUP

HOSTNAME = socket.gethostname()
# What a deploy file's processes get from the machine besides what the file sets.
PASSED_THROUGH = ("LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
READY_TIMEOUT = 90


class Fleet:
    """The processes started from image trees, with their logs in `logs`."""

    def __init__(self, trees: dict[str, image_tree.ImageTree], logs: Path) -> None:
        self.trees, self.logs = trees, logs
        self.processes: dict[str, Process] = {}

    def start(self, name: str, launch: Launch) -> Process:
        tree = self.trees[launch.target]
        workdir = str(tree.path(tree.config.workdir))
        # systemd's units name a checkout in /opt/geoqueue with its virtualenv in .venv (deploy/systemd/README.md):
        # the fleet image's tree and virtualenv stand for them.
        places = {"/opt/geoqueue/.venv": str(tree.venv), "/opt/geoqueue": workdir, tree.config.workdir: workdir}
        env = {key: os.environ[key] for key in PASSED_THROUGH if key in os.environ}
        tree.path("/home/geoqueue").mkdir(parents=True, exist_ok=True)
        env.update({"HOME": str(tree.path("/home/geoqueue")),
                    "PATH": image_tree.SYSTEM_PATH if launch.argv[0].startswith("/") else tree.program_path()})
        env.update({key: placed(value, places) for key, value in launch.env.items()})
        argv = [placed(word, places) for word in launch.argv]
        program = shutil.which(argv[0], path=env["PATH"])
        assert program and Path(program).is_relative_to(tree.venv), f"{name}: {argv[0]} is {program}, not the image's"
        assert str(ROOT) not in env.get("PYTHONPATH", "") and not Path(workdir).is_relative_to(ROOT)
        log = self.logs / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as handle:
            popen = subprocess.Popen([program, *argv[1:]], cwd=placed(launch.cwd, places), env=env, stdout=handle,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes[name] = Process(name, popen, log, env)
        return self.processes[name]

    def dead(self) -> list[str]:
        return [f"{name} exited with {p.popen.returncode}:\n{tail(p.log)}" for name, p in self.processes.items()
                if not p.alive()]

    def stop(self) -> None:
        """SIGTERM to each main process, as Compose, Kubernetes and systemd (KillMode=mixed) stop them."""
        for process in self.processes.values():
            if process.alive():
                process.popen.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.popen.wait(60)
            except subprocess.TimeoutExpired:
                pass
            process.kill_group()
        self.processes.clear()


def placed(value: str, places: dict[str, str]) -> str:
    """`value` with the paths a deploy file names (/app, /opt/geoqueue) moved to where they are here."""
    def one(part: str) -> str:
        for prefix in sorted(places, key=len, reverse=True):
            if part == prefix or part.startswith(prefix.rstrip("/") + "/"):
                return places[prefix] + part[len(prefix):]
        return part
    return ":".join(map(one, value.split(":")))


def tail(log: Path, size: int = 3000) -> str:
    return log.read_text(errors="replace")[-size:] if log.exists() else "(no log)"


def importable(tree: image_tree.ImageTree, *modules: str) -> list[str]:
    """Which of `modules` the image's Python finds, from the image's working directory."""
    find = f"import importlib.util as u; print(' '.join(m for m in {modules!r} if u.find_spec(m)))"
    done = subprocess.run([str(tree.venv / "bin" / "python"), "-c", find], cwd=tree.path(tree.config.workdir),
                          env={**tree.config.env, "PYTHONPATH": str(tree.path(tree.config.workdir))},
                          capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.split()


def http_ok(url: str, **kwargs) -> bool:
    try:
        return requests.get(url, timeout=2, **kwargs).ok
    except requests.RequestException:
        return False


def readiness(name: str, launch: Launch, changes: dict[str, str], fleet: Fleet, client: redis.Redis, celery: Celery):
    """A check that is true once process `name` is ready."""
    if "worker" in launch.argv:
        node = launch.argv[launch.argv.index("-n") + 1].replace("%h", HOSTNAME)
        return lambda: node in {answered for reply in celery.control.ping(timeout=0.5) for answered in reply}
    if name == "beat":
        return lambda: client.exists("redbeat::lock")
    if name == "api":
        url = f"http://127.0.0.1:{changes['GEOQUEUE_API_PORT']}"
        return lambda: http_ok(url + "/healthz") and "paths" in requests.get(url + "/openapi.json", timeout=2).json()
    if name == "metrics":
        url = f"http://127.0.0.1:{changes['GEOQUEUE_METRICS_PORT']}/metrics"
        return lambda: http_ok(url) and "geoqueue_queue_depth" in requests.get(url, timeout=2).text
    if name == "flower":
        url = f"http://127.0.0.1:{changes['GEOQUEUE_FLOWER_PORT']}"
        user, password = changes["GEOQUEUE_FLOWER_BASIC_AUTH"].split(":", 1)
        return lambda: http_ok(url + "/healthcheck") and http_ok(url + "/workers", auth=(user, password))

    if name == "webhooks":
        # A job's end written to the stream the deliverer reads: taken and acknowledged by its group.
        entry = client.xadd(ENDED_STREAM, {"id": f"deploy-test-{secrets.token_hex(4)}", "state": "succeeded"})

        def taken() -> bool:
            group = next((g for g in client.xinfo_groups(ENDED_STREAM) if g["name"] == GROUP), None)
            return bool(group) and group["last-delivered-id"] == entry and group["pending"] == 0
        return taken
    raise AssertionError(f"no readiness check for the process {name}: add one")


def wait_ready(fleet: Fleet, checks: dict) -> None:
    pending = dict(checks)

    def all_ready() -> bool:
        if dead := fleet.dead():
            raise AssertionError("\n\n".join(dead))
        for name, check in list(pending.items()):
            try:
                if check():
                    del pending[name]
            except (requests.RequestException, ValueError, redis.RedisError):
                pass
        return not pending
    try:
        wait_until(all_ready, READY_TIMEOUT, "every process ready", interval=0.5)
    except TimeoutError:
        raise AssertionError("not ready: " + "\n\n".join(f"{name}:\n{tail(fleet.processes[name].log)}"
                                                         for name in pending)) from None


def round_settings(stack: dict[str, str]) -> dict[str, str]:
    """What a user fills in (deploy/env.example, the Secret), here for the test stack on loopback."""
    _, api_key_entry = new_key("deploy-test", ["submit", "read"])
    return {**stack,
            "GEOQUEUE_FLOWER_BASIC_AUTH": f"admin:{secrets.token_urlsafe(12)}",
            "GEOQUEUE_API_KEYS": api_key_entry,
            "GEOQUEUE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
            **{f"GEOQUEUE_{role}_ADDRESS": "127.0.0.1" for role in ("FLOWER", "METRICS", "API")},
            **{f"GEOQUEUE_{role}_PORT": str(free_port()) for role in ("FLOWER", "METRICS", "API")}}


def start_stand_ins(stand_ins: Fleet) -> dict[str, str]:
    """The sandbox image's vendors and S3, as Compose starts them; the settings that point the fleet at them."""
    ports = {"SANDBOX_HOST": "127.0.0.1", "SANDBOX_PORT": str(free_port()), "SANDBOX_S3_PORT": str(free_port())}
    for name, launch in launches("compose", ports).items():
        if launch.target == "sandbox":
            stand_ins.start(name, launch)
    sandbox_url, s3_url = (f"http://127.0.0.1:{ports[key]}" for key in ("SANDBOX_PORT", "SANDBOX_S3_PORT"))
    wait_ready(stand_ins, {"sandbox": lambda: http_ok(sandbox_url + "/_sandbox/health"),
                           "s3": lambda: requests.get(s3_url, timeout=2).status_code})
    return {"GEOQUEUE_S3_ENDPOINT_URL": s3_url, "GEOQUEUE_S3_ACCESS_KEY_ID": "sandbox-access-key",
            "GEOQUEUE_S3_SECRET_ACCESS_KEY": "sandbox-secret-key"}


def run_flavour(flavour: str, fleet: Fleet, stack: dict[str, str], client: redis.Redis, celery: Celery) -> str | None:
    """Start every fleet process that `flavour`'s file names until each is ready, then stop them:
    what went wrong, or None."""
    changes = round_settings(stack)
    started = {name: launch for name, launch in launches(flavour, changes).items() if launch.target == "fleet"}
    try:
        for name, launch in started.items():
            fleet.start(name, launch)
        wait_ready(fleet, {name: readiness(name, launch, changes, fleet, client, celery)
                           for name, launch in started.items()})
    except AssertionError as failure:
        return f"{flavour}: {failure}"
    finally:
        fleet.stop()
    # A stopped beat hands its lock over at once, so the next one leads without waiting for it to expire.
    return f"{flavour}: the stopped beat kept RedBeat's lock" if client.exists("redbeat::lock") else None


@pytest.mark.slow
@pytest.mark.timeout(900)  # two pip installs: minutes more when the machine is busy
def test_every_deployed_process_starts_from_the_images(tmp_path):
    context = copy_of_the_checkout(tmp_path / "context")
    trees: dict[str, image_tree.ImageTree] = {}
    for target in ("fleet", "sandbox"):  # the sandbox image is built on the fleet's
        trees[target] = image_tree.build(target, context, tmp_path / target, trees)
    assert not importable(trees["fleet"], "sandbox", "devstack", "moto", "flask"), "the fleet image carries the sandbox"

    redis_port = free_port()
    redis_server = subprocess.Popen([redis_server_binary(), "--port", str(redis_port), "--bind", "127.0.0.1",
                                     "--save", "", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    celery = Celery(broker=redis_url)
    stand_ins = Fleet(trees, tmp_path / "logs" / "stand-ins")
    try:
        wait_until(lambda: redis_answers(redis_url), 20, "redis-server")
        stack = {"GEOQUEUE_REDIS_URL": redis_url, **start_stand_ins(stand_ins)}
        failures = [run_flavour(flavour, Fleet(trees, tmp_path / "logs" / flavour), stack, client, celery)
                    for flavour in FLAVOURS]
        if any(failures):
            pytest.fail("\n\n".join(filter(None, failures)), pytrace=False)
    finally:
        stand_ins.stop()
        celery.close()
        redis_server.terminate()
        redis_server.wait(20)
