"""Leases: exclusive, expiring claims on a shared resource, owned by an id (a job) rather than a process.

redis-py's Lock ties ownership to the object and thread that took it. A job holds its lease across
several tasks on several workers, so here the owner is an id that any of them can refresh or
release. Those who ask while the lease is held queue up, and a free lease goes to the oldest.

    <name>           string: the owner id, expiring after `ttl_seconds` unless refreshed
    <name>:waiters   sorted set: owner id -> when it asked
"""
from __future__ import annotations

import time

import redis

_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_REFRESH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

# Give a free lease to the oldest waiter, in one step so that two callers cannot both grant it.
_GRANT_NEXT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if not head then return false end
redis.call('SET', KEYS[1], head, 'PX', ARGV[1])
redis.call('ZREM', KEYS[2], head)
return head
"""


class Lease:
    def __init__(self, client: redis.Redis, name: str, ttl_seconds: float) -> None:
        self.redis = client
        self.name = name
        self.waiters_key = f"{name}:waiters"
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self._acquire = client.register_script(_ACQUIRE)
        self._refresh = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)
        self._grant_next = client.register_script(_GRANT_NEXT)

    def holder(self) -> str | None:
        return self.redis.get(self.name)

    def acquire(self, owner: str) -> bool:
        """Take the lease now, ignoring any queue (or renew it when `owner` holds it already)."""
        return self._acquire(keys=[self.name], args=[owner, self.ttl_ms]) == 1

    def refresh(self, owner: str) -> bool:
        """Extend the lease by its full ttl; False when `owner` does not hold it (any more)."""
        return self._refresh(keys=[self.name], args=[owner, self.ttl_ms]) == 1

    def release(self, owner: str) -> bool:
        return self._release(keys=[self.name], args=[owner]) == 1

    # --- the queue ---
    def wait(self, owner: str) -> None:
        """Queue `owner` for the lease; asking again keeps its place."""
        self.redis.zadd(self.waiters_key, {owner: time.time()}, nx=True)

    def leave(self, owner: str) -> None:
        self.redis.zrem(self.waiters_key, owner)

    def waiters(self) -> list[str]:
        """Oldest first."""
        return list(self.redis.zrange(self.waiters_key, 0, -1))

    def grant_next(self) -> str | None:
        """When the lease is free, give it to the oldest waiter and return that owner; else None."""
        return self._grant_next(keys=[self.name, self.waiters_key], args=[self.ttl_ms])
