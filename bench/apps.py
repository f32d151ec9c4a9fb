"""Two Celery apps with the same no-op task: geoqueue's configuration and Celery's defaults."""
from __future__ import annotations

import os

from celery import Celery

from workers.celery_app import configure
from workers.settings import Settings

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

geoqueue_app = Celery("bench-geoqueue")
configure(geoqueue_app, Settings(redis_url=REDIS_URL))
geoqueue_app.conf.task_routes = {"bench.noop_geoqueue": {"queue": "bench-geoqueue"}}
geoqueue_app.conf.beat_schedule = {}

plain_app = Celery("bench-plain", broker=REDIS_URL, backend=REDIS_URL)
plain_app.conf.task_routes = {"bench.noop_plain": {"queue": "bench-plain"}}


@geoqueue_app.task(name="bench.noop_geoqueue", shared=False)
def geoqueue_noop(i: int) -> int:
    return i


@plain_app.task(name="bench.noop_plain", shared=False)
def plain_noop(i: int) -> int:
    return i
