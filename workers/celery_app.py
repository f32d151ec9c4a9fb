"""The Celery app: Redis as broker and result store, reliability settings chosen on purpose."""
from __future__ import annotations

from celery import Celery
from kombu import Queue

import beat_schedule
from geoqueue.redis_url import is_sentinel, sentinel_hosts
from geoqueue.routes import QUEUES, TASK_ROUTES
from workers.settings import Settings, get_settings

TASK_MODULES = [
    "workers.sweeper", "tasks.immersity.jobs",
    "tasks.immersal.jobs",
    "tasks.dronemapper.jobs",
    "tasks.mapillary.jobs",
]


def configure(app: Celery, settings: Settings) -> None:
    vt = settings.visibility_timeout
    transport = {
        # One visibility timeout, in all three places: below it every time limit, countdown and backoff.
        "visibility_timeout": vt,
        # Put messages of a dead worker back on the queue soon after the timeout passes.
        "unacked_restore_interval": settings.unacked_restore_interval,
        "unacked_restore_throttle": 1,
    }
    redbeat = {"redbeat_redis_url": settings.redis_url}
    if is_sentinel(settings.redis_url):
        # kombu, the result backend and RedBeat each name the master their own way.
        transport["master_name"] = settings.redis_sentinel_master
        hosts, db, password = sentinel_hosts(settings.redis_url)
        redbeat = {"redbeat_redis_url": "redis-sentinel://", "redbeat_redis_options": {
            "sentinels": hosts, "service_name": settings.redis_sentinel_master, "db": db, "password": password}}
    app.conf.update(
        broker_url=settings.redis_url,
        result_backend=settings.redis_url,
        broker_transport_options=transport,
        result_backend_transport_options={k: v for k, v in transport.items() if k in ("visibility_timeout", "master_name")},
        visibility_timeout=vt,
        # JSON only: no pickle from the network, and messages any language can read.
        task_serializer="json", result_serializer="json", accept_content=["json"],
        # Ack after the work, and requeue when the worker dies: every task is idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message per free slot: long tasks must not sit in another worker's buffer.
        worker_prefetch_multiplier=1,
        # A hard kill stays below the visibility timeout so a slow task is not run twice meanwhile.
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=settings.soft_time_limit,
        # When the broker connection drops, stop acks_late work instead of letting it run twice.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        # Events for Flower; the sent event shows queued jobs too.
        worker_send_task_events=True, task_send_sent_event=True,
        task_track_started=True,
        # Results are small summaries; the job ledger is the record that matters.
        result_expires=settings.result_expires,
        result_extended=False,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="control",
        task_routes=TASK_ROUTES,
        beat_schedule=beat_schedule.BEAT_SCHEDULE,
        beat_scheduler="redbeat.RedBeatScheduler",
        **redbeat,
        redbeat_lock_timeout=settings.beat_lock_timeout,
        beat_max_loop_interval=settings.beat_max_loop_interval,
        worker_soft_shutdown_timeout=min(60.0, vt / 4),
        worker_hijack_root_logger=True,
        timezone="UTC",
    )


def create_app(settings: Settings | None = None) -> Celery:
    app = Celery("geoqueue", include=TASK_MODULES)
    configure(app, settings or get_settings())
    return app
