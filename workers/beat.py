"""RedBeat's scheduler, kept running through a Redis restart or failover (the fleet's `beat_scheduler`).

RedBeat 2.4.2 (and its main branch, read in redbeat/schedulers.py) lets every Redis error of a tick
escape: `tick()` extends the leader lock first (`self.lock.extend`) and then reads the schedule, and
Celery's beat service exits on the first ConnectionError (sibson/redbeat#285 for the same crash
through a lock that was never taken; sibson/redbeat#208 on what to do about the lock). Its
`retry_period` option only wraps the client's own methods, not the lock's Lua script nor pipelines.

A failover adds two answers that are no connection error: a demoted primary answers `READONLY`,
as `ReadOnlyError`, or, inside the lock's Lua script, as a plain `ResponseError` quoting
`-READONLY`; beat exited on the latter. RedBeat's client keeps its connection to that node, which
after a managed failover stays a replica, so a tick that meets either also drops the client's
connections: the next reaches where the address (or the sentinels) point now.

Here a tick that meets a Redis error is skipped: beat logs it and tries again a second later. The
leader lock lives in Redis with a TTL (`GEOQUEUE_BEAT_LOCK_TIMEOUT`); an outage longer than that
loses it, and so may a standby beat's takeover. So a beat that no longer owns the lock dispatches
nothing: each tick it tries to take the lock again without blocking, and leads again once it has
it, as RedBeat's own start does. The schedule itself is in Redis, so nothing is lost meanwhile; a
periodic entry due during the outage is sent once, when Redis is back.
"""
from __future__ import annotations

import logging

import redis
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis

from geoqueue.redis_failover import is_read_only

log = logging.getLogger("geoqueue.beat")

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)
RETRY_SECONDS = 1.0


class Scheduler(RedBeatScheduler):
    _holding = True   # RedBeat's beat_init handler takes the lock (blocking) before the first tick
    _redis_down = False

    def tick(self, *args, **kwargs):
        try:
            if self.lock_key and not self._lead():
                return self.max_interval
            interval = super().tick(*args, **kwargs)
        except redis.exceptions.LockError as exc:
            # Not ours any more (expired while Redis was away, or another beat holds it).
            log.warning("beat: lost the leader lock (%s); standing by until it is free", exc)
            self._holding = False
            return RETRY_SECONDS
        except redis.RedisError as exc:
            if is_read_only(exc):
                get_redis(self.app).connection_pool.disconnect()
            elif not isinstance(exc, REDIS_ERRORS):
                raise
            if not self._redis_down:
                log.warning("beat: Redis unavailable (%s); trying again every %gs", exc, RETRY_SECONDS)
            self._redis_down = True
            return RETRY_SECONDS
        if self._redis_down:
            log.info("beat: Redis is back")
            self._redis_down = False
        return interval

    def _lead(self) -> bool:
        """Whether this beat holds the leader lock, taking it when it is free."""
        if self._holding and self.lock is not None:
            return True
        client = get_redis(self.app)
        if self.lock is None:
            # RedBeat could not take it at start (Redis was down then; the signal handler's error
            # is swallowed by Celery and the lock stays None).
            self.lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
            self.lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        self._holding = bool(self.lock.acquire(blocking=False))
        if self._holding:
            log.info("beat: acquired the leader lock")
        return self._holding
