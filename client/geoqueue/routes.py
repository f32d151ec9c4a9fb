"""Queues and which task goes where. Shared by producers (to send) and workers (to consume),
so a producer app can route jobs without importing any worker code."""
from __future__ import annotations

CONTROL = "control"    # short work: planning, fan-out, polling vendors, bookkeeping
TRANSFER = "transfer"  # long work: vendor calls that block, uploads, downloads

QUEUES = (CONTROL, TRANSFER)

# The fleet's task that lets go at once of what a job held, sent by whoever ended the job outside
# the fleet (a producer's cancel).
RELEASE_TASK = "geoqueue.release"

# Task name pattern -> queue, first match wins. Convention: a vendor's long, I/O-bound steps are
# named `<vendor>.transfer.<step>`; job entry tasks, pollers and bookkeeping stay on control.
TASK_ROUTES = {
    "immersity.disparity": {"queue": TRANSFER},
    "immersity.animation": {"queue": TRANSFER},
    "immersity.item": {"queue": TRANSFER},
    "*.transfer.*": {"queue": TRANSFER},
    "*": {"queue": CONTROL},
}


def queue_for(task_name: str) -> str:
    import fnmatch

    for pattern, route in TASK_ROUTES.items():
        if fnmatch.fnmatchcase(task_name, pattern):
            return route["queue"]
    return CONTROL
