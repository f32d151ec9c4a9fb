"""The sweeper (beat, every minute): what no task is left to do.

- Items of a fan-out whose message was lost (in flight longer than Redis would keep it unacked,
  and still without an outcome) are sent again, and the window is kept full.
- Jobs recorded but never taken by a worker, whose message is in no queue (a submit that failed
  to send, a message lost on the way) are sent, once their grace (GEOQUEUE_SUBMIT_GRACE) is over.
- Jobs waiting on a vendor that its poller has not looked at lately are reported, and the poller
  is sent at once.
- Jobs that ended elsewhere (a producer's cancel) or whose worker died before letting go, and
  that still hold something (a credit reservation, a lease), let go of it.
"""
from __future__ import annotations

import logging
import time

from celery import current_app

from config.redis_client import get_ledger, get_redis
from config.settings import get_settings
from geoqueue.job_record import QUEUED, WAITING
from geoqueue.ledger_keys import job_key
from geoqueue.routes import RELEASE_TASK, queue_for
from runtime import ending, liveness
from runtime.fanout import Fanout
from runtime.steps import grace_seconds, is_finished
from runtime.tasks import task
from workers import queues

log = logging.getLogger("geoqueue.sweeper")
SUBMISSIONS_PER_SWEEP = 100


@task("geoqueue.sweep", kind="periodic", ignore_result=True)
def sweep() -> dict[str, int]:
    return {"resent_items": resend_lost_items(), "sent_jobs": send_lost_submissions(),
            "polls_sent": poke_pollers(), "released": release_holders()}


@task(RELEASE_TASK, kind="control", ignore_result=True)
def release(job_id: str) -> None:
    """A job ended outside the fleet (a producer's cancel): what it held is let go now."""
    ending.release(job_id)


def resend_lost_items() -> int:
    ledger, fanout, resent = get_ledger(), Fanout(), 0
    for job_id in fanout.active_jobs():
        job = ledger.get(job_id)
        if job is None or job.finished:
            fanout.close(job_id)
            continue
        for item in fanout.stalled(job_id, grace_seconds()):
            fanout.redispatch(job_id, item)
            resent += 1
        fanout.fill(job_id)
    return resent


def send_lost_submissions() -> int:
    ledger, r, grace = get_ledger(), get_redis(), get_settings().submit_grace
    sent = 0
    for job in ledger.oldest(QUEUED, limit=SUBMISSIONS_PER_SWEEP):
        if time.time() - job.created < grace:
            break        # oldest first: the rest are younger still
        sent_at, taken = r.hmget(job_key(job.id), "sent", "taken")
        if taken or (float(sent_at or 0) > time.time() - grace) or queues.holds_message(r, job.id):
            continue
        log.warning("job %s (%s) was recorded %.0f s ago and its message is in no queue: sending it",
                    job.id, job.name, time.time() - job.created)
        current_app.send_task(job.name, kwargs=job.params, task_id=job.id, queue=queue_for(job.name))
        ledger.mark_sent(job.id)
        sent += 1
    return sent


def poke_pollers() -> int:
    ledger, after, sent = get_ledger(), get_settings().unpolled_after, 0
    for vendor, poller in liveness.POLLERS.items():
        waiting = list(ledger.recent(limit=10_000, state=WAITING, vendor=vendor))
        stale = liveness.unpolled(waiting, after)
        if stale:
            log.warning("%d %s jobs waiting on the vendor were not looked at for %d s (%s...): sending %s",
                        len(stale), vendor, after, ", ".join(job.id for job in stale[:5]), poller)
            current_app.send_task(poller, queue=queue_for(poller))
            sent += 1
    return sent


def release_holders() -> int:
    released = 0
    for job_id in ending.holders():
        if is_finished(job_id):
            ending.release(job_id)
            released += 1
    return released
