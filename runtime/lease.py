"""Leases: exclusive, expiring claims on a shared resource, owned by an id (a job) rather than a process.

redis-py's Lock ties ownership to the object and thread that took it. A job holds its lease across
several tasks on several workers, so here the owner is an id that any of them can refresh or
release. Those who ask while the lease is held queue up, and a free lease goes to the oldest.

Every grant carries a fencing token, larger than any token granted before it, which the holder
checks before each vendor call the lease guards (`refresh(owner, token)`): a holder whose lease
went to another, or to itself again by a later grant, stops. Replication is asynchronous, so a
failover can lose a grant; the tokens start from the primary's clock (microseconds) rather than
from a counter alone, so a grant made after a failover still outnumbers the grant it lost. A grant
waits until a replica holds it (geoqueue/replicas.py) before the grantee is told.

    <name>           string: the owner id, expiring after `ttl_seconds` unless refreshed
    <name>:fence     string: the current grant's token, expiring with the lease
    <name>:waiters   sorted set: owner id -> when it asked
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from geoqueue import replicas

# Every script: KEYS[1] the lease, KEYS[2] its fence; ARGV[1] the owner, ARGV[2] the ttl (ms).
# A new grant's token, written with %d: Redis would write a number this large in exponent notation.
_NEW_TOKEN = """
local function new_token()
  local now = redis.call('TIME')
  local token = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, now[1] * 1000000 + now[2])
  redis.call('SET', KEYS[2], string.format('%d', token), 'PX', ARGV[2])
  return token
end
"""

# Take or renew the lease: the token of the grant held, 0 when another holds it.
_ACQUIRE = _NEW_TOKEN + """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local token = tonumber(redis.call('GET', KEYS[2]))
if holder and token then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return token
end
return new_token()
"""

# ARGV[3]: the token of the grant the caller holds ('' when it does not say).
_REFRESH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[2])
return redis.call('DEL', KEYS[1])
"""

# Give a free lease to the oldest waiter, in one step so that two callers cannot both grant it.
# KEYS[3] the waiters (ARGV[1] unused); returns {owner, token}, or nil.
_GRANT_NEXT = _NEW_TOKEN + """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
if not head then return false end
redis.call('SET', KEYS[1], head, 'PX', ARGV[2])
redis.call('ZREM', KEYS[3], head)
return {head, new_token()}
"""


@dataclass(frozen=True)
class Grant:
    owner: str
    token: int


class Lease:
    def __init__(self, client: redis.Redis, name: str, ttl_seconds: float) -> None:
        self.redis = client
        self.name = name
        self.fence_key = f"{name}:fence"
        self.waiters_key = f"{name}:waiters"
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self._acquire = client.register_script(_ACQUIRE)
        self._refresh = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)
        self._grant_next = client.register_script(_GRANT_NEXT)

    def holder(self) -> str | None:
        return self.redis.get(self.name)

    def token(self) -> int | None:
        """The fencing token of the grant held now (None: free, or granted before tokens existed)."""
        value = self.redis.get(self.fence_key)
        return int(value) if value else None

    def acquire(self, owner: str) -> int:
        """Take the lease now, ignoring any queue (or renew it when `owner` holds it already): the
        token of the grant `owner` holds, 0 when another holds the lease."""
        granted = replicas.write(self.redis, lambda pipe: self._acquire(
            keys=[self.name, self.fence_key], args=[owner, self.ttl_ms], client=pipe), f"the lease {self.name}")
        return int(granted.result)

    def refresh(self, owner: str, token: int | None = None) -> bool:
        """Extend the lease by its full ttl; False when `owner` does not hold it (any more), or holds
        it by another grant than the one of `token`."""
        return self._refresh(keys=[self.name, self.fence_key], args=[owner, self.ttl_ms, _arg(token)]) == 1

    def release(self, owner: str, token: int | None = None) -> bool:
        """Free the lease when `owner` holds it (by the grant of `token`, when given)."""
        return self._release(keys=[self.name, self.fence_key], args=[owner, self.ttl_ms, _arg(token)]) == 1

    # --- the queue ---
    def wait(self, owner: str) -> None:
        """Queue `owner` for the lease; asking again keeps its place."""
        self.redis.zadd(self.waiters_key, {owner: time.time()}, nx=True)

    def leave(self, owner: str) -> None:
        self.redis.zrem(self.waiters_key, owner)

    def waiters(self) -> list[str]:
        """Oldest first."""
        return list(self.redis.zrange(self.waiters_key, 0, -1))

    def grant_next(self) -> Grant | None:
        """When the lease is free, give it to the oldest waiter and return that grant; else None."""
        granted = replicas.write(self.redis, lambda pipe: self._grant_next(
            keys=[self.name, self.fence_key, self.waiters_key], args=["", self.ttl_ms], client=pipe),
            f"the lease {self.name}")
        return Grant(granted.result[0], int(granted.result[1])) if granted.result else None


def _arg(token: int | None) -> str:
    return "" if token is None else str(token)
