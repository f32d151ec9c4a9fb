"""A job's steps in Redis: a compare-and-set move between named steps, so that of several tasks
racing for a job (a redelivered message, the poller, a retry) exactly one dispatches its next step."""
from __future__ import annotations

import time
from typing import Callable

from celery import Task

from geoqueue import jobs
from geoqueue.routes import queue_for
from workers.jobtask import publish_progress
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings

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


class Steps:
    """The steps of one kind of job: where each job's step lives and which task runs each step."""

    def __init__(self, state_key: Callable[[str], str], step_tasks: dict[str, str]) -> None:
        self.state_key = state_key
        self.step_tasks = step_tasks
        self._script = None

    def move(self, job_id: str, to: str, *from_steps: str) -> bool:
        """Compare and set: the job moves to `to` only from one of `from_steps`, so one caller wins."""
        if self._script is None:
            self._script = get_redis().register_script(_MOVE_STEP)
        return self._script(keys=[self.state_key(job_id)], args=[to, time.time(), *from_steps]) == 1

    def send(self, job_id: str, step: str) -> None:
        from workers import app

        name = self.step_tasks[step]
        app.send_task(name, kwargs={"job_id": job_id}, queue=queue_for(name))

    def dispatch(self, job_id: str, to: str, *from_steps: str) -> None:
        if self.move(job_id, to, *from_steps):
            self.send(job_id, to)


def is_finished(job_id: str) -> bool:
    return get_redis().hget(jobs.job_key(job_id), "state") in (None, *jobs.TERMINAL)


def grace_seconds() -> float:
    """How long before a step's message counts as lost (Redis would have redelivered it by then)."""
    return get_settings().visibility_timeout + 60


def report(task: Task, job_id: str, phase: str, done: int | None = None, total: int | None = None) -> None:
    """Progress of a job from any of its tasks: in the ledger, and on the job's row in Flower."""
    get_ledger().progress(job_id, phase, done, total)
    publish_progress(task, job_id, phase, done, total)
