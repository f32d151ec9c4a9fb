"""A job's own task: the one a producer sends, named as the job (`immersity.batch`), whose task id
is the job id. `@task(name, kind="job")` (runtime/tasks.py) registers `fn(job, **params)`, which
returns the job's result, or PENDING when the job goes on in other tasks (a fan-out, a poller).

Parameters are checked and normalized once, at submit, by the catalog. A message can reach the
broker without `submit` (Flower, `send_task`), so the entry checks them again with the same catalog,
and their s3:// inputs and outputs against the places of the job's app (config/apps.py), and fails
the job loudly, before any read, when they do not pass; the job's record then holds the normalized
parameters that every later task of the job reads as they are.

Delivery is at least once, so a redelivered message is harmless: a finished job returns its
record, and each vendor side effect is guarded by its own record (runtime/once.py).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from config.apps import get_access
from config.redis_client import get_ledger
from geoqueue.catalog import CATALOG
from geoqueue.job_record import QUEUED, RUNNING, SUCCEEDED, app_of, check_stored_id
from geoqueue.params import InvalidParams
from runtime import ending
from runtime.context import JobContext
from runtime.errors import InvalidInput
from runtime.guard import STOPPED, fail_job, guarded

PENDING = object()  # returned by a job function whose job continues in other tasks


def run_job(task, fn: Callable[..., Any], params: dict[str, Any]) -> dict[str, Any]:
    job_id, ledger = task.request.id, get_ledger()
    try:
        check_stored_id(job_id)
        checked, refusal = CATALOG[task.name].check(params), None
        get_access().check_params(app_of(job_id), task.name, checked)
    except InvalidParams as exc:
        checked, refusal = params, InvalidInput(str(exc), field=exc.field)
    # A job sent straight through Flower or send_task has no record yet.
    ledger.create(job_id, task.name, checked)
    ledger.mark_taken(job_id)
    job = ledger.get(job_id)
    if job.finished:
        return {"job_id": job_id, "state": job.state}
    if refusal is not None:
        fail_job(job_id, refusal.to_dict())
    if job.state == QUEUED:
        ledger.transition(job_id, RUNNING, phase="starting")
    result = guarded(task, job_id, lambda: fn(JobContext(job), **checked))
    if result is PENDING or result is STOPPED:
        return {"job_id": job_id, "state": ledger.get(job_id).state}
    ending.succeed(job_id, result)
    return {"job_id": job_id, "state": SUCCEEDED}


def job_runner(fn: Callable[..., Any], name: str):
    """The job `name` (which the catalog must declare: a job it does not know could never be submitted)."""
    CATALOG[name]

    def run(self, **params: Any) -> dict[str, Any]:
        return run_job(self, fn, params)

    return run
