"""The chaos run's faults, delivered while the batch runs: kills of busy workers, a Redis restart and
tokens that stop working (the vendors' errors are set up with the fleet, bench/chaos_run/fleet.py)."""
from __future__ import annotations

import random
import signal
import threading
import time
from typing import TYPE_CHECKING

import redis
from celery import Celery

from bench.chaos_run.fleet import ERRORS, WORKERS

if TYPE_CHECKING:
    from bench.chaos_run.fleet import Run

REDIS_OUTAGE_S = 5.0
CLOCK_JUMP_S = 7 * 3600            # past the 6 h lifetime of a DroneMapper token


class Chaos(threading.Thread):
    """Kills busy workers (some at chosen moments), restarts Redis once and makes tokens stop working,
    spread over `horizon_s` seconds, while the batch runs."""

    def __init__(self, run: Run, horizon_s: float, seed: int) -> None:
        super().__init__(name="chaos", daemon=True)
        self.run_, self.stack, self.batch = run, run.stack, run.batch
        self.horizon_s = horizon_s
        self.rng = random.Random(seed)
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.log: list[str] = []
        self.kills: list[str] = []
        self.aimed = {"immersal capture": False, "dronemapper task creation": False, "mapillary upload": False}
        self.redis_restarted = False
        self.expiries = 0
        self.control = Celery(broker=self.stack.redis_url)
        self.redis = redis.Redis.from_url(self.stack.redis_url, decode_responses=True)
        self.started = time.monotonic()

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.started:6.1f}s {text}"
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
        self.control.close()

    def finished(self) -> bool:
        return len(self.kills) >= self.batch.kills and self.redis_restarted and \
            self.expiries >= self.batch.token_expiries

    def make_chaos(self) -> None:
        gap = max(3.0, 0.5 * self.horizon_s / self.batch.kills)        # between two kills not aimed at a call
        expiry_every = self.horizon_s / (self.batch.token_expiries + 1)
        last_kill = 0.0
        while not self.done.wait(0.2) and not self.finished():
            try:
                last_kill = self.chaos_round(gap, expiry_every, last_kill)
            except redis.RedisError:      # Redis restarting under a look at the job records: look again
                continue

    def chaos_round(self, gap: float, expiry_every: float, last_kill: float) -> float:
        """Whatever is due now: a token expiry, the Redis restart, a kill; returns when the last kill was."""
        elapsed = time.monotonic() - self.started
        if self.expiries < self.batch.token_expiries and elapsed >= expiry_every * (self.expiries + 1):
            self.expire_tokens()
        if not self.redis_restarted and elapsed >= 0.4 * self.horizon_s:
            self.restart_redis()
        if len(self.kills) >= self.batch.kills:
            return last_kill
        active = self.active()
        target = self.aimed_target(active)
        unaimed_left = self.batch.kills - len(self.kills) - sum(not hit for hit in self.aimed.values())
        if target is None and unaimed_left > 0 and elapsed - last_kill >= gap:
            busy = sorted(w for w, tasks in active.items() if tasks)
            if busy:
                target = (self.rng.choice(busy), "a busy worker")
        if target is not None:
            self.kill(*target, active)
            last_kill = time.monotonic() - self.started
        return last_kill

    def active(self) -> dict[str, list[dict]]:
        """What each worker runs now (`celery inspect active`); {} while Redis is away."""
        try:
            replies = self.control.control.inspect(timeout=0.5).active() or {}
        except Exception:  # noqa: BLE001 - Redis away, a worker restarting: ask again next round
            return {}
        return {host.split("@")[0]: tasks for host, tasks in replies.items() if host.split("@")[0] in WORKERS}

    def in_flight(self, job_id: str, scope: str, effect: str | None = None) -> bool:
        """An exactly-once effect of the job marked and not yet recorded: its call is under way."""
        key = f"gq:job:{job_id}:once" + (f":{scope}" if scope else "")
        entries = self.redis.hgetall(key)
        return any('"result"' not in raw for name, raw in entries.items() if effect is None or name == effect)

    def aimed_target(self, active: dict[str, list[dict]]) -> tuple[str, str] | None:
        """A worker running a call that a kill is still to be aimed at, the shortest windows first."""
        calls = {  # what is aimed at: the task running it, and whether its call is under way now
            "dronemapper task creation": ("dronemapper.process_survey",
                                          lambda task: self.in_flight(task["id"], "", "dronemapper:task")),
            "immersal capture": ("immersal.transfer.submit_chunk",
                                 lambda task: self.in_flight(task["kwargs"]["job_id"], "captures")),
            "mapillary upload": ("mapillary.transfer.upload_image", lambda task: True),
        }
        for call, (task_name, under_way) in calls.items():
            if self.aimed[call]:
                continue
            for worker, tasks in active.items():
                if any(task["name"] == task_name and under_way(task) for task in tasks):
                    return worker, call
        return None

    def kill(self, worker: str, why: str, active: dict[str, list[dict]]) -> None:
        running = ", ".join(sorted(t["name"] for t in active.get(worker, []))) or "?"
        # SIGKILL to the whole process group, unasked: the stack's supervisor starts it again.
        self.stack.processes[worker].kill_group()
        if why in self.aimed:
            self.aimed[why] = True
        self.kills.append(f"{worker} ({why})")
        self.note(f"SIGKILL {worker} during {why}; it ran: {running}")

    def restart_redis(self) -> None:
        self.note(f"Redis: SIGKILL, {REDIS_OUTAGE_S:g} s down")
        self.stack.restart_redis(signal.SIGKILL, outage=REDIS_OUTAGE_S)
        self.redis_restarted = True
        self.note("Redis: back")

    def expire_tokens(self) -> None:
        self.expiries += 1
        self.stack.sandbox("POST", "/_sandbox/config/immersity", json={"expire_issued_tokens": True})
        self.stack.sandbox("POST", "/_sandbox/config/immersal", json={"revoke_tokens": True})
        self.stack.sandbox("POST", "/_sandbox/config/dronemapper",
                           json={"clock_offset_s": CLOCK_JUMP_S * self.expiries})
        self.note("tokens: Immersity's expired, Immersal's revoked, DroneMapper's expired (its clock jumped 7 h)")

    def summary(self) -> list[str]:
        restarts = sum((self.stack.supervisor.restarts if self.stack.supervisor else {}).values())
        aimed = ", ".join(f"{what}: {'yes' if hit else 'MISSED'}" for what, hit in self.aimed.items())
        return [f"{len(self.kills)} SIGKILLs of busy workers ({aimed}); the stack restarted killed workers "
                f"{restarts} times",
                f"Redis restarted {'once' if self.redis_restarted else 'NOT'} (SIGKILL, {REDIS_OUTAGE_S:g} s down)",
                f"{ERRORS['error_rate']:.0%} HTTP 500 and {ERRORS['rate_limit_rate']:.0%} 429 (Retry-After "
                f"{ERRORS['retry_after_s']:g} s) from every vendor",
                f"tokens stopped working {self.expiries} times (Immersity's expired, Immersal's revoked, "
                f"DroneMapper's expired)"]
