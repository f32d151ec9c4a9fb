"""Process supervision in the embedded stack: each process it started, and the supervisor that
starts one again when it exits without being asked to."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devstack.local_stack import LocalStack

log = logging.getLogger("geoqueue.stack")


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

    def __init__(self, stack: LocalStack, interval: float = 0.5, max_delay: float = 30.0,
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
