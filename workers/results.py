"""Celery's Redis result backends, on connections that notice a failover (the fleet's `result_backend`).

Celery 5.7's Redis backend retries storing a result while the error is one of its connection
errors (`result_backend_always_retry`); `READONLY` from a demoted primary is not one. Its
`additional_connection_errors` transport option (celery/celery#10158) can make it one, but
(reading of celery/backends/redis.py) the retry then goes out on the same pooled connection, to
the same node, which after a managed failover stays a replica. These backends use the connections
of geoqueue/redis_failover.py instead: one that gets a replica's answer drops itself and raises a
ConnectionError, which the backend retries on a new connection, to where the address points now.
"""
from __future__ import annotations

import redis
from celery.backends import redis as celery_redis
from redis.sentinel import SentinelManagedConnection

from geoqueue.redis_failover import dropping_when_not_primary
from geoqueue.redis_url import is_sentinel


class RedisBackend(celery_redis.RedisBackend):
    default_connection_class = redis.Connection

    def _get_pool(self, **params):
        given = params.get("connection_class") or self.default_connection_class
        return super()._get_pool(**{**params, "connection_class": dropping_when_not_primary(given)})


class SentinelBackend(RedisBackend, celery_redis.SentinelBackend):
    default_connection_class = SentinelManagedConnection


def result_backend(url: str) -> str:
    """The `result_backend` setting for `url`: one of these classes, named before the URL (Celery's
    "class+URL" form)."""
    backend = "SentinelBackend" if is_sentinel(url) else "RedisBackend"
    return f"{__name__}:{backend}+{url}"
