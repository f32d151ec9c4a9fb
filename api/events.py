"""Server-sent events from the ledger's pub/sub: `event: state` when a job's state changes,
`event: progress` otherwise; data is the job's summary (the ledger's event). A stream for one job
subscribes before it reads the job, so no change falls between, and ends with the job.

A Redis restart or failover cuts the subscription's connection, and pub/sub keeps nothing for a
subscriber away: the streams subscribe again (a lost connection is no end of the stream), and a
job's stream reads the record again after each quiet QUIET_S, so a change published meanwhile, or
on a node the address no longer names (a managed failover moves a DNS name), is still shown."""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aioredis
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from geoqueue.job_record import TERMINAL, Job
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


QUIET_S = 5.0                  # a job's record is read again after this long without an event
RESUBSCRIBE_PAUSE_S = 1.0      # between two tries to subscribe again while Redis is away
REDIS_LOST = (redis.ConnectionError, redis.TimeoutError)
SHOWN = ("state", "phase", "done", "total", "credits", "error")    # what a change changes (not `updated`)


async def job_stream(request: Request, job_id: str) -> AsyncIterator[dict]:
    shown: dict | None = None
    while shown is None or shown["state"] not in TERMINAL:
        try:
            async with request.app.state.aredis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(event_channel(job_id))
                current = await read_summary(request, job_id)       # after subscribing: nothing falls between
                while True:
                    if shown is None or any(current.get(k) != shown.get(k) for k in SHOWN):
                        kind = "state" if shown is None or current["state"] != shown["state"] else "progress"
                        shown = current
                        yield {"event": kind, "id": repr(current["updated"]), "data": json.dumps(current)}
                    if shown["state"] in TERMINAL:
                        return
                    message = await pubsub.get_message(timeout=QUIET_S)
                    if message is None and await request.is_disconnected():
                        return
                    current = json.loads(message["data"]) if message else await read_summary(request, job_id)
        except REDIS_LOST:
            await asyncio.sleep(RESUBSCRIBE_PAUSE_S)
            if await request.is_disconnected():
                return


async def read_summary(request: Request, job_id: str) -> dict:
    return summary(await run_in_threadpool(request.app.state.queue.status, job_id))


async def all_stream(request: Request) -> AsyncIterator[dict]:
    """Every job's changes as they are published (a change published while the subscription was
    lost is not shown: the job pages read the records when they load)."""
    while True:
        try:
            async with request.app.state.aredis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.psubscribe(EVENTS_PATTERN)
                while True:
                    message = await pubsub.get_message(timeout=QUIET_S)
                    if message is not None:
                        yield {"event": "job", "data": message["data"]}
                    elif await request.is_disconnected():
                        return
        except REDIS_LOST:
            await asyncio.sleep(RESUBSCRIBE_PAUSE_S)
            if await request.is_disconnected():
                return
