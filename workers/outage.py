"""Riding out a Redis outage (a restart, a failover): every Redis user of the fleet keeps trying for
`GEOQUEUE_REDIS_OUTAGE_TOLERANCE` seconds, and tries often, so that work goes on within a second or
two of Redis coming back.

- the fleet's own client (ledger, once-markers, locks, budgets): redis-py's Retry, by default three
  quick tries (well under a second), is given enough tries of at most a second apart;
- Celery's result backend, task publishing and the worker's broker reconnection: their retry
  settings (see workers/celery_app.py), and `Consumer` below;
- beat: workers/beat.py.
"""
from __future__ import annotations

import functools

from celery.worker.consumer import Consumer as CeleryConsumer

from config.redis_client import RETRY_PAUSE_MAX


def publish_retry_policy(tolerance: float) -> dict[str, float]:
    """kombu's retry policy for sending a message (task_publish_retry_policy)."""
    return {"max_retries": int(tolerance / RETRY_PAUSE_MAX) + 1, "interval_start": 0,
            "interval_step": RETRY_PAUSE_MAX / 2, "interval_max": RETRY_PAUSE_MAX}


class Consumer(CeleryConsumer):
    """Celery's consumer, reconnecting to the broker every second or two instead of kombu's default
    2, 4, 6, ... up to 30 s apart (after a 60 s outage that default leaves a worker up to 16 s
    behind a Redis that is back)."""

    reconnect_pause_max = 2.0

    def ensure_connected(self, conn):
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=0.5, interval_step=0.5, interval_max=self.reconnect_pause_max)
        return super().ensure_connected(conn)
