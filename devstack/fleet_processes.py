"""The fleet's own processes in the embedded stack: workers (started, replaced, waited for) and the
HTTP API with its webhook deliverer."""
from __future__ import annotations

import base64
import secrets

import redis

from devstack.commands import local_argv
from devstack.loopback import free_port
from devstack.processes import PROCESSES
from devstack.supervision import Process
from devstack.waiting import wait_until


class FleetProcesses:
    """LocalStack's workers and API (a mixin: it spawns through the stack, with the stack's env)."""

    def _start_api(self) -> None:
        """The API with one key of both scopes (its hash configured, the key kept here) and the
        webhook deliverer with a fresh signing secret; callbacks on loopback are allowed."""
        from api.keys import new_key

        self.api_key, entry = new_key("local", ["submit", "read"], app="default")  # the CLI's app: pages show its jobs
        self.api_port = free_port()
        self.env.setdefault("GEOQUEUE_WEBHOOK_SECRET", "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
        self.env.setdefault("GEOQUEUE_WEBHOOK_ALLOW_PRIVATE", "true")
        self.env.update({"GEOQUEUE_API_PORT": str(self.api_port), "GEOQUEUE_API_ADDRESS": "127.0.0.1",
                         "GEOQUEUE_API_FLOWER_URL": self.flower_url, "GEOQUEUE_API_FLOWER_API_URL": self.flower_url,
                         "GEOQUEUE_API_KEYS": " ".join(filter(None, [self.env.get("GEOQUEUE_API_KEYS"), entry]))})
        self.webhook_secret = self.env["GEOQUEUE_WEBHOOK_SECRET"]
        self.spawn("api", local_argv(PROCESSES["api"], self.env))
        self.spawn("webhooks", local_argv(PROCESSES["webhooks"], self.env))

    def start_worker(self, queue: str, name: str | None = None, concurrency: int | None = None,
                     queues: str | None = None, pool: str | None = None) -> Process:
        """A worker for `queue`'s process type, named `name` (several may run, e.g. to kill one),
        consuming `queues` (comma-separated) when given instead of `queue` alone."""
        name = name or queue
        argv = local_argv(PROCESSES[queue], self.env)
        argv[argv.index("-n") + 1] = f"{name}@%h"
        if queues:
            argv[argv.index("-Q") + 1] = queues
        if pool and "-P" in argv:
            argv[argv.index("-P") + 1] = pool
        elif pool:
            argv += ["-P", pool]
        if concurrency is not None:
            argv[argv.index("-c") + 1] = str(concurrency)
        return self.spawn(name, argv)

    def replace_worker(self, name: str) -> Process:
        """SIGKILL a worker with whatever it holds, and start a fresh one of the same name."""
        self.processes[name].kill()
        process = self.start_worker(name)
        self.wait_for_workers([name])
        return process

    def wait_for_workers(self, names: list[str], timeout: float = 60) -> None:
        from celery import Celery

        app = Celery(broker=self.redis_url)
        if self.redis_url.startswith("sentinel://"):
            master = self.env.get("GEOQUEUE_REDIS_SENTINEL_MASTER", "mymaster")
            app.conf.broker_transport_options = {"master_name": master}
        try:
            def ready() -> bool:
                for name in names:
                    if not self.processes[name].alive():
                        raise RuntimeError(f"worker {name} exited; see {self.processes[name].log}")
                try:
                    replies = app.control.ping(timeout=0.5)
                except redis.ConnectionError:  # a pooled connection that outlived a Redis restart
                    return False
                seen = {list(r)[0].split("@")[0] for r in replies}
                return set(names) <= seen
            wait_until(ready, timeout, f"workers {', '.join(names)}", interval=0.3)
        finally:
            app.close()
