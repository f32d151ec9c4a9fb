"""The whole stack on one machine, on loopback: Redis, S3 (moto), the sandbox vendors,
workers per queue, beat, Flower, the HTTP API and the webhook deliverer. Used by `geoqueue stack`,
`geoqueue demo` and the tests.

Its parts: Redis (devstack/redis_service.py), the stand-ins (devstack/sandbox_service.py), the
fleet's workers and API (devstack/fleet_processes.py), the settings its processes get
(devstack/stack_settings.py) and their supervision (devstack/supervision.py).
"""
from __future__ import annotations

import logging
import secrets
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack.commands import REPO_ROOT, local_argv
from devstack.fleet_processes import FleetProcesses
from devstack.loopback import free_port, http_ok
from devstack.processes import PROCESSES, STAND_INS
from devstack.redis_service import EmbeddedRedis
from devstack.sandbox_service import SandboxServices
from devstack.stack_settings import process_env
from devstack.supervision import Process, Supervisor
from devstack.waiting import wait_until

log = logging.getLogger("geoqueue.stack")


@dataclass
class LocalStack(EmbeddedRedis, SandboxServices, FleetProcesses):
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="geoqueue-")))
    settings_env: dict[str, str] = field(default_factory=dict)  # extra GEOQUEUE_* settings
    flower: bool = True
    beat: bool = True
    api: bool = True  # the HTTP API, its job pages and the webhook deliverer
    isolated: bool = False  # ignore GEOQUEUE_* of the calling environment (tests)
    worker_queues: tuple[str, ...] = ("control", "transfer")  # one worker each, started with the stack
    supervise: bool = True  # restart processes that exit unexpectedly (see Supervisor)
    processes: dict[str, Process] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    supervisor: Supervisor | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    # --- starting ---
    def start(self) -> LocalStack:
        try:
            self._start()
            if self.supervise:
                self.supervisor = Supervisor(self)
                self.supervisor.start()
        except BaseException:
            self.stop()
            raise
        return self

    def note(self, message: str) -> None:
        """A line in the stack's own log (`stack.log` in the run directory)."""
        log.warning("stack: %s", message)
        with open(self.run_dir / "stack.log", "a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def _start(self) -> None:
        self.env = process_env(self.isolated, self.settings_env)
        self.redis_url = self._ensure_redis()
        self.env["GEOQUEUE_REDIS_URL"] = self.redis_url
        self._start_sandbox()
        self.flower_password = secrets.token_urlsafe(12)
        self.flower_port = free_port()
        self.env.setdefault("GEOQUEUE_FLOWER_BASIC_AUTH", f"admin:{self.flower_password}")
        self.flower_user, self.flower_password = self.env["GEOQUEUE_FLOWER_BASIC_AUTH"].split(":", 1)
        self.env["GEOQUEUE_FLOWER_PORT"] = str(self.flower_port)
        self.env["GEOQUEUE_FLOWER_ADDRESS"] = "127.0.0.1"
        for queue in self.worker_queues:
            self.start_worker(queue)
        if self.beat:
            self.spawn("beat", local_argv(PROCESSES["beat"], self.env))
        if self.flower:
            self.spawn("flower", local_argv(PROCESSES["flower"], self.env))
        self.metrics_port = free_port()
        self.env.update({"GEOQUEUE_METRICS_PORT": str(self.metrics_port), "GEOQUEUE_METRICS_ADDRESS": "127.0.0.1"})
        self.spawn("metrics", local_argv(PROCESSES["metrics"], self.env))
        if self.api:
            self._start_api()
        self.wait_for_workers(list(self.worker_queues))
        if self.api:
            wait_until(lambda: http_ok(self.api_url + "/healthz"), 30, "the HTTP API")

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        env = dict(self.env if env is None else env)
        path = self.run_dir / f"{name}.log"
        with self.lock, open(path, "ab") as handle:
            popen = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=REPO_ROOT, start_new_session=True)
            process = Process(name, popen, path, env)
            self.processes[name] = process
        return process

    # --- using ---
    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def logs(self, name: str) -> str:
        return self.processes[name].log.read_text(errors="replace")

    # --- stopping ---
    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        front = ["api", "webhooks", "flower", "beat", "metrics"]
        last = [*STAND_INS, "redis"]
        order = front + [n for n in self.processes if n not in (*front, *last)]
        for name in order + last:
            if name in self.processes:
                self.processes[name].stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
