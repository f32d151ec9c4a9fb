"""The guard: the one place where every exception of every task is classified.

    transient (5xx, 429, timeouts, dropped connections, a call still in flight, Redis away or
               answering READONLY during a failover)
                           -> this task is tried again with backoff, while retries remain
    vendor, job or input error -> the job fails with that typed error
    soft time limit        -> tried again (the task resumes from its checkpoints), then TimedOut
    the job ended elsewhere -> the task stops quietly
    anything else          -> the job fails with InternalError naming the exception; the traceback is logged

A poller acting for one job of many (`polled`) follows the same rules, except that a transient
failure waits for the poller's next cycle. Whatever escapes a task anyway (a bug in bookkeeping
outside the guarded work) still ends the job: JobTask.on_failure fails it, so no job stays
running or queued with nothing left to do.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded

from config import redaction
from config.settings import get_settings
from geoqueue.backoff import backoff
from geoqueue.catalog import CATALOG
from geoqueue.redis_failover import is_read_only
from runtime import ending
from runtime.errors import FailureRecorded, InternalError, JobError, JobStopped, TimedOut, error_dict
from vendors.errors import TransientError, VendorError

log = logging.getLogger("geoqueue.jobs")

T = TypeVar("T")
STOPPED = object()          # what guarded() returns when the job ended elsewhere
Failure = Callable[[dict[str, Any]], Any]


def retry_delay(retries: int, hint: float | None = None) -> float:
    """Exponential backoff with full jitter, never shorter than the vendor's hint, capped below
    the visibility timeout."""
    most = get_settings().retry_backoff_max
    return min(backoff(retries, 2.0, most, hint, random.uniform), most)


def retry_limit(task: Task) -> int:
    """How often the task is tried again: its own declaration (`@task(retries=...)`), else the setting."""
    declared = getattr(task, "retry_limit", None)
    return get_settings().max_retries if declared is None else declared


def retry_or_fail(task: Task, exc: Exception, hint: float | None, failed: Callable[[], Any]) -> Any:
    if task.request.retries < retry_limit(task):
        raise task.retry(exc=exc, countdown=retry_delay(task.request.retries, hint), max_retries=retry_limit(task))
    return failed()


def fail_job(job_id: str, error: dict[str, Any]) -> None:
    """The job fails with `error`; raises FailureRecorded so Celery and Flower show the task failed too."""
    ending.fail(job_id, error)
    log.info("job %s failed: %s: %s", job_id, error.get("type"), error.get("message"))
    raise FailureRecorded(f"{error.get('type')}: {error.get('message')}")


RETRY, FAIL, STOP = "retry", "fail", "stop"


def verdict(exc: Exception, where: str) -> tuple[str, dict[str, Any] | None, float | None]:
    """What an exception means for its job: (RETRY, error, hint), (FAIL, error, None) or (STOP, None, None).
    The error's text is redacted: a vendor's message may quote a presigned URL or a token it was given."""
    kind, error, hint = classify(exc, where)
    return kind, None if error is None else redacted(error), hint


def redacted(error: dict[str, Any]) -> dict[str, Any]:
    return redaction.redact_fields(error, redaction.secret_values(get_settings()))


def classify(exc: Exception, where: str) -> tuple[str, dict[str, Any] | None, float | None]:
    if isinstance(exc, JobStopped):
        return STOP, None, None
    if isinstance(exc, SoftTimeLimitExceeded):
        limit = get_settings().soft_time_limit
        return RETRY, TimedOut(f"{where} ran past its time limit ({limit}s) on every try").to_dict(), 1.0
    if isinstance(exc, TransientError):
        return RETRY, exc.to_dict(), exc.retry_after
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) or is_read_only(exc):
        # Redis away or still a replica (READONLY, a failover) longer than the client's own tries
        # (GEOQUEUE_REDIS_OUTAGE_TOLERANCE): the task is tried again when the broker can take the
        # retry; it was not the job's fault.
        what = "answered as a replica (a failover)" if is_read_only(exc) else "did not answer"
        return RETRY, {"type": "RedisUnavailable", "message": f"Redis {what}: {exc}"}, None
    if isinstance(exc, (VendorError, JobError)):
        return FAIL, error_dict(exc), None
    log.error("unexpected %s in %s", type(exc).__name__, where, exc_info=exc)
    return FAIL, InternalError(f"{type(exc).__name__} in {where}: {exc}").to_dict(), None


def guarded(task: Task, job_id: str, work: Callable[[], T], on_failure: Failure | None = None) -> T | Any:
    """Run `work()` for a job under the guard. A failure goes to `on_failure(error)` (default: the
    job fails); its return value is then returned."""
    failed: Failure = on_failure or (lambda error: fail_job(job_id, error))
    try:
        return work()
    except Retry:
        raise
    except Exception as exc:
        kind, error, hint = verdict(exc, task.name)
        if kind == STOP:
            return STOPPED
        if kind == RETRY:
            return retry_or_fail(task, exc, hint, lambda: failed(error))
        return failed(error)


def polled(job_id: str, work: Callable[[], T], where: str) -> T | None:
    """One job's part of a poller's cycle, under the guard's rules, except that a transient failure
    waits for the next cycle (seconds away) rather than retrying the whole poll."""
    try:
        return work()
    except Exception as exc:
        kind, error, _ = verdict(exc, where)
        if kind == RETRY:
            log.info("job %s: %s this cycle (%s); next cycle", job_id, where, error.get("message"))
        elif kind == FAIL:
            ending.fail(job_id, error)
        return None


class JobTask(Task):
    """Base of every geoqueue task. An exception that escapes a task working for a job (its kwargs
    name the job, or it is the job's own entry task) fails that job: nothing stays running."""

    throws = (FailureRecorded,)  # recorded already; logged without a traceback
    retry_limit: int | None = None  # declared per task; None: GEOQUEUE_MAX_RETRIES

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        if isinstance(exc, FailureRecorded):
            return
        job_id = (kwargs or {}).get("job_id") if self.name not in CATALOG else task_id
        if not isinstance(job_id, str):
            return
        log.error("job %s: %s escaped %s", job_id, type(exc).__name__, self.name)
        try:
            ending.fail(job_id, redacted(InternalError(f"{type(exc).__name__} in {self.name}: {exc}").to_dict()))
        except Exception:
            log.exception("job %s: could not record the failure", job_id)
