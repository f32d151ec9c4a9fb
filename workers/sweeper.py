"""The sweeper (beat, every minute): what no task is left to do.

- Items of a fan-out whose message was lost (in flight longer than Redis would keep it unacked,
  and still without an outcome) are sent again, and the window is kept full.
- Jobs that ended elsewhere (a producer's cancel) or whose worker died before letting go, and
  that still hold something (a credit reservation, a lease), let go of it.
"""
from __future__ import annotations

from workers import app, ending
from workers.fanout import Fanout
from workers.guard import JobTask
from workers.redis_client import get_ledger
from workers.steps import grace_seconds, is_finished


@app.task(bind=True, base=JobTask, name="geoqueue.sweep", ignore_result=True)
def sweep(self) -> dict[str, int]:
    ledger, fanout = get_ledger(), Fanout()
    resent = released = 0
    for job_id in fanout.active_jobs():
        job = ledger.get(job_id)
        if job is None or job.finished:
            fanout.close(job_id)
            continue
        for item in fanout.stalled(job_id, grace_seconds()):
            fanout.redispatch(job_id, item)
            resent += 1
        fanout.fill(job_id)
    for job_id in ending.holders():
        if is_finished(job_id):
            ending.release(job_id)
            released += 1
    return {"resent": resent, "released": released}
