"""Liveness you can alert on: when each periodic task last ran, which waiting jobs their poller
has not looked at lately, and how old the oldest queued and running jobs are.

    gq:heartbeat            hash: periodic task name -> when it last finished a run
    gq:polled               sorted set: job id -> when its vendor's poller last looked at it
"""
from __future__ import annotations

import time

from beat_schedule import BEAT_SCHEDULE
from config.redis_client import get_redis
from geoqueue.job_record import Job
from runtime.ending import on_job_end

HEARTBEATS_KEY = "gq:heartbeat"
POLLED_KEY = "gq:polled"
# vendor -> its poller's task, from the beat schedule
POLLERS = {entry["task"].split(".")[0]: entry["task"] for entry in BEAT_SCHEDULE.values()
           if entry["task"].endswith(".poll")}


def ran(task_name: str) -> None:
    """A periodic task finished a run (a poller, the sweeper)."""
    get_redis().hset(HEARTBEATS_KEY, task_name, time.time())


def last_runs() -> dict[str, float]:
    return {name: float(at) for name, at in get_redis().hgetall(HEARTBEATS_KEY).items()}


def looked_at(job_ids: list[str]) -> None:
    """The poller read these waiting jobs' status at the vendor."""
    if job_ids:
        now = time.time()
        get_redis().zadd(POLLED_KEY, dict.fromkeys(job_ids, now))


@on_job_end
def forget(job_id: str) -> None:
    get_redis().zrem(POLLED_KEY, job_id)


def unpolled(waiting: list[Job], older_than: float) -> list[Job]:
    """Waiting jobs (of vendors with a poller) whose poller has not looked at them for `older_than` s."""
    if not waiting:
        return []
    seen = get_redis().zmscore(POLLED_KEY, [job.id for job in waiting])
    cutoff = time.time() - older_than
    return [job for job, at in zip(waiting, seen, strict=True) if (at or job.updated) < cutoff]
