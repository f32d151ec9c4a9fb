"""Fan-out of a job's items with bounded concurrency, verified by the ledger (no chords).

The items of a job wait in a Redis list; at most `max_parallel` are in flight (a sorted set
scored by dispatch time). Each finished item dispatches the next. The job finishes when the
ledger has an outcome for every item, counted once however often an item task ran. A sweeper
re-dispatches items whose message was lost (dispatched long ago, still without an outcome).

    gq:job:<id>:pending    list of item keys not yet dispatched
    gq:job:<id>:inflight   zset item key -> dispatch time
    gq:fanouts             set of job ids with items to finish
"""
from __future__ import annotations

import time
from typing import Callable

import redis

from geoqueue import jobs

ACTIVE_KEY = "gq:fanouts"

# Move items from pending to in-flight until `max_parallel` are in flight; returns the moved items.
_TAKE = """
local moved = {}
while redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[1]) do
  local item = redis.call('LPOP', KEYS[1])
  if not item then break end
  redis.call('ZADD', KEYS[2], ARGV[2], item)
  table.insert(moved, item)
end
return moved
"""

Dispatch = Callable[[str, str], None]  # (job_id, item) -> send the item's task


class Fanout:
    def __init__(self, client: redis.Redis, ledger: jobs.Ledger) -> None:
        self.redis = client
        self.ledger = ledger
        self._take = client.register_script(_TAKE)

    @staticmethod
    def _keys(job_id: str) -> tuple[str, str]:
        base = jobs.job_key(job_id)
        return f"{base}:pending", f"{base}:inflight"

    def start(self, job_id: str, items: list[str], item_task: str, max_parallel: int, dispatch: Dispatch) -> None:
        """Queue the items once (a redelivered start queues nothing twice) and dispatch the first."""
        pending, _ = self._keys(job_id)
        key = jobs.job_key(job_id)
        if self.redis.hsetnx(key, "item_task", item_task):
            pipe = self.redis.pipeline()
            pipe.hset(key, mapping={"max_parallel": max_parallel, "total": len(items)})
            if items:
                pipe.rpush(pending, *items)
            pipe.sadd(ACTIVE_KEY, job_id)
            pipe.execute()
        self.fill(job_id, dispatch)

    def fill(self, job_id: str, dispatch: Dispatch) -> list[str]:
        pending, inflight = self._keys(job_id)
        max_parallel = int(self.redis.hget(jobs.job_key(job_id), "max_parallel") or 1)
        moved = self._take(keys=[pending, inflight], args=[max_parallel, time.time()])
        for item in moved:
            dispatch(job_id, item)
        return moved

    def finish_item(self, job_id: str, item: str, outcome: dict, dispatch: Dispatch) -> bool:
        """Record an item's outcome and keep the window full; True once every item has one."""
        _, inflight = self._keys(job_id)
        self.ledger.record_item(job_id, item, outcome)
        self.redis.zrem(inflight, item)
        self.fill(job_id, dispatch)
        return self.complete(job_id)

    def complete(self, job_id: str) -> bool:
        total = int(self.redis.hget(jobs.job_key(job_id), "total") or 0)
        return self.ledger.finished_count(job_id) >= total

    def finish(self, job_id: str, result: dict, error: dict | None = None) -> None:
        """Every item has its outcome: the job succeeds, or fails with `error` (naming what failed);
        either way it keeps `result`, the outcomes of all its items."""
        self.close(job_id)
        if error:
            self.ledger.transition(job_id, jobs.FAILED, result=result, error=error)
        else:
            self.ledger.transition(job_id, jobs.SUCCEEDED, result=result)

    def close(self, job_id: str) -> None:
        pending, inflight = self._keys(job_id)
        self.redis.delete(pending, inflight)
        self.redis.srem(ACTIVE_KEY, job_id)

    def stalled(self, job_id: str, older_than: float) -> list[str]:
        """Items dispatched more than `older_than` seconds ago that still have no outcome."""
        _, inflight = self._keys(job_id)
        items = self.redis.zrangebyscore(inflight, "-inf", time.time() - older_than)
        return [item for item in items if not self.ledger.item_is_recorded(job_id, item)]

    def redispatch(self, job_id: str, item: str, dispatch: Dispatch) -> None:
        _, inflight = self._keys(job_id)
        self.redis.zadd(inflight, {item: time.time()})
        dispatch(job_id, item)

    def active_jobs(self) -> list[str]:
        return sorted(self.redis.smembers(ACTIVE_KEY))
