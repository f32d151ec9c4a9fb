"""A job's steps in Redis, and the tasks that carry it from one step to the next.

Several tasks may race for a job (a redelivered message, the poller re-sending a lost step, a
retry), so a move between steps is a compare-and-set: exactly one of them dispatches the next
step. A step's task runs only while the job is at that step, and one run at a time (a lease on
the job), so a late duplicate finds nothing to do.

    gq:job:<id>:<vendor>        hash: step, step_at, and the vendor's own fields
    gq:job:<id>:<vendor>:busy   lease: the step task running for the job
"""
from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import current_app

from config.redis_client import get_redis
from config.settings import get_settings
from geoqueue.job_record import TERMINAL
from geoqueue.ledger_keys import job_key
from geoqueue.routes import queue_for
from runtime.context import JobContext
from runtime.guard import guarded
from runtime.lease import Lease

# Move to ARGV[1] (stamped ARGV[2]) only from one of ARGV[3..].
_MOVE_STEP = """
local current = redis.call('HGET', KEYS[1], 'step')
for i = 3, #ARGV do
  if current == ARGV[i] then
    redis.call('HSET', KEYS[1], 'step', ARGV[1], 'step_at', ARGV[2])
    return 1
  end
end
return 0
"""

StepWork = Callable[[JobContext, dict[str, str]], None]


@functools.lru_cache(maxsize=1)
def _move_script():
    return get_redis().register_script(_MOVE_STEP)


def is_finished(job_id: str) -> bool:
    return get_redis().hget(job_key(job_id), "state") in (None, *TERMINAL)


def grace_seconds() -> float:
    """How long before a step's message counts as lost (Redis would have redelivered it by then)."""
    return get_settings().visibility_timeout + 60


class StepMachine:
    """The steps of one vendor's jobs: where each job's step lives and which task runs each step."""

    def __init__(self, vendor: str, step_tasks: dict[str, str]) -> None:
        self.vendor = vendor
        self.step_tasks = step_tasks

    def key(self, job_id: str) -> str:
        return f"{job_key(job_id)}:{self.vendor}"

    def state(self, job_id: str) -> dict[str, str]:
        return get_redis().hgetall(self.key(job_id))

    def set(self, job_id: str, **fields: Any) -> None:
        get_redis().hset(self.key(job_id), mapping={k: str(v) for k, v in fields.items()})

    def move(self, job_id: str, to: str, *from_steps: str) -> bool:
        """Compare and set: the job moves to `to` only from one of `from_steps`, so one caller wins."""
        return _move_script()(keys=[self.key(job_id)], args=[to, time.time(), *from_steps]) == 1

    def send(self, job_id: str, step: str) -> None:
        name = self.step_tasks[step]
        current_app.send_task(name, kwargs={"job_id": job_id}, queue=queue_for(name))

    def dispatch(self, job_id: str, to: str, *from_steps: str) -> None:
        if self.move(job_id, to, *from_steps):
            self.send(job_id, to)

    def resend_if_lost(self, job_id: str, state: dict[str, str]) -> bool:
        """Send the job's step again when its message is older than Redis would keep it unacked."""
        step = state.get("step")
        if step not in self.step_tasks or time.time() - float(state.get("step_at") or 0) <= grace_seconds():
            return False
        self.set(job_id, step_at=time.time())
        self.send(job_id, step)
        return True


def step_runner(fn: StepWork, name: str, machine: StepMachine, step: str):
    """The task of `step` (`@task(kind="step", machine=..., step=...)`): `fn(job, state)` under the
    guard, only while the job is at that step, one run at a time."""
    def run(self, job_id: str) -> dict:
        skipped = {"job_id": job_id, "step": step, "skipped": True}
        if is_finished(job_id) or machine.state(job_id).get("step") != step:
            return skipped
        busy, owner = Lease(get_redis(), f"{machine.key(job_id)}:busy", get_settings().task_time_limit), \
            uuid.uuid4().hex
        if not busy.acquire(owner):
            return skipped
        try:
            guarded(self, job_id, lambda: fn(JobContext.load(job_id), machine.state(job_id)))
        finally:
            busy.release(owner)
        return {"job_id": job_id, "step": step}

    return run
