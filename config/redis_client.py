"""One Redis client per process for the ledger, locks, budgets and the token cache."""
from __future__ import annotations

import functools

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from config.settings import get_settings
from geoqueue.ledger import Ledger
from geoqueue.redis_url import connect

# Longest pause between two tries: how late, at worst, work resumes after Redis is back.
RETRY_PAUSE_MAX = 1.0


def redis_retry(tolerance: float) -> Retry:
    """Tries 0.1, 0.2, 0.4, 0.8 s apart, then every second, for at least `tolerance` seconds."""
    return Retry(ExponentialBackoff(cap=RETRY_PAUSE_MAX, base=0.05), retries=int(tolerance) + 4)


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
