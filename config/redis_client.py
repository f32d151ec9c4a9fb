"""One Redis client per process for the ledger, locks, budgets and the token cache."""
from __future__ import annotations

import functools
import socket

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from config.settings import get_settings
from geoqueue.ledger import Ledger
from geoqueue.redis_url import connect

# Longest pause between two tries: how late, at worst, work resumes after Redis is back.
RETRY_PAUSE_MAX = 1.0


# What is tried again: Redis away (a restart), and Redis answering as a replica (a failover). The
# connections of geoqueue.redis_url.connect() turn every such answer into a ConnectionError, a
# READONLY inside a Lua script included; ReadOnlyError is listed for a connection made otherwise.
# Before each try redis-py drops the connection, so the next reaches where the address points now.
RETRIED = (redis.ConnectionError, redis.TimeoutError, socket.timeout, redis.exceptions.ReadOnlyError)


def redis_retry(tolerance: float) -> Retry:
    """Tries 0.1, 0.2, 0.4, 0.8 s apart, then every second, for at least `tolerance` seconds."""
    return Retry(ExponentialBackoff(cap=RETRY_PAUSE_MAX, base=0.05), retries=int(tolerance) + 4,
                 supported_errors=RETRIED)


@functools.lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    # redis-py's pool notices a fork and reconnects, so this is safe under prefork. A Redis restart
    # or failover is waited out (workers/outage.py).
    settings = get_settings()
    return connect(settings.redis_url, settings.redis_sentinel_master, decode_responses=True,
                   health_check_interval=30, socket_keepalive=True,
                   retry=redis_retry(settings.redis_outage_tolerance))


def get_ledger() -> Ledger:
    return Ledger(get_redis())
