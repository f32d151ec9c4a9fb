"""The shared shape of a fan-out item (a sequence of a harvest, an image of an upload)."""
from __future__ import annotations

from typing import Callable

from geoqueue import jobs
from vendors.errors import TransientError, VendorError
from workers.fanout import Fanout
from workers.jobtask import JobCanceled, JobError, error_dict, publish_progress, retry_delay, retry_or_raise
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings


# --- the shared shape of a fan-out item ---
def item_outcome(task, work: Callable[[], dict]) -> dict:
    """Run an item's work: its outcome, or a retry for a transient failure while retries remain."""
    try:
        return {"state": "succeeded", **work()}
    except TransientError as exc:
        if task.request.retries < get_settings().max_retries:
            raise task.retry(exc=exc, countdown=retry_delay(task.request.retries, exc.retry_after),
                             max_retries=get_settings().max_retries)
        return {"state": "failed", "error": error_dict(exc)}
    except (VendorError, JobError) as exc:
        return {"state": "failed", "error": error_dict(exc)}


def run_item(task, job_id: str, item: str, work: Callable[[jobs.Job, str], dict],
             dispatch: Callable[[str, str], None], finish: Callable[[str], None],
             phase: Callable[[str], str]) -> dict:
    """One fan-out item: skipped when its job is over or its outcome is recorded; otherwise its
    outcome is recorded once. Whoever sees every outcome recorded finishes the job, a redelivered
    message too, so a finisher killed midway is replaced."""
    ledger = get_ledger()
    job = ledger.get(job_id)
    if job is None or job.finished:
        return {"job_id": job_id, "item": item, "skipped": True}
    fanout = Fanout(get_redis(), ledger)
    state = "recorded earlier"
    if ledger.item_is_recorded(job_id, item):
        # The run that recorded it may have died before taking it off the in-flight window and
        # dispatching the next item: redo that bookkeeping (recording again changes nothing).
        fanout.finish_item(job_id, item, ledger.items(job_id)[item], dispatch)
    else:
        try:
            outcome = item_outcome(task, lambda: work(job, item))
        except JobCanceled:
            return {"job_id": job_id, "item": item, "skipped": True}
        fanout.finish_item(job_id, item, outcome, dispatch)
        state = outcome["state"]
        report_progress(task, job_id, phase(job_id))
    if fanout.complete(job_id):
        try:
            finish(job_id)
        except TransientError as exc:
            retry_or_raise(task, exc)
            ledger.transition(job_id, jobs.FAILED, error=error_dict(exc))
        except (VendorError, JobError) as exc:
            ledger.transition(job_id, jobs.FAILED, error=error_dict(exc))
        except Exception as exc:
            # Nothing would finish the job later: every item has its outcome, this message is acked.
            ledger.transition(job_id, jobs.FAILED, error=error_dict(exc))
            raise
    return {"job_id": job_id, "item": item, "state": state}


def report_progress(task, job_id: str, phase: str) -> None:
    """The phase line; done/total stay the fan-out's count of finished items."""
    ledger = get_ledger()
    ledger.progress(job_id, phase)
    job = ledger.get(job_id)
    publish_progress(task, job_id, phase, job.done, job.total)


def stop_if_finished(job_id: str) -> None:
    job = get_ledger().get(job_id)
    if job is None or job.finished:
        raise JobCanceled(job_id)
