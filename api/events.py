"""Server-sent events from the ledger's pub/sub, through the process's one subscription
(api/event_hub.py): `event: state` when a job's state changes, `event: progress` otherwise; data is
the job's summary (the ledger's event). A stream for one job listens before it reads the job, so
no change falls between, and ends with the job.

A Redis restart or failover cuts the subscription, and pub/sub keeps nothing for a subscriber away:
the hub subscribes again and tells every stream, and a job's stream also reads the record again
after each quiet QUIET_S, so a change published meanwhile, or on a node the address no longer names
(a managed failover moves a DNS name), is still shown."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aioredis
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.event_hub import OVERFLOWED, QUIET, RESUBSCRIBED, EventHub, Listener, TooManyStreams
from api.keys import ApiKey
from geoqueue.client import GeoQueue, UnknownJob
from geoqueue.job_record import TERMINAL, Job, event_seen_by
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
SHOWN = ("state", "phase", "done", "total", "credits", "error")    # what a change changes (not `updated`)


def listen(request: Request, key: ApiKey, job_id: str | None) -> Listener:
    """The stream's place, taken before its answer starts: past the key's cap, 429."""
    hub: EventHub = request.app.state.events
    try:
        return hub.listen(key.name, job_id)
    except TooManyStreams as exc:
        raise ApiError(429, "TooManyStreams", str(exc), headers={"Retry-After": "5"}) from None


def job_stream(request: Request, queue: GeoQueue, job_id: str, key: ApiKey) -> AsyncIterator[dict]:
    """One job of `queue`'s app, under the app's own id."""
    return _job_events(queue, job_id, request.app.state.events, listen(request, key, queue.stored(job_id)))


def all_stream(request: Request, key: ApiKey) -> AsyncIterator[dict]:
    """The changes of every job of the key's app, under its own ids; other apps' jobs are not seen."""
    return _all_events(key.app, request.app.state.events, listen(request, key, None))


async def _job_events(queue: GeoQueue, job_id: str, hub: EventHub, listener: Listener) -> AsyncIterator[dict]:
    try:
        await hub.ready()
        job = await run_in_threadpool(queue.status, job_id)
        shown = summary(job)
        yield {"event": "state", "id": repr(job.updated), "data": json.dumps(shown)}
        state = job.state
        while state not in TERMINAL:
            data = await listener.next(QUIET_S)
            if data is OVERFLOWED:
                return  # the client reconnects and reads the job anew
            if data is RESUBSCRIBED or data is QUIET:  # changes may have been missed: the job as it is now
                try:
                    job = await run_in_threadpool(queue.status, job_id)
                except UnknownJob:
                    return  # gone meanwhile (expired): nothing more to follow
                except redis.RedisError:
                    continue  # Redis away (a restart, a failover): no end of the stream; read it again later
                event = summary(job)
                if not any(event.get(k) != shown.get(k) for k in SHOWN):
                    continue
            else:
                event = event_seen_by(queue.app, json.loads(data))
            kind = "state" if event["state"] != state else "progress"
            state, shown = event["state"], event
            yield {"event": kind, "id": repr(event["updated"]), "data": json.dumps(event)}
    finally:
        listener.close()


async def _all_events(app: str, hub: EventHub, listener: Listener) -> AsyncIterator[dict]:
    try:
        await hub.ready()
        while (data := await listener.next()) is not OVERFLOWED:
            event = None if data is RESUBSCRIBED else event_seen_by(app, json.loads(data))
            if event is not None:
                yield {"event": "job", "data": json.dumps(event)}
    finally:
        listener.close()
