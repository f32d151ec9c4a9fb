"""Queues and which task goes where. Shared by producers (to send) and workers (to consume),
so a producer app can route jobs without importing any worker code."""
from __future__ import annotations

CONTROL = "control"    # short work: planning, fan-out, polling vendors, bookkeeping
TRANSFER = "transfer"  # long work: vendor calls that block, uploads, downloads

QUEUES = (CONTROL, TRANSFER)

# Task name pattern -> queue. Celery matches glob patterns in order.
TASK_ROUTES = {
    "immersity.disparity": {"queue": TRANSFER},
    "immersity.animation": {"queue": TRANSFER},
    "immersity.item": {"queue": TRANSFER},
    "immersity.*": {"queue": CONTROL},
    "geoqueue.*": {"queue": CONTROL},
    "*.poll": {"queue": CONTROL},
    "*": {"queue": CONTROL},
}


def queue_for(task_name: str) -> str:
    import fnmatch

    for pattern, route in TASK_ROUTES.items():
        if fnmatch.fnmatchcase(task_name, pattern):
            return route["queue"]
    return CONTROL
