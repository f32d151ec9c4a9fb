"""deploy/docker-compose.yml's `ha` profile: a primary, a replica and three sentinels, the primary
refusing writes while no replica keeps up; and the default, without the profile, one Redis that
takes writes alone. No container engine runs here, so the Redis servers and sentinels are started
from the compose file's own arguments and configuration lines, on loopback ports instead of the
compose network's host names."""
from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
import yaml

from devstack.loopback import free_port
from devstack.redis_service import redis_server_binary
from devstack.waiting import wait_until

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "docker-compose.yml"
SERVICES = yaml.safe_load(COMPOSE.read_text())["services"]
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


PASSWORD = "ha-test-password"


def interpolated(command: str, **variables: str) -> list[str]:
    """The command as Compose runs it: ${NAME:-default} from `variables`, else its default;
    ${NAME:?message} from `variables` (the Redis password here)."""
    variables = {"GEOQUEUE_REDIS_PASSWORD": PASSWORD, **variables}
    text = re.sub(r"\$\{(\w+):\?[^}]*\}", lambda m: variables[m.group(1)], command)
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m.group(1), m.group(2)), text)
    return shlex.split(text)


def on_loopback(argv: list[str], port: int, ports: dict[str, int], data: Path) -> list[str]:
    """The compose network's host names as loopback ports; the binary found here; its own data dir."""
    out = [redis_server_binary(), *argv[1:], "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data)]
    if "--replicaof" in out:
        at = out.index("--replicaof")
        out[at + 1:at + 3] = ["127.0.0.1", str(ports[out[at + 1]])]
    at = out.index("--replica-announce-ip")     # a name only the compose network resolves
    return out[:at] + out[at + 2:]


def sentinel_lines() -> list[str]:
    """The configuration lines a sentinel service writes for itself."""
    script = SERVICES["sentinel-1"]["command"][-1]
    lines = re.findall(r"'([^']*)'", script.split("printf", 1)[1].split("> /data", 1)[0])[1:]
    return [" ".join(interpolated(line)) for line in lines]


def test_the_ha_profile_is_a_primary_a_replica_and_three_sentinels_and_the_default_is_one_redis():
    ha = {name for name, service in SERVICES.items() if "ha" in service.get("profiles", [])}
    assert ha == {"redis-replica", *SENTINELS}
    assert "profiles" not in SERVICES["redis"]             # the primary, and the default's one Redis
    default_primary = interpolated(SERVICES["redis"]["command"])
    assert default_primary[default_primary.index("--min-replicas-to-write") + 1] == "0"
    replica = interpolated(SERVICES["redis-replica"]["command"])
    assert replica[replica.index("--min-replicas-to-write") + 1] == "1"     # should it be promoted
    assert "sentinel monitor geoqueue redis 6379 2" in sentinel_lines()
    fleet = SERVICES["control"]["environment"]
    assert fleet["GEOQUEUE_REDIS_URL"].startswith("${GEOQUEUE_REDIS_URL:-redis://:${GEOQUEUE_REDIS_PASSWORD:?")
    example = (COMPOSE.parent / "env.example").read_text()
    sentinels = ";".join(f"sentinel://{name}:26379" for name in SENTINELS).replace(
        "sentinel://", "sentinel://:<the password>@", 1)
    assert f"# GEOQUEUE_REDIS_URL={sentinels}/0" in example and "# REDIS_MIN_REPLICAS_TO_WRITE=1" in example


@pytest.fixture
def started(tmp_path):
    processes: list[subprocess.Popen] = []

    def start(argv: list[str]) -> subprocess.Popen:
        processes.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, cwd=tmp_path))
        return processes[-1]

    yield start
    for process in processes:
        process.send_signal(signal.SIGCONT)
        process.terminate()
    for process in processes:
        process.wait(20)


def test_the_ha_profiles_redis_replicates_three_sentinels_watch_it_and_it_refuses_writes_without_a_replica(
        tmp_path, started):
    ports = {"redis": free_port(), "redis-replica": free_port()}
    clients = {name: redis.Redis(port=port, password=PASSWORD, decode_responses=True, socket_timeout=5)
               for name, port in ports.items()}
    servers = {}
    for name in ports:
        (tmp_path / name).mkdir()
        argv = interpolated(SERVICES[name]["command"], REDIS_MIN_REPLICAS_TO_WRITE="1")
        servers[name] = started(on_loopback(argv, ports[name], ports, tmp_path / name))
    wait_until(lambda: _answers(clients["redis-replica"]) and
               clients["redis-replica"].info("replication").get("master_link_status") == "up", 30, "the replica")
    clients["redis"].set("written", "with a replica in step")
    wait_until(lambda: clients["redis-replica"].get("written"), 10, "the write on the replica")

    sentinel_ports = [free_port() for _ in SENTINELS]
    for n, port in enumerate(sentinel_ports):
        lines = [line.replace("port 26379", f"port {port}").replace("geoqueue redis 6379", f"geoqueue 127.0.0.1 "
                                                                                           f"{ports['redis']}")
                 for line in sentinel_lines()]
        conf = tmp_path / f"sentinel-{n}.conf"
        conf.write_text("\n".join([*lines, "bind 127.0.0.1"]) + "\n")
        started([redis_server_binary(), str(conf), "--sentinel"])
    sentinel = redis.Redis(port=sentinel_ports[0], decode_responses=True)
    wait_until(lambda: _quorum_reachable(sentinel), 30, "three sentinels agreeing on the primary")

    servers["redis-replica"].send_signal(signal.SIGSTOP)         # a replica that stopped keeping up
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            clients["redis"].set("written", "with the replica behind")
            time.sleep(0.5)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _quorum_reachable(sentinel: redis.Redis) -> bool:
    try:
        return "3 usable Sentinels" in str(sentinel.execute_command("SENTINEL", "CKQUORUM", "geoqueue"))
    except redis.RedisError:
        return False
