"""The workspace (an image bank of the account) holds the images waiting for construction, so it is
held by one job at a time: a lease on (account, bank), granted to the jobs asking in turn, from
clearing the workspace to the construct call. The job keeps its grant's fencing token (runtime/lease.py)
as `lease_token`, and every vendor call made in the workspace checks it first (`hold_workspace`): a job
whose grant was lost (a Redis failover) and given again, to another job or to itself, stops."""
from __future__ import annotations

import time

from config.redis_client import get_ledger, get_redis
from config.settings import get_settings
from geoqueue import job_record
from runtime import JobContext, ending
from runtime.lease import Lease
from runtime.steps import grace_seconds, is_finished
from tasks.immersal.records import ACTIVE_KEY, QUEUED, START, STEPS, WORKSPACE_STEPS, ImmersalRecords, WorkspaceLost


def workspace_name(bank: int) -> str:
    return f"{get_settings().immersal_account}/{bank}"


def workspace_lease(bank: int) -> Lease:
    # The poller refreshes it every cycle; the ttl only matters when beat is down.
    return Lease(get_redis(), f"gq:immersal:workspace:{get_settings().immersal_account}:{bank}",
                 get_settings().visibility_timeout + 120)


def workspace_mismatch(bank: int, count: int, base: int, sent: int) -> str:
    return (f"workspace {workspace_name(bank)} holds {count} images where {base} restored and {sent} submitted were "
            "expected: another client changed it, or new images reuse (run, index) pairs of the restored maps")


def waiting_phase(bank: int) -> str:
    return f"waiting for workspace {workspace_name(bank)}"


def queue_for_workspace(job: JobContext, bank: int) -> None:
    STEPS.set(job.id, step=QUEUED, step_at=time.time(), bank=bank)
    job.show(job_record.QUEUED, waiting_phase(bank))
    ending.hold(job.id)
    workspace_lease(bank).wait(job.id)
    get_redis().sadd(ACTIVE_KEY, job.id)
    hand_over(bank)


def may_release(holder: str) -> bool:
    """A finished job keeps its workspace until none of its chunks is mid-submission, so that no
    late image of it lands in the next job's workspace (or until a lost chunk is past hoping for)."""
    job = get_ledger().get(holder)
    if job is None:
        return True
    if not job.finished:
        return False
    return not ImmersalRecords(holder).submitting() or time.time() - job.updated > grace_seconds()


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
        start_on_workspace(granted.owner, bank, granted.token)


def start_on_workspace(job_id: str, bank: int, token: int | None = None) -> None:
    """The job holds the workspace now (by the grant of `token`; None: the grant held now); it shows
    so while its start waits for a worker."""
    if STEPS.move(job_id, START, QUEUED):
        STEPS.set(job_id, lease_token=token or workspace_lease(bank).token() or "")
        get_ledger().transition(job_id, job_record.QUEUED, phase=f"starting on workspace {workspace_name(bank)}")
        STEPS.send(job_id, START)


def lease_token(state: dict) -> int | None:
    """The token of the grant the job started on (None: a job started before leases had tokens)."""
    return int(state["lease_token"]) if state.get("lease_token") else None


def hold_workspace(job_id: str, bank: int, token: int | None) -> None:
    """Before a vendor call in the workspace: the job still holds it, by the grant it started on."""
    if not workspace_lease(bank).refresh(job_id, token):
        raise WorkspaceLost(f"the job lost its lease on workspace {workspace_name(bank)} (it expired, or a "
                            "Redis failover lost its grant and it was granted again); its images may have "
                            "been cleared by another job")


def tend_workspace(bank: int) -> None:
    """Keep the holder's lease alive while it uses the workspace; free it once it does not."""
    lease = workspace_lease(bank)
    holder = lease.holder()
    if holder is not None and not is_finished(holder):
        if STEPS.state(holder).get("step") in WORKSPACE_STEPS:
            lease.refresh(holder)
        else:
            lease.release(holder)
    hand_over(bank)


def free_workspace(job_id: str) -> None:
    bank = STEPS.state(job_id).get("bank")
    if bank is not None:
        hand_over(int(bank))


@ending.on_job_end
def retire(job_id: str) -> None:
    """A job that ended leaves the poller's care and hands its workspace on."""
    if not get_redis().hexists(STEPS.key(job_id), "step"):
        return   # not an Immersal job of the workspace kind
    get_redis().srem(ACTIVE_KEY, job_id)
    ImmersalRecords(job_id).expire()
    free_workspace(job_id)
