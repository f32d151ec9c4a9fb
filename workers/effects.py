"""Vendor side effects done once, even when a task runs again after a crash or a redelivery.

For a call whose effect is an object in storage (Immersity writes its result to our bucket),
the object itself says whether the call took effect; a marker in Redis says whether a call
may still be in flight, so a second worker waits for it instead of paying twice.
"""
from __future__ import annotations

import time
from typing import Callable

import redis

from geoqueue.s3ref import S3Ref
from vendors.errors import TransientError
from workers.storage import ObjectStore


class EffectInFlight(TransientError):
    """Another attempt of this call may still be running at the vendor; try again later."""


def effect_key(name: str) -> str:
    return f"gq:effect:{name}"


CALLED = "called"            # this run made the call
EARLIER_CALL = "earlier-call" # an earlier attempt made it (e.g. before its worker died)
PRESENT = "present"          # the object was there without any call of ours


def once_into_object(client: redis.Redis, store: ObjectStore, name: str, target: S3Ref,
                     call: Callable[[], None], in_flight_limit: float) -> str:
    """Run `call` unless `target` exists already; says who made it (CALLED, EARLIER_CALL, PRESENT).

    `in_flight_limit` is the longest a call can take (the vendor timeout): within that time of
    an earlier attempt that left no answer, its result may still land, so we wait for it.
    """
    marker = effect_key(name)
    if (store.size(target) or 0) > 0:
        return EARLIER_CALL if client.exists(marker) else PRESENT
    started = client.set(marker, time.time(), nx=True, ex=int(in_flight_limit * 3) + 60)
    if not started:
        since = time.time() - float(client.get(marker) or 0)
        if since < in_flight_limit:
            raise EffectInFlight(f"an earlier attempt of {name} may still be running",
                                 retry_after=min(in_flight_limit - since, 30.0) + 1)
        if (store.size(target) or 0) > 0:
            return EARLIER_CALL
        client.set(marker, time.time(), ex=int(in_flight_limit * 3) + 60)
    try:
        call()
    except TransientError as exc:
        if exc.status is not None:
            # The vendor answered (5xx, 429): the call is over, so the next try needs no wait.
            client.delete(marker)
        raise
    except Exception:
        client.delete(marker)
        raise
    return CALLED


def charge_once(client: redis.Redis, job_id: str, name: str, who: str) -> bool:
    """True the first time a call made for this job (now or by an earlier attempt) is seen."""
    return who != PRESENT and bool(client.sadd(f"gq:job:{job_id}:charged", name))

