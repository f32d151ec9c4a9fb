"""A replica of a Redis primary, started from the same redis-server binary as the stack's Redis, for
the tests and benchmarks of what replication costs and what a failover may lose. Pausing it
(SIGSTOP) plays a replica that lags: connected, acknowledging nothing."""
from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile

import redis

from devstack.loopback import free_port
from devstack.redis_service import redis_server_binary
from devstack.waiting import wait_until


class Replica:
    def __init__(self, primary_port: int, primary_host: str = "127.0.0.1") -> None:
        self.port, self.data = free_port(), tempfile.mkdtemp(prefix="geoqueue-replica-")
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.data, "--replicaof", primary_host, str(primary_port)],
            stdout=subprocess.DEVNULL)
        self.primary = redis.Redis(host=primary_host, port=primary_port, decode_responses=True)
        # A timeout, so that reading a paused replica fails rather than hangs.
        self.client = redis.Redis(port=self.port, decode_responses=True, socket_timeout=2)
        try:
            wait_until(self._linked, 30, f"the replica on port {self.port} linked to its primary")
        except BaseException:
            self.stop()
            raise

    def _linked(self) -> bool:
        try:
            return self.client.info("replication").get("master_link_status") == "up" and \
                int(self.primary.info("replication").get("connected_slaves", 0)) > 0
        except redis.RedisError:
            return False

    def pause(self) -> None:
        """Still connected, acknowledging nothing (SIGSTOP)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Gone: the primary sees its connection close and counts one replica fewer."""
        self.resume()
        self.process.terminate()
        self.process.wait(20)
        shutil.rmtree(self.data, ignore_errors=True)
        wait_until(lambda: not self._counted(), 20, "the primary to drop the stopped replica")

    def _counted(self) -> bool:
        try:
            return any(isinstance(v, dict) and int(v.get("port", 0)) == self.port
                       for k, v in self.primary.info("replication").items() if k.startswith("slave"))
        except redis.RedisError:
            return False

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
