"""The Redis setups a failover run puts under the fleet, each redis-server and sentinel a process of
its own on loopback, with AOF on and noeviction (as the deploy files' Redis):

- `SentinelSetup`: a primary, a replica and three sentinels (quorum 2, a dead primary noticed
  after DOWN_AFTER_MS); the fleet finds the primary through the sentinels (sentinel:// URLs).
- `ManagedSetup`: the primary the fleet points at (a plain redis:// URL, as a managed service's
  one DNS name) and a replica holding a copy, to which the primary can hand its role.

The faults that use them are in failovers.py."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import redis

from devstack.loopback import free_port
from devstack.redis_service import redis_server_binary
from devstack.waiting import wait_until

MASTER_NAME = "geoqueue-master"
DOWN_AFTER_MS = 2000
LOCALHOST = "127.0.0.1"


class RedisNode:
    """One redis-server (or sentinel) process, which can be killed and started again on the same port
    and data."""

    def __init__(self, name: str, run_dir: Path, args: list[str]) -> None:
        self.name, self.port = name, free_port()
        self.dir = run_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = run_dir / f"{name}.log"
        self.argv = [redis_server_binary(), *args, "--port", str(self.port), "--bind", LOCALHOST,
                     "--dir", str(self.dir)]
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def kill(self) -> None:
        """SIGKILL: it vanishes mid-write, as a lost node does."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> redis.Redis:
        return redis.Redis(host=LOCALHOST, port=self.port, decode_responses=True, socket_timeout=5,
                           socket_connect_timeout=2)

    def role(self) -> list | None:
        """ROLE's answer (["master", ...] or ["slave", host, port, link state, offset]); None while it is down."""
        client = self.client()
        try:
            return client.role()
        except redis.RedisError:
            return None
        finally:
            client.close()

    def follows(self, primary: RedisNode) -> bool:
        """A replica of `primary`, its copy in sync."""
        role = self.role()
        return bool(role) and role[0] == "slave" and int(role[2]) == primary.port and role[3] == "connected"


def data_node(name: str, run_dir: Path, replica_of: RedisNode | None = None) -> RedisNode:
    args = ["--appendonly", "yes", "--save", "", "--maxmemory-policy", "noeviction"]
    if replica_of is not None:
        args += ["--replicaof", LOCALHOST, str(replica_of.port)]
    return RedisNode(name, run_dir, args)


class ManagedSetup:
    """A primary (the fleet's Redis, by its one address) and its replica."""

    def __init__(self, run_dir: Path) -> None:
        self.primary = data_node("redis-primary", run_dir)
        self.replica = data_node("redis-replica", run_dir, replica_of=self.primary)

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.primary.port}/0"

    def settings(self) -> dict[str, str]:
        return {"GEOQUEUE_REDIS_URL": self.url}

    def start(self) -> None:
        self.primary.start()
        wait_until(lambda: self.primary.role(), 20, "the primary")
        self.replica.start()
        wait_until(lambda: self.replica.follows(self.primary), 30, "the replica in sync")

    def nodes(self) -> list[RedisNode]:
        return [self.primary, self.replica]

    def stop(self) -> None:
        for node in reversed(self.nodes()):
            node.stop()


class SentinelSetup(ManagedSetup):
    """A primary, its replica and three sentinels watching them."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.sentinels = []
        for n in range(3):
            conf = run_dir / f"sentinel-{n}.conf"      # a sentinel rewrites its own file: one each
            node = RedisNode(f"sentinel-{n}", run_dir, [str(conf), "--sentinel"])
            conf.write_text(f"sentinel monitor {MASTER_NAME} {LOCALHOST} {self.primary.port} 2\n"
                            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                            f"sentinel failover-timeout {MASTER_NAME} 10000\n")
            self.sentinels.append(node)

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://{LOCALHOST}:{s.port}" for s in self.sentinels) + "/0"

    def settings(self) -> dict[str, str]:
        return {"GEOQUEUE_REDIS_URL": self.url, "GEOQUEUE_REDIS_SENTINEL_MASTER": MASTER_NAME}

    def start(self) -> None:
        super().start()
        for sentinel in self.sentinels:
            sentinel.start()
        # A failover needs sentinels that know the replica and each other (they meet through the primary).
        wait_until(lambda: all(self.sees_all(s) for s in self.sentinels), 60, "three sentinels that know each other")

    def sees_all(self, sentinel: RedisNode) -> bool:
        client = sentinel.client()
        try:
            master = client.sentinel_master(MASTER_NAME)
            return master["num-slaves"] == 1 and master["num-other-sentinels"] == 2
        except redis.RedisError:
            return False
        finally:
            client.close()

    def master_port(self) -> int | None:
        """The primary's port as the sentinels name it (the first that answers)."""
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                if address:
                    return int(address[1])
            except redis.RedisError:
                continue
            finally:
                client.close()
        return None

    def node_at(self, port: int) -> RedisNode:
        return next(node for node in (self.primary, self.replica) if node.port == port)

    def nodes(self) -> list[RedisNode]:
        return [self.primary, self.replica, *self.sentinels]
