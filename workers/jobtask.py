"""How a Celery task runs a job: ledger bookkeeping, retry classification, progress events.

A job task is written as `fn(job: JobContext, **params)` and registered with `job_task`. It
returns the job's result, or PENDING when the job goes on elsewhere (a fan-out, a poller).
Delivery is at least once, so the wrapper makes a redelivered message harmless: a finished
job returns its record, and each vendor side effect is guarded by its own key (see effects.py).
"""
from __future__ import annotations

import inspect
import logging
import random
from typing import Any, Callable

from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded

from geoqueue import jobs
from vendors.errors import TransientError, VendorError
from workers.errors import BudgetExceeded, InvalidInput, JobError, JobFailed, JobStopped  # noqa: F401
from workers.guard import JobTask  # noqa: F401
from workers.redis_client import get_ledger
from workers.settings import get_settings

log = logging.getLogger("geoqueue.jobs")

PENDING = object()  # returned by a job function whose job continues in other tasks


JobCanceled = JobStopped


def error_dict(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, (VendorError, JobError)):
        return exc.to_dict()
    if isinstance(exc, SoftTimeLimitExceeded):
        return {"type": "TimedOut", "message": f"the task ran past its time limit ({get_settings().soft_time_limit}s)"}
    return {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}


def retry_delay(retries: int, hint: float | None = None) -> float:
    """Exponential backoff with full jitter, never shorter than the vendor's hint, capped
    below the visibility timeout."""
    settings = get_settings()
    ceiling = min(settings.retry_backoff_max, 2.0 ** (retries + 1))
    delay = random.uniform(ceiling / 2, ceiling)
    if hint is not None:
        delay = max(delay, hint)
    return min(delay, settings.retry_backoff_max)


def publish_progress(task: Task, job_id: str, phase: str, done: int | None, total: int | None) -> None:
    """A `task-progress` event on the job's own task, whichever task made the progress (an item
    of a batch too), so Flower shows the job's progress on the job's row. update_state never
    reaches Flower; events do. Flower displays only its known task fields, so the progress also
    travels as the `result` text it shows until the task's own result arrives."""
    count = f" {done}/{total}" if done is not None and total else ""
    with task.app.events.default_dispatcher(hostname=task.request.hostname) as dispatcher:
        dispatcher.send("task-progress", uuid=job_id, job_id=job_id, phase=phase, done=done, total=total,
                        result=f"progress: {phase}{count}")


class JobContext:
    """What a job function sees of its job."""

    def __init__(self, task: Task, job_id: str) -> None:
        self.task = task
        self.id = job_id
        self.ledger = get_ledger()

    @property
    def record(self) -> jobs.Job:
        job = self.ledger.get(self.id)
        if job is None:
            raise JobError(f"job {self.id} has no record (expired?)")
        return job

    def progress(self, phase: str, done: int | None = None, total: int | None = None) -> None:
        self.ledger.progress(self.id, phase, done, total)
        publish_progress(self.task, self.id, phase, done, total)

    def wait_on_vendor(self, phase: str) -> None:
        self.ledger.transition(self.id, jobs.WAITING, phase=phase)

    def check_canceled(self) -> None:
        if self.ledger.redis.hget(jobs.job_key(self.id), "state") == jobs.CANCELED:
            raise JobCanceled(self.id)


def retry_or_raise(task: Task, exc: TransientError) -> None:
    """Schedule another try of a transient failure; returns only when the retries are used up."""
    if task.request.retries < get_settings().max_retries:
        raise task.retry(exc=exc, countdown=retry_delay(task.request.retries, exc.retry_after),
                         max_retries=get_settings().max_retries)


def parameter_problem(fn: Callable[..., Any], params: dict[str, Any]) -> str | None:
    """Unknown and missing job parameters, named; None when the parameters fit the job."""
    accepted = list(inspect.signature(fn).parameters.values())[1:]  # after the JobContext
    names = {p.name for p in accepted}
    required = {p.name for p in accepted if p.default is inspect.Parameter.empty}
    unknown, missing = sorted(set(params) - names), sorted(required - set(params))
    parts = ([f"unknown parameter(s) {', '.join(unknown)}"] if unknown else []) + \
            ([f"missing parameter(s) {', '.join(missing)}"] if missing else [])
    return "; ".join(parts) or None


def run_job(task: Task, fn: Callable[..., Any], params: dict[str, Any]) -> dict[str, Any]:
    job_id = task.request.id
    ledger = get_ledger()
    # A job sent straight through Flower's API or send_task has no record yet.
    ledger.create(job_id, task.name, params)
    job = ledger.get(job_id)
    if job.finished:
        return job.to_dict() | {"params": None}
    problem = parameter_problem(fn, params)
    if problem:
        return fail(task, job_id, InvalidInput(f"{task.name}: {problem}"))
    ledger.transition(job_id, jobs.RUNNING, phase="starting")
    context = JobContext(task, job_id)
    try:
        result = fn(context, **params)
    except Retry:
        raise
    except JobCanceled:
        return {"job_id": job_id, "state": jobs.CANCELED}
    except TransientError as exc:
        retry_or_raise(task, exc)
        return fail(task, job_id, exc)
    except (VendorError, JobError, SoftTimeLimitExceeded) as exc:
        return fail(task, job_id, exc)
    if result is PENDING:
        return {"job_id": job_id, "state": ledger.get(job_id).state}
    ledger.transition(job_id, jobs.SUCCEEDED, result=result)
    return {"job_id": job_id, "state": jobs.SUCCEEDED}


def fail(task: Task, job_id: str, exc: BaseException) -> dict[str, Any]:
    error = error_dict(exc)
    get_ledger().transition(job_id, jobs.FAILED, error=error)
    log.info("job %s (%s) failed: %s", job_id, task.name, error["message"])
    raise JobFailed(f"{error['type']}: {error['message']}")


def job_task(app, name: str, **options: Any):
    """Register `fn(job, **params)` as the job named `name`."""

    def register(fn: Callable[..., Any]):
        def run(self, **params: Any) -> dict[str, Any]:
            return run_job(self, fn, params)

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return app.task(bind=True, base=JobTask, name=name, **options)(run)

    return register
