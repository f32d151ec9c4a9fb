"""Fan-out of a job's items with bounded concurrency, verified by the ledger (no chords).

The items of a job wait in a Redis list; at most `max_parallel` are in flight (a sorted set
scored by dispatch time). Each finished item dispatches the next. The job is complete when the
ledger has an outcome for every item, counted once however often an item task ran. The sweeper
re-dispatches items whose message was lost (dispatched long ago, still without an outcome).

    gq:job:<id>            the job's record, with the fan-out's item_task, max_parallel and item_count
    gq:job:<id>:pending    list of item keys not yet dispatched
    gq:job:<id>:inflight   zset item key -> dispatch time
    gq:fanouts             set of job ids with items to finish
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from celery import current_app

from config.redis_client import get_ledger, get_redis
from geoqueue.ledger import Ledger
from geoqueue.ledger_keys import job_key
from geoqueue.routes import queue_for
from runtime import ending
from runtime.context import JobContext
from runtime.ending import on_job_end
from runtime.guard import STOPPED, fail_job, guarded

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


def send_item(job_id: str, item: str, task_name: str) -> None:
    current_app.send_task(task_name, kwargs={"job_id": job_id, "item": item}, queue=queue_for(task_name))


class Fanout:
    def __init__(self, client: redis.Redis | None = None, ledger: Ledger | None = None) -> None:
        self.redis = client or get_redis()
        self.ledger = ledger or get_ledger()
        self._take = self.redis.register_script(_TAKE)

    @staticmethod
    def _keys(job_id: str) -> tuple[str, str]:
        base = job_key(job_id)
        return f"{base}:pending", f"{base}:inflight"

    def start(self, job_id: str, items: list[str], item_task: str, max_parallel: int) -> None:
        """Queue the items once (a redelivered start queues nothing twice) and dispatch the first."""
        pending, _ = self._keys(job_id)
        key = job_key(job_id)
        if self.redis.hsetnx(key, "item_task", item_task):
            pipe = self.redis.pipeline()
            pipe.hset(key, mapping={"max_parallel": max_parallel, "item_count": len(items)})
            if items:
                pipe.rpush(pending, *items)
            pipe.sadd(ACTIVE_KEY, job_id)
            pipe.execute()
        self.fill(job_id)

    def started(self, job_id: str) -> bool:
        return bool(self.redis.hexists(job_key(job_id), "item_task"))

    def fill(self, job_id: str) -> list[str]:
        pending, inflight = self._keys(job_id)
        task_name, max_parallel = self.redis.hmget(job_key(job_id), "item_task", "max_parallel")
        moved = self._take(keys=[pending, inflight], args=[int(max_parallel or 1), time.time()])
        for item in moved:
            send_item(job_id, item, task_name)
        return moved

    def finish_item(self, job_id: str, item: str, outcome: dict) -> bool:
        """Record an item's outcome and keep the window full; True once every item has one."""
        _, inflight = self._keys(job_id)
        self.ledger.record_item(job_id, item, outcome)
        self.redis.zrem(inflight, item)
        self.fill(job_id)
        return self.complete(job_id)

    def complete(self, job_id: str) -> bool:
        return self.ledger.finished_count(job_id) >= self.item_count(job_id)

    def item_count(self, job_id: str) -> int:
        """How many items the fan-out has: its own count, as the job's total is the job's progress
        (a build counts its images, not its chunks)."""
        count, total = self.redis.hmget(job_key(job_id), "item_count", "total")
        # A fan-out started before it kept its own count had it in the job's total.
        return int(count if count is not None else total or 0)

    def finish(self, job_id: str, result: dict, error: dict | None = None) -> None:
        """Every item has its outcome: the job succeeds, or fails with `error` (naming what failed);
        either way it keeps `result`, the outcomes of all its items."""
        if error:
            ending.fail(job_id, error, result=result)
        else:
            ending.succeed(job_id, result)

    def close(self, job_id: str) -> None:
        pending, inflight = self._keys(job_id)
        self.redis.delete(pending, inflight)
        self.redis.srem(ACTIVE_KEY, job_id)

    def stalled(self, job_id: str, older_than: float) -> list[str]:
        """Items dispatched more than `older_than` seconds ago that still have no outcome."""
        _, inflight = self._keys(job_id)
        items = self.redis.zrangebyscore(inflight, "-inf", time.time() - older_than)
        return [item for item in items if not self.ledger.item_is_recorded(job_id, item)]

    def redispatch(self, job_id: str, item: str) -> None:
        _, inflight = self._keys(job_id)
        self.redis.zadd(inflight, {item: time.time()})
        send_item(job_id, item, self.redis.hget(job_key(job_id), "item_task"))

    def active_jobs(self) -> list[str]:
        return sorted(self.redis.smembers(ACTIVE_KEY))


@on_job_end
def _close_fanout(job_id: str) -> None:
    Fanout().close(job_id)


ItemWork = Callable[[JobContext, str], dict[str, Any]]


def item_runner(work: ItemWork, name: str, finish: Callable[[JobContext], None],
                progress: Callable[[JobContext], None] | None = None,
                fails_job: Callable[[str, dict], Exception | dict] | None = None):
    """The task of one item of a fan-out (`@task(name, kind="item", finish=...)`): `work(job, item)`
    returns the item's outcome
    fields; a typed failure is recorded as the item's outcome (or, with `fails_job(item, error)`,
    fails the whole job at once). Whoever sees every outcome recorded runs `finish(job)`, a
    redelivered message too, so a finisher killed midway is replaced."""

    def run(self, job_id: str, item: str) -> dict[str, Any]:
        skipped = {"job_id": job_id, "item": item, "skipped": True}
        ledger = get_ledger()
        record = ledger.get(job_id)
        if record is None or record.finished:
            return skipped
        job = JobContext(record)
        recorded_earlier = ledger.item_is_recorded(job_id, item)
        if recorded_earlier:
            # The run that recorded it may have died (or been retried) before the bookkeeping after
            # it: redo that (recording again changes nothing). Not its progress: the job may have
            # moved on since, and a late redelivery would show an earlier phase.
            outcome, state = ledger.items(job_id)[item], "recorded earlier"
        else:
            outcome = guarded(self, job_id, lambda: {"state": "succeeded", **work(job, item)},
                              on_failure=lambda error: {"state": "failed", "error": error})
            if outcome is STOPPED:
                return skipped
            state = outcome["state"]
        # Under the guard as well: Redis away past its client's tries retries the item (which then
        # finds its outcome recorded, or runs again), instead of failing the job with InternalError.
        complete = guarded(self, job_id, lambda: keep_books(job, item, outcome, show=not recorded_earlier))
        if complete is STOPPED:
            return skipped
        if outcome["state"] == "failed" and fails_job is not None:
            failure = fails_job(item, outcome["error"])
            fail_job(job_id, failure if isinstance(failure, dict) else failure.to_dict())
        if complete:
            guarded(self, job_id, lambda: finish(job))
        return {"job_id": job_id, "item": item, "state": state}

    def keep_books(job: JobContext, item: str, outcome: dict, show: bool) -> bool:
        """The item's outcome recorded, the window refilled and (`show`) the job's progress shown; True
        once every item has its outcome."""
        complete = Fanout().finish_item(job.id, item, outcome)
        if show:
            (progress or _count_progress)(job)
        return complete

    return run


def _count_progress(job: JobContext) -> None:
    """The job's phase stays; done counts the items with an outcome."""
    job.progress_of_items(job.record.phase)
