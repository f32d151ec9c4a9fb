"""When the periodic tasks run, as data. Each entry expires before its next run is due, so a
backlog never piles up stale copies. Intervals of a minute or more use crontab: beat restarts
reset interval countdowns, crontab does not."""
from celery.schedules import crontab

from geoqueue.routes import queue_for

# RedBeat holds a Redis lock so only one beat dispatches; a standby takes over once the lock
# times out (GEOQUEUE_BEAT_LOCK_TIMEOUT).

# Vendor pollers sweep every job waiting on that vendor: one cheap task per cycle, no task sleeps.
POLL_SECONDS = 5.0


def every(task: str, schedule, expires: float) -> dict:
    """An entry for `task`, sent to its own queue (geoqueue.routes), as any message of it is."""
    return {"task": task, "schedule": schedule, "options": {"expires": expires, "queue": queue_for(task)}}


BEAT_SCHEDULE = {
    "poll-immersal": every("immersal.poll", POLL_SECONDS, expires=POLL_SECONDS - 1),
    "poll-dronemapper": every("dronemapper.poll", POLL_SECONDS, expires=POLL_SECONDS - 1),
    "sweep-fanouts": every("geoqueue.sweep", crontab(minute="*"), expires=50),
}
