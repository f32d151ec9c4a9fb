"""Where the job ledger lives in Redis: the keys of a job's record and of the indexes over them.

    gq:job:<id>              hash: id, name, vendor, state, phase, done, total, params, result, error, ...
    gq:job:<id>:items        hash: item key -> JSON outcome (batch jobs)
    gq:job:<id>:finished     set of item keys whose outcome is recorded
    gq:job:<id>:console      list of vendor console lines (where a vendor has them)
    gq:job:<id>:deliveries   list of JSON webhook delivery attempts
    gq:jobs:vendor:<v>:state:<s>   sorted set of job ids by creation time: a list reads the
                             indexes of its filters and merges them (one index per vendor and
                             state, so a job costs one index entry, whatever the filters); the
                             default app's jobs
    gq:jobs:app:<app>:vendor:<v>:state:<s>   the same, of another app's jobs: an app's list
                             reads its own indexes only
    gq:jobs:vendors          set of the vendors that have jobs
    gq:jobs:apps             set of the apps (but the default one) that have jobs
    gq:jobs:counts           hash "<vendor>/<state>" -> jobs on record: a scrape reads this alone
    gq:jobs:expiring         sorted set "<vendor>/<state>/<id>" by the time a finished record expires
    gq:events:<id>           pub/sub channel: a JSON summary of the job at every change
    gq:ended                 stream of jobs that reached an end state (the webhook deliverer reads it)
"""
from __future__ import annotations

from geoqueue.job_record import DEFAULT_APP

VENDORS_KEY = "gq:jobs:vendors"
APPS_KEY = "gq:jobs:apps"
COUNTS_KEY = "gq:jobs:counts"
EXPIRING_KEY = "gq:jobs:expiring"
ENDED_STREAM = "gq:ended"
ENDED_STREAM_LENGTH = 100_000        # about; a deliverer down for longer than this many job ends loses the oldest
EVENTS_PATTERN = "gq:events:*"
# One job's keys, as suffixes of its record's key: they expire together when the job ends, and the
# expiry sweep deletes them together (geoqueue/ledger_scripts.py).
JOB_KEY_SUFFIXES = (
    "",             # the record
    ":items",
    ":finished",
    ":console",
    ":deliveries",
)


def job_key(job_id: str) -> str:
    return f"gq:job:{job_id}"


def event_channel(job_id: str) -> str:
    """The pub/sub channel on which every change of the job is published."""
    return f"gq:events:{job_id}"


def index_key(vendor: str, state: str, app: str = DEFAULT_APP) -> str:
    """The sorted set of the ids of an app's jobs of a vendor in a state, by creation time."""
    return f"gq:jobs:{'' if app == DEFAULT_APP else f'app:{app}:'}vendor:{vendor}:state:{state}"
