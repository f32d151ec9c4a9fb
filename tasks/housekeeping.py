"""Periodic bookkeeping: re-dispatch fan-out items whose messages were lost."""
from __future__ import annotations

from geoqueue.routes import queue_for
from workers import app
from workers.fanout import Fanout
from workers.jobtask import JobTask
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings


def send_item(job_id: str, item: str) -> None:
    name = get_redis().hget(f"gq:job:{job_id}", "item_task")
    app.send_task(name, kwargs={"job_id": job_id, "item": item}, queue=queue_for(name))


@app.task(bind=True, base=JobTask, name="geoqueue.sweep")
def sweep(self) -> dict[str, int]:
    """An item in flight longer than the visibility timeout lost its message (Redis would have
    redelivered it otherwise): send it again. Finished jobs leave the active set."""
    ledger, fanout = get_ledger(), Fanout(get_redis(), get_ledger())
    grace = get_settings().visibility_timeout + 60
    resent = closed = 0
    for job_id in fanout.active_jobs():
        job = ledger.get(job_id)
        if job is None or job.finished:
            fanout.close(job_id)
            closed += 1
            continue
        for item in fanout.stalled(job_id, grace):
            fanout.redispatch(job_id, item, send_item)
            resent += 1
        fanout.fill(job_id, send_item)
    return {"resent": resent, "closed": closed}
