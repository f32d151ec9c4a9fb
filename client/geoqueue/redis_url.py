"""Redis connections from a URL: plain `redis://` / `rediss://`, or Redis Sentinel as
`sentinel://host:26379;sentinel://host2:26379/0` (kombu's form) with the master's name given
separately (GEOQUEUE_REDIS_SENTINEL_MASTER). Either way a connection that reaches a server no
longer primary is dropped and made again (redis_failover.py)."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from redis.sentinel import Sentinel

from geoqueue.redis_failover import connection_class_for, sentinel_connection_class

DEFAULT_MASTER = "mymaster"


def is_sentinel(url: str) -> bool:
    return url.startswith("sentinel://")


def sentinel_hosts(url: str) -> tuple[list[tuple[str, int]], int, str | None]:
    """([(host, port), ...], db, password) of a sentinel:// URL."""
    hosts, db, password = [], 0, None
    for chunk in url.split(";"):
        parts = urlsplit(chunk)
        hosts.append((parts.hostname or "localhost", parts.port or 26379))
        if parts.path.strip("/"):
            db = int(parts.path.strip("/"))
        password = password or parts.password
    return hosts, db, password


def connect(url: str, master: str | None = None, **options: Any) -> redis.Redis:
    if not is_sentinel(url):
        return redis.Redis.from_url(url, connection_class=connection_class_for(url), **options)
    hosts, db, password = sentinel_hosts(url)
    sentinel = Sentinel(hosts, socket_timeout=options.pop("socket_timeout", 5))
    return sentinel.master_for(master or DEFAULT_MASTER, db=db, password=password,
                               connection_class=sentinel_connection_class(options.pop("ssl", False)), **options)
