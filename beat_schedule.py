"""When the periodic tasks run, as data. Each entry expires before its next run is due, so a
backlog never piles up stale copies. Intervals of a minute or more use crontab: beat restarts
reset interval countdowns, crontab does not."""
from celery.schedules import crontab

# RedBeat holds a Redis lock so only one beat dispatches; a standby takes over once the lock
# times out (GEOQUEUE_BEAT_LOCK_TIMEOUT).

# Vendor pollers sweep every job waiting on that vendor: one cheap task per cycle, no task sleeps.
POLL_SECONDS = 5.0

BEAT_SCHEDULE = {
    "poll-immersal": {
        "task": "immersal.poll",
        "schedule": POLL_SECONDS,
        "options": {"expires": POLL_SECONDS - 1, "queue": "control"},
    },
    "poll-dronemapper": {
        "task": "dronemapper.poll",
        "schedule": POLL_SECONDS,
        "options": {"expires": POLL_SECONDS - 1, "queue": "control"},
    },
    "sweep-fanouts": {
        "task": "geoqueue.sweep",
        "schedule": crontab(minute="*"),
        "options": {"expires": 50, "queue": "control"},
    },
}
