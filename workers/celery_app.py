"""The Celery app: Redis as broker and result store, reliability settings chosen on purpose."""
from __future__ import annotations

import gc

from celery import Celery
from celery.app import amqp
from celery.signals import worker_before_create_process
from kombu import Queue

import beat_schedule
from config.settings import Settings, get_settings
from geoqueue.redis_url import is_sentinel, sentinel_hosts
from geoqueue.routes import QUEUES, TASK_ROUTES, TRANSFER, queue_for
from workers.outage import publish_retry_policy
from workers.results import result_backend

TASK_MODULES = [
    "workers.sweeper", "tasks.immersity.jobs",
    "tasks.immersal.jobs",
    "tasks.dronemapper.jobs",
    "tasks.mapillary.jobs",
]


# Per queue: a control task is short (planning, polling, bookkeeping) and is received within moments
# of being sent, so it does not pay for what only long transfer tasks need (bench/README.md,
# "Dispatch overhead"): no task-sent event (Flower shows it from task-received on) and no STARTED
# state in the result backend (nothing reads it: the job ledger says running, Flower has the
# task-started event). Transfer tasks keep both.
def is_transfer(task_name: str, queue: object = None) -> bool:
    return (getattr(queue, "name", queue) or queue_for(task_name)) == TRANSFER


class AMQP(amqp.AMQP):
    """Celery's message sender, sending the task-sent event for transfer tasks only."""

    def _create_task_sender(self):
        send = super()._create_task_sender()

        def send_task_message(producer, name, message, *args, **kwargs):
            if message.sent_event is not None and not is_transfer(name, kwargs.get("queue")):
                message = message._replace(sent_event=None)
            return send(producer, name, message, *args, **kwargs)

        return send_task_message


class ByQueue:
    """Task attributes by queue (a task_annotations entry): STARTED is stored for transfer tasks only."""

    def annotate(self, task) -> dict | None:
        return None if is_transfer(task.name) else {"track_started": False}


_frozen = False


@worker_before_create_process.connect
def _freeze_startup_objects(**_kwargs) -> None:
    """Before a prefork worker's first child: what the main process holds after start-up (modules,
    the app) lives as long as it does, so move it out of the collector's sight (gc.freeze). Celery
    runs a full collection before forking each child (celery/celery#2927), which walked all of it
    at every recycle, and the children's collections touched every inherited object, copying the
    pages they share with the main process (bench/README.md, "Dispatch overhead")."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


UNACKED_MUTEX_EXPIRE_MIN = 5      # seconds


def configure(app: Celery, settings: Settings) -> None:
    vt = settings.visibility_timeout
    transport = {
        # One visibility timeout, in all three places: below it every time limit, countdown and backoff.
        "visibility_timeout": vt,
        # Put messages of a dead worker back on the queue soon after the timeout passes.
        "unacked_restore_interval": settings.unacked_restore_interval,
        "unacked_restore_throttle": 1,
        # The lock a sweep holds while it restores (a few transactions: milliseconds) outlives a sweep
        # whose release never reached Redis (the worker killed mid-sweep, Redis away or turned
        # replica) by this long; kombu's 300 s held back every dead worker's messages as long
        # (docs/celery-kombu.md, "Restoring unacked messages").
        "unacked_mutex_expire": max(UNACKED_MUTEX_EXPIRE_MIN, settings.unacked_restore_interval),
    }
    app.amqp_cls = AMQP   # before anything sends: the app builds its sender on first use
    redbeat = {"redbeat_redis_url": settings.redis_url}
    # kombu's Redis transport, made to keep and settle the messages a worker holds across a broker
    # connection loss instead of crashing or leaving them to the visibility timeout, and to take a
    # server's READONLY (a failover) for such a loss (workers/broker.py).
    broker_transport = "workers.broker:Transport"
    if is_sentinel(settings.redis_url):
        broker_transport = "workers.broker:SentinelTransport"
        # kombu, the result backend and RedBeat each name the master their own way.
        transport["master_name"] = settings.redis_sentinel_master
        hosts, db, password = sentinel_hosts(settings.redis_url)
        redbeat = {"redbeat_redis_url": "redis-sentinel://", "redbeat_redis_options": {
            "sentinels": hosts, "service_name": settings.redis_sentinel_master, "db": db, "password": password}}
    app.conf.update(
        broker_url=settings.redis_url,
        # Celery's Redis backend on connections that notice a failover (workers/results.py).
        result_backend=result_backend(settings.redis_url),
        broker_transport_options=transport,
        result_backend_transport_options={k: v for k, v in transport.items()
                                          if k in ("visibility_timeout", "master_name")},
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
        # A Redis restart stops nothing: running tasks go on (True would terminate them, and their
        # messages would come back only after the visibility timeout). Celery warns that with this
        # off the messages of running acks_late tasks may be redelivered and run in parallel
        # (docs/celery-kombu.md#broker-connection-loss); that cannot happen here (workers/broker.py keeps
        # them held, the ack reaches Redis when the task ends) and would repeat no paid call anyway:
        # every vendor side effect goes through the exactly-once helper (runtime/once.py).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_transport=broker_transport,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,   # reconnect for as long as it takes, every second or two
        worker_consumer="workers.outage:Consumer",
        # Tasks ride out the outage: sending a message and storing a result retry until Redis is back.
        task_publish_retry_policy=publish_retry_policy(settings.redis_outage_tolerance),
        result_backend_always_retry=True,
        result_backend_max_retries=2 * settings.redis_outage_tolerance,   # about 0.5 s apart
        result_backend_base_sleep_between_retries_ms=100,
        result_backend_max_sleep_between_retries_ms=1000,
        # Recycle prefork children: what a long-lived process accumulates goes with it.
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child or None,
        worker_max_memory_per_child=settings.worker_max_memory_per_child or None,
        # Events for Flower; the sent event shows queued transfer tasks too (see AMQP, ByQueue above).
        worker_send_task_events=True, task_send_sent_event=True,
        task_track_started=True, task_annotations=[ByQueue()],
        # Results are small summaries; the job ledger is the record that matters.
        result_expires=settings.result_expires,
        result_extended=False,
        task_queues=[Queue(name) for name in QUEUES],
        task_default_queue="control",
        task_routes=TASK_ROUTES,
        beat_schedule=beat_schedule.BEAT_SCHEDULE,
        # RedBeat, kept running through Redis restarts (workers/beat.py).
        beat_scheduler="workers.beat:Scheduler",
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
