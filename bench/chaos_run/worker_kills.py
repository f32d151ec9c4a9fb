"""A fault kind of the chaos run: SIGKILLs of busy workers' whole process groups (as the OOM killer
would), first one mid-call at each call aimed at, the rest at random busy workers; the stack's
supervisor starts each killed worker again."""
from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

from bench.chaos_run.fleet import WORKERS

if TYPE_CHECKING:
    from bench.chaos_run.faults import Chaos


class WorkerKills:
    def __init__(self, chaos: Chaos, seed: int) -> None:
        self.chaos, self.stack, self.batch = chaos, chaos.stack, chaos.batch
        self.rng = random.Random(seed)
        self.gap = max(3.0, 0.5 * chaos.horizon_s / self.batch.kills)        # between two kills not aimed at a call
        self.last_kill = 0.0
        self.kills: list[str] = []
        self.killed: Counter[str] = Counter()      # kills per worker
        self.aimed = {"immersal capture": False, "dronemapper task creation": False, "mapillary upload": False}
        self.control = chaos.run_.control_app()
        self.redis = chaos.run_.redis_client()

    def delivered(self) -> bool:
        return len(self.kills) >= self.batch.kills

    def strike_if_due(self, elapsed: float) -> None:
        """A kill aimed at a call under way, else one at a busy worker when the last is `gap` ago."""
        if len(self.kills) >= self.batch.kills:
            return
        active = self.active()
        target = self.aimed_target(active)
        unaimed_left = self.batch.kills - len(self.kills) - sum(not hit for hit in self.aimed.values())
        if target is None and unaimed_left > 0 and elapsed - self.last_kill >= self.gap:
            busy = sorted(w for w, tasks in active.items() if tasks)
            if busy:
                target = (self.rng.choice(busy), "a busy worker")
        if target is not None:
            self.kill(*target, active)
            self.last_kill = self.chaos.elapsed()

    def active(self) -> dict[str, list[dict]]:
        """What each worker runs now (`celery inspect active`); {} while Redis is away."""
        try:
            replies = self.control.control.inspect(timeout=0.5).active() or {}
        except Exception:  # Redis away, a worker restarting: ask again next round
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
        self.killed[worker] += 1
        self.chaos.note(f"SIGKILL {worker} during {why}; it ran: {running}")

    def summary(self) -> list[str]:
        restarts = sum((self.stack.supervisor.restarts if self.stack.supervisor else {}).values())
        aimed = ", ".join(f"{what}: {'yes' if hit else 'MISSED'}" for what, hit in self.aimed.items())
        return [(f"{len(self.kills)} SIGKILLs of busy workers ({aimed}); "
                 f"the stack restarted killed workers {restarts} times")]

    def close(self) -> None:
        self.control.close()
        self.redis.close()
