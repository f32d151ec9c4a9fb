"""The chaos run's fault schedule: while the batch runs, each kind of fault is delivered when due,
spread over the horizon, until every kind was delivered as often as the batch asks. The kinds:
kills of busy workers (worker_kills.py), a Redis restart (redis_restart.py) or failover
(failovers.py) and tokens that stop working (token_expiry.py); the vendors' errors are set up with
the fleet (fleet.py). A new kind is a module with a class of FaultKind's methods, made in
Chaos.__init__, put in its `kinds` and its summary."""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Protocol

import redis

from bench.chaos_run.failovers import failover_for
from bench.chaos_run.fleet import ERRORS
from bench.chaos_run.redis_restart import RedisRestart
from bench.chaos_run.token_expiry import TokenExpiries
from bench.chaos_run.worker_kills import WorkerKills

if TYPE_CHECKING:
    from bench.chaos_run.fleet import Run


class FaultKind(Protocol):
    def strike_if_due(self, elapsed: float) -> None:
        """Deliver the fault if it is due `elapsed` seconds into the run."""

    def delivered(self) -> bool:
        """Delivered as often as the batch asks: the schedule ends once every kind is."""

    def summary(self) -> list[str]:
        """What was done to the fleet, for the report."""

    def close(self) -> None:
        """Let go of what it holds (connections) once the run ends."""


class Chaos(threading.Thread):
    """Kills busy workers (some at chosen moments), restarts or fails over Redis once and makes tokens stop working,
    spread over `horizon_s` seconds, while the batch runs."""

    def __init__(self, run: Run, horizon_s: float, seed: int) -> None:
        super().__init__(name="chaos", daemon=True)
        self.run_, self.stack, self.batch = run, run.stack, run.batch
        self.horizon_s = horizon_s
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.log: list[str] = []
        self.tokens = TokenExpiries(self)
        # On a Redis set up for a failover (fleet.REDIS_SETUPS), the failover in place of the restart.
        self.redis_fault = failover_for(self, run.redis_setup) if run.redis_setup else RedisRestart(self)
        self.kills = WorkerKills(self, seed)
        # A round delivers what is due in this order: the timed faults, then a kill among what runs after them.
        self.kinds: tuple[FaultKind, ...] = (self.tokens, self.redis_fault, self.kills)
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def note(self, text: str) -> None:
        line = f"{self.elapsed():6.1f}s {text}"
        self.log.append(line)
        print("   ", line, flush=True)

    def run(self) -> None:
        try:
            self.make_chaos()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def stop(self) -> None:
        self.done.set()
        self.join(60)
        for kind in self.kinds:
            kind.close()

    def finished(self) -> bool:
        return all(kind.delivered() for kind in self.kinds)

    def make_chaos(self) -> None:
        while not self.done.wait(0.2) and not self.finished():
            try:
                self.chaos_round()
            except redis.RedisError:      # Redis restarting under a look at the job records: look again
                continue

    def chaos_round(self) -> None:
        """Whatever is due now: a token expiry, the Redis restart or failover, a kill."""
        elapsed = self.elapsed()
        for kind in self.kinds:
            kind.strike_if_due(elapsed)

    def summary(self) -> list[str]:
        return [*self.kills.summary(), *self.redis_fault.summary(),
                (f"{ERRORS['error_rate']:.0%} HTTP 500 and {ERRORS['rate_limit_rate']:.0%} 429 (Retry-After "
                 f"{ERRORS['retry_after_s']:g} s) from every vendor"),
                *self.tokens.summary()]
