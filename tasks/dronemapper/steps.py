"""Tasks that carry a survey one step on."""
from __future__ import annotations

import contextlib
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import LockError

from geoqueue import jobs
from tasks.dronemapper.inputs import s3_code
from tasks.dronemapper.records import job_state, state_key
from vendors.errors import TransientError, VendorError
from workers import app
from workers.jobtask import JobCanceled, JobError, JobTask, fail, retry_or_raise
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings


# --- steps after the uploads: one task per step, run while the job is at that step ---
def step_task(name: str, step: str):
    """Register `fn(task, job, state)` as the task of `step`. It runs only while the job is at that
    step, one run at a time: a late duplicate (redelivered, re-sent by the poller) finds nothing to do."""

    def register(fn: Callable[[Any, jobs.Job, dict], None]):
        def run(self, job_id: str) -> dict:
            job = get_ledger().get(job_id)
            if job is None or job.finished or job_state(job_id).get("step") != step:
                return {"job_id": job_id, "step": step, "skipped": True}
            busy = get_redis().lock(f"{state_key(job_id)}:busy", timeout=get_settings().task_time_limit,
                                    blocking=False)
            if not busy.acquire():
                return {"job_id": job_id, "step": step, "skipped": True}
            try:
                fn(self, job, job_state(job_id))
            except JobCanceled:
                return {"job_id": job_id, "step": step, "canceled": True}
            except SoftTimeLimitExceeded:
                raise self.retry(countdown=1, max_retries=get_settings().max_retries)
            except TransientError as exc:
                retry_or_raise(self, exc)
                fail(self, job_id, exc)
            except (VendorError, JobError) as exc:
                fail(self, job_id, exc)
            except ClientError as exc:
                fail(self, job_id, JobError(f"S3 refused a request ({s3_code(exc)}): {exc}"))
            except BotoCoreError as exc:
                retry_or_raise(self, TransientError(f"S3: {exc}", vendor="s3"))
                fail(self, job_id, exc)
            finally:
                with contextlib.suppress(LockError):
                    busy.release()
            return {"job_id": job_id, "step": step}

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return app.task(bind=True, base=JobTask, name=name)(run)

    return register
