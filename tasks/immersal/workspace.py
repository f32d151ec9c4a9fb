"""The workspace (an account's image bank) is held by one job at a time: a lease, queued for in order."""
from __future__ import annotations

import time

from geoqueue import jobs
from tasks.immersal.records import (
    ACTIVE_KEY,
    QUEUED,
    START,
    WORKSPACE_STEPS,
    WorkspaceLost,
    chunks_key,
    job_state,
    move_step,
    scratch_keys,
    send_step,
    state_key,
    working_key,
)
from workers.lease import Lease
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings
from workers.steps import grace_seconds, is_finished


# --- the workspace lease on (account, bank) ---
def workspace_name(bank: int) -> str:
    return f"{get_settings().immersal_account}/{bank}"


def workspace_lease(bank: int) -> Lease:
    # The poller refreshes it every cycle; the ttl only matters when beat is down.
    return Lease(get_redis(), f"gq:immersal:workspace:{get_settings().immersal_account}:{bank}",
                 get_settings().visibility_timeout + 120)


def waiting_phase(bank: int) -> str:
    return f"waiting for workspace {workspace_name(bank)}"


def queue_for_workspace(job_id: str, bank: int) -> None:
    r = get_redis()
    r.hset(state_key(job_id), mapping={"step": QUEUED, "step_at": time.time(), "bank": bank})
    get_ledger().transition(job_id, jobs.QUEUED, phase=waiting_phase(bank))
    workspace_lease(bank).wait(job_id)
    r.sadd(ACTIVE_KEY, job_id)
    hand_over(bank)


def may_release(holder: str) -> bool:
    """A finished job keeps its workspace until none of its chunks is mid-submission, so that no
    late image of it lands in the next job's workspace (or until a lost chunk is past hoping for)."""
    job = get_ledger().get(holder)
    if job is None:
        return True
    if not job.finished:
        return False
    return get_redis().scard(working_key(holder)) == 0 or time.time() - job.updated > grace_seconds()


def hand_over(bank: int) -> None:
    """Free the workspace of a finished holder, then give it to the oldest job waiting for it."""
    lease = workspace_lease(bank)
    holder = lease.holder()
    if holder is not None and may_release(holder):
        lease.release(holder)
    for waiter in lease.waiters():
        if not is_finished(waiter):
            break
        lease.leave(waiter)
    granted = lease.grant_next()
    if granted:
        start_on_workspace(granted, bank)


def start_on_workspace(job_id: str, bank: int) -> None:
    """The job holds the workspace now; it shows so while its start waits for a worker."""
    if move_step(job_id, START, QUEUED):
        get_ledger().transition(job_id, jobs.QUEUED, phase=f"starting on workspace {workspace_name(bank)}")
        send_step(job_id, START)


def free_workspace(job_id: str) -> None:
    bank = job_state(job_id).get("bank")
    if bank is not None:
        hand_over(int(bank))


def hold_workspace(job_id: str, bank: int) -> None:
    if not workspace_lease(bank).refresh(job_id):
        raise WorkspaceLost(f"the job lost its lease on workspace {workspace_name(bank)} (it expired); "
                            "its images may have been cleared by another job")


def retire(job_id: str) -> None:
    """A finished job leaves the poller's care; its per-image records expire with its ledger record."""
    r = get_redis()
    bank = r.hget(state_key(job_id), "bank")
    r.srem(ACTIVE_KEY, job_id)
    r.delete(chunks_key(job_id))
    for key in scratch_keys(job_id):
        r.expire(key, jobs.RECORD_TTL_SECONDS)
    if bank is not None:
        hand_over(int(bank))


def tend_workspace(bank: int) -> None:
    """Keep the holder's lease alive while it uses the workspace; free it once it does not."""
    lease = workspace_lease(bank)
    holder = lease.holder()
    if holder is not None and not is_finished(holder):
        if job_state(holder).get("step") in WORKSPACE_STEPS:
            lease.refresh(holder)
        else:
            lease.release(holder)
    hand_over(bank)
