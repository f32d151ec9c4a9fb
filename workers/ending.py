"""How a job ends: its record reaches an end state once, and whatever it held is let go.

Each vendor registers what its jobs may hold (a credit reservation, a workspace lease, a poller's
watch) with `@on_job_end`, and a job that takes something says so with `holds(job_id)`. Every end
state the fleet records goes through `end_job`, which runs them all. They are cheap and idempotent,
so the sweeper runs them again for holders that ended elsewhere (a producer's cancel) or whose
worker died in between.

    gq:holders    set of job ids that may hold something
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from geoqueue import jobs
from workers.redis_client import get_ledger, get_redis

log = logging.getLogger("geoqueue.jobs")

HOLDERS_KEY = "gq:holders"

Release = Callable[[str], None]
_RELEASES: list[Release] = []


def on_job_end(release: Release) -> Release:
    """Register `release(job_id)`: let go of what a job of this kind may hold. Idempotent."""
    _RELEASES.append(release)
    return release


def holds(job_id: str) -> None:
    """The job takes something that must be let go of when it ends."""
    get_redis().sadd(HOLDERS_KEY, job_id)


def holders() -> list[str]:
    return sorted(get_redis().smembers(HOLDERS_KEY))


def release(job_id: str) -> None:
    failed = False
    for fn in _RELEASES:
        try:
            fn(job_id)
        except Exception:  # one release failing must not keep the others from running; the sweeper retries
            failed = True
            log.exception("job %s: %s could not let go of what the job held", job_id, fn.__qualname__)
    if not failed:
        get_redis().srem(HOLDERS_KEY, job_id)


def end_job(job_id: str, state: str, **fields: Any) -> bool:
    """Move the job to an end state (False when it had one already) and let go of what it held."""
    assert state in jobs.TERMINAL, state
    changed = get_ledger().transition(job_id, state, **fields)
    release(job_id)
    return changed


def succeed(job_id: str, result: Any, **fields: Any) -> bool:
    return end_job(job_id, jobs.SUCCEEDED, result=result, **fields)


def fail(job_id: str, error: dict[str, Any], **fields: Any) -> bool:
    return end_job(job_id, jobs.FAILED, error=error, **fields)
