"""One Redis client per process for the ledger, locks, budgets and the token cache."""
from __future__ import annotations

import functools

import redis

from geoqueue.jobs import Ledger
from geoqueue.redis_url import connect
from workers.outage import redis_retry
from workers.settings import get_settings


@functools.lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    # redis-py's pool notices a fork and reconnects, so this is safe under prefork. A Redis restart
    # is waited out (workers/outage.py).
    settings = get_settings()
    return connect(settings.redis_url, settings.redis_sentinel_master, decode_responses=True,
                   health_check_interval=30, socket_keepalive=True,
                   retry=redis_retry(settings.redis_outage_tolerance))


def get_ledger() -> Ledger:
    return Ledger(get_redis())
