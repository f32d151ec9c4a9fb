"""The one task decorator: `@task(name, kind=...)` registers every geoqueue task.

    kind="job"       the job's own task, named as the job: `fn(job, **params)` returns its result, or
                     PENDING when the job goes on in other tasks (runtime/entry.py)
    kind="item"      one item of a fan-out: `fn(job, item)` returns the item's outcome; `finish(job)`
                     runs once every item has one (runtime/fanout.py)
    kind="step"      one step of a job's step machine: `fn(job, state)` (runtime/steps.py); the name
                     is the machine's task for that step
    kind="control"   acts on a job from outside its work (its end recorded elsewhere, ...): `fn(job_id)`
    kind="periodic"  run by beat: `fn()`, one run at a time fleet-wide under a lease when
                     `one_at_a_time=seconds`, its last run noted for liveness (runtime/liveness.py)

Each task declares its retry policy (`retries`: how often a transient failure is tried again;
default GEOQUEUE_MAX_RETRIES); the guard (runtime/guard.py) applies it. Tasks are shared tasks:
they bind to whichever Celery app loads their module, so no task module imports the app.

A task that works for a job works for the job's app: the store (services/storage.py) reads and
writes only where that app may, whatever the task was sent with.
"""
from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from celery import shared_task

from config.redis_client import get_redis
from geoqueue.job_record import app_of
from runtime import entry, fanout, liveness, steps
from runtime.guard import JobTask
from runtime.lease import Lease
from services.app_context import working_for

PERIODIC_LEASE = "gq:periodic:{name}"


def periodic_runner(fn: Callable[[], Any], name: str, one_at_a_time: float | None = None):
    def run(self) -> Any:
        if one_at_a_time is None:
            result = fn()
        else:
            lease, owner = Lease(get_redis(), PERIODIC_LEASE.format(name=name), one_at_a_time), uuid.uuid4().hex
            if not lease.acquire(owner):
                return {"skipped": "another run is in progress"}
            try:
                result = fn()
            finally:
                lease.release(owner)
        liveness.ran(name)
        return result

    return run


def control_runner(fn: Callable[[str], Any], name: str):
    def run(self, job_id: str) -> Any:
        return fn(job_id)

    return run


RUNNERS = {"job": entry.job_runner, "control": control_runner, "item": fanout.item_runner,
           "step": steps.step_runner, "periodic": periodic_runner}


def for_its_app(run: Callable[..., Any], kind: str) -> Callable[..., Any]:
    """`run`, working for the app of the job it works for: the job's own task has the job's id, the
    others name it in their kwargs; a periodic task works for no app."""
    @functools.wraps(run)
    def in_app(self, *args: Any, **kwargs: Any) -> Any:
        job_id = self.request.id if kind == "job" else kwargs.get("job_id")
        with working_for(app_of(job_id) if isinstance(job_id, str) and kind != "periodic" else None):
            return run(self, *args, **kwargs)

    return in_app


def task(name: str | None = None, *, kind: str, retries: int | None = None, **how: Any):
    """Register `fn` as the task `name` of `kind`; `how` holds what the kind needs (see above) and
    Celery's own task options (`ignore_result`, ...)."""
    if kind not in RUNNERS:
        raise ValueError(f"unknown task kind {kind!r}; one of {', '.join(RUNNERS)}")
    if kind == "step":
        name = name or how["machine"].step_tasks[how["step"]]
    options = {key: how.pop(key) for key in list(how) if key in CELERY_OPTIONS}

    def register(fn: Callable[..., Any]):
        run = RUNNERS[kind](fn, name=name, **how)
        run.__name__, run.__doc__, run.__module__ = fn.__name__, fn.__doc__, fn.__module__
        return shared_task(bind=True, base=JobTask, name=name, retry_limit=retries, **options)(for_its_app(run, kind))

    return register


CELERY_OPTIONS = {"ignore_result", "acks_late", "rate_limit", "time_limit", "soft_time_limit"}
