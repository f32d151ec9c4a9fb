"""Celery apps the dispatch benchmark starts workers of, besides the fleet's own (`-A workers`):

- `plain_app`: Celery's defaults, the baseline;
- `fleet_variant`: the fleet's app with one of this change's measures undone (BENCH_UNDO names it),
  to measure what each saves, or with one of its reliability settings set back to Celery's default
  (prefetch, acks, taskevents), to measure what each costs.

No task of ours: the benchmark sends Celery's built-in `celery.accumulate`, a no-op every app has.
"""
from __future__ import annotations

import os

from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

plain_app = Celery("bench-plain", broker=REDIS_URL, backend=REDIS_URL)


def _fleet_variant() -> Celery:
    from celery.signals import worker_before_create_process

    from workers import app, celery_app

    undo = os.environ.get("BENCH_UNDO", "")
    if undo == "events":        # control tasks store STARTED like transfer tasks (the sender sends task-sent)
        app.conf.task_annotations = None
    elif undo == "freeze":      # no gc.freeze before the first prefork child
        worker_before_create_process.disconnect(celery_app._freeze_startup_objects)
    elif undo == "recycle":     # a prefork child replaced after 200 tasks (the default before)
        app.conf.worker_max_tasks_per_child = 200
    elif undo == "prefetch":    # Celery's default: 4 messages reserved per process, not 1
        app.conf.worker_prefetch_multiplier = 4
    elif undo == "acks":        # Celery's default: a message acked as the task starts, not after it
        app.conf.task_acks_late = False
        app.conf.task_reject_on_worker_lost = False
    elif undo == "taskevents":  # the worker without -E (bench/dispatch.py drops it): no task events for Flower
        pass
    elif undo:
        raise ValueError(f"BENCH_UNDO={undo!r}: events, freeze, recycle, prefetch, acks or taskevents")
    return app


fleet_variant = _fleet_variant() if os.environ.get("BENCH_UNDO") else None
