"""Tasks that carry an Immersal job one step on."""
from __future__ import annotations

import uuid
from typing import Any, Callable

from celery.exceptions import SoftTimeLimitExceeded

from tasks.immersal.records import busy_key, job_state
from tasks.immersal.workspace import free_workspace
from vendors.errors import TransientError, VendorError
from workers import app
from workers.jobtask import JobError, JobTask, fail, retry_or_raise
from workers.lease import Lease
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings


def fail_and_free(task, job_id: str, exc: BaseException) -> None:
    try:
        fail(task, job_id, exc)           # records the failure, raises JobFailed
    finally:
        free_workspace(job_id)


# --- tasks that carry a job one step on ---
def step_task(name: str, step: str):
    """Register `fn(task, job)` as the task for `step`. It runs only while the job is at that step and
    one run at a time: a late duplicate (re-sent by the poller, redelivered) finds nothing to do."""

    def register(fn: Callable[[Any, Any], None]):
        def run(self, job_id: str) -> dict:
            job = get_ledger().get(job_id)
            if job is None or job.finished or job_state(job_id).get("step") != step:
                return {"job_id": job_id, "step": step, "skipped": True}
            busy, owner = Lease(get_redis(), busy_key(job_id), get_settings().task_time_limit), uuid.uuid4().hex
            if not busy.acquire(owner):
                return {"job_id": job_id, "step": step, "skipped": True}
            try:
                fn(self, job)
            except SoftTimeLimitExceeded:
                raise self.retry(countdown=1, max_retries=get_settings().max_retries)
            except TransientError as exc:
                retry_or_raise(self, exc)
                fail_and_free(self, job_id, exc)
            except (VendorError, JobError) as exc:
                fail_and_free(self, job_id, exc)
            finally:
                busy.release(owner)
            return {"job_id": job_id, "step": step}

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return app.task(bind=True, base=JobTask, name=name)(run)

    return register
