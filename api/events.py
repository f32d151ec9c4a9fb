"""Server-sent events from the ledger's pub/sub: `event: state` when a job's state changes,
`event: progress` otherwise; data is the job's summary (the ledger's event). A stream for one job
subscribes before it reads the job, so no change falls between, and ends with the job."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from geoqueue.client import GeoQueue
from geoqueue.job_record import TERMINAL, Job, event_seen_by
from geoqueue.ledger_keys import EVENTS_PATTERN, event_channel
from geoqueue.redis_url import DEFAULT_MASTER, is_sentinel, sentinel_hosts


def connect_async(url: str, master: str | None = None) -> aioredis.Redis:
    if not is_sentinel(url):
        return aioredis.Redis.from_url(url, decode_responses=True)
    from redis.asyncio.sentinel import Sentinel

    hosts, db, password = sentinel_hosts(url)
    return Sentinel(hosts).master_for(master or DEFAULT_MASTER, db=db, password=password, decode_responses=True)


def summary(job: Job) -> dict:
    return {"id": job.id, "name": job.name, "vendor": job.vendor, "state": job.state, "phase": job.phase,
            "done": job.done, "total": job.total, "credits": job.credits, "updated": job.updated,
            **({"error": job.error} if job.error else {})}


async def job_stream(request: Request, queue: GeoQueue, job_id: str) -> AsyncIterator[dict]:
    """One job of `queue`'s app, under the app's own id."""
    async with request.app.state.aredis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(event_channel(queue.stored(job_id)))
        job = await run_in_threadpool(queue.status, job_id)
        yield {"event": "state", "id": repr(job.updated), "data": json.dumps(summary(job))}
        state = job.state
        while state not in TERMINAL:
            message = await pubsub.get_message(timeout=5.0)
            if message is None:
                if await request.is_disconnected():
                    return
                continue
            event = event_seen_by(queue.app, json.loads(message["data"]))
            kind = "state" if event["state"] != state else "progress"
            state = event["state"]
            yield {"event": kind, "id": repr(event["updated"]), "data": json.dumps(event)}


async def all_stream(request: Request, app: str) -> AsyncIterator[dict]:
    """The changes of every job of `app`, under its own ids; other apps' jobs are not seen."""
    async with request.app.state.aredis.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.psubscribe(EVENTS_PATTERN)
        while True:
            message = await pubsub.get_message(timeout=5.0)
            if message is None:
                if await request.is_disconnected():
                    return
                continue
            event = event_seen_by(app, json.loads(message["data"]))
            if event is not None:
                yield {"event": "job", "data": json.dumps(event)}
