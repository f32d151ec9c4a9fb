"""How a job ends: its record reaches an end state once, and whatever it held is let go.

Each vendor registers what its jobs may hold (a credit reservation, a workspace lease, a poller's
watch) with `@on_job_end`, and a job that takes something says so with `hold(job_id)`. Every end
state the fleet records goes through `end_job`, which runs them all; a producer's cancel, recorded
outside the fleet, sends the fleet `release(job_id)` (workers/sweeper.py). They are cheap and
idempotent, so the sweeper runs them again for holders whose worker died in between.

    gq:holders    set of job ids that may hold something
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from config.redis_client import get_ledger, get_redis
from geoqueue.job_record import FAILED, SUCCEEDED, TERMINAL

log = logging.getLogger("geoqueue.jobs")

HOLDERS_KEY = "gq:holders"

Release = Callable[[str], None]
_RELEASES: list[Release] = []
_BEFORE_END: list[Release] = []


def on_job_end(release: Release | None = None, *, reads_end_state: bool = False):
    """Register `release(job_id)`: let go of what a job of this kind may hold. Idempotent.
    Releases run before the end state is recorded, so that whoever sees it (a producer that submits
    again once its batch failed) can have what the job held; one that decides by the end state
    (`reads_end_state=True`) runs once it is recorded."""
    def register(fn: Release) -> Release:
        _RELEASES.append(fn)
        if not reads_end_state:
            _BEFORE_END.append(fn)
        return fn

    return register(release) if release else register


def hold(job_id: str) -> None:
    """The job takes something that must be let go of when it ends."""
    get_redis().sadd(HOLDERS_KEY, job_id)


def holders() -> list[str]:
    return sorted(get_redis().smembers(HOLDERS_KEY))


def _let_go(job_id: str, releases: list[Release]) -> bool:
    done = True
    for fn in releases:
        try:
            fn(job_id)
        except Exception:  # one release failing must not keep the others from running; the sweeper retries
            done = False
            log.exception("job %s: %s could not let go of what the job held", job_id, fn.__qualname__)
    return done


def release(job_id: str) -> None:
    if _let_go(job_id, _RELEASES):
        get_redis().srem(HOLDERS_KEY, job_id)


def end_job(job_id: str, state: str, **fields: Any) -> bool:
    """Move the job to an end state (False when it had one already) and let go of what it held:
    what no release decides by the end state before it is recorded, the rest after (and the first
    again: they are idempotent), and then the job holds nothing."""
    assert state in TERMINAL, state
    _let_go(job_id, _BEFORE_END)
    changed = get_ledger().transition(job_id, state, **fields)
    release(job_id)
    return changed


def succeed(job_id: str, result: Any, **fields: Any) -> bool:
    return end_job(job_id, SUCCEEDED, result=result, **fields)


def fail(job_id: str, error: dict[str, Any], **fields: Any) -> bool:
    return end_job(job_id, FAILED, error=error, **fields)
