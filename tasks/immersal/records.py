"""An Immersal job's records in Redis, its steps, and the names they go by."""
from __future__ import annotations

import functools
import logging

from geoqueue import jobs
from workers.jobtask import JobError
from workers.redis_client import get_redis
from workers.steps import Steps

log = logging.getLogger("geoqueue.immersal")

MANIFEST_NAME = "manifest.csv"
DEFAULT_CHUNK_SIZE = 8
MAX_CHUNK_SIZE = 100
MAX_PARALLEL = 32
MIN_STITCH_MAPS = 2
POLL_CALL_TIMEOUT = 10.0          # the poller runs every few seconds: a slow answer waits for the next round
POLL_LOCK_SECONDS = 60
CLOCK_SLACK_SECONDS = 300         # Immersal's clock against ours, when finding a map an interrupted call made
MAP_FIELDS = ("id", "name", "status", "size", "bank", "privacy", "latitude", "longitude", "altitude",
              "created", "modified", "sha256_al")

# Redis keys beyond the ledger's.
ACTIVE_KEY = "gq:immersal:active"        # jobs in progress that the poller looks after
CLAIMS_KEY = "gq:immersal:map-jobs"      # map id -> the job that created it
POLL_LOCK_KEY = "gq:immersal:poll-lock"

# Where a job is; each step after QUEUED is run by one task (or, for CONSTRUCTION, by the poller).
QUEUED, START, SUBMIT, SETTLE, CONSTRUCTION, DOWNLOAD = "queued", "start", "submit", "settle", "construction", "download"
STEP_TASKS = {START: "immersal.start", SETTLE: "immersal.transfer.settle", DOWNLOAD: "immersal.transfer.download"}
STEP_PHASES = {START: "preparing workspace", SUBMIT: "submitting images", SETTLE: "constructing map",
               DOWNLOAD: "downloading map"}
WORKSPACE_STEPS = (QUEUED, START, SUBMIT, SETTLE)   # the steps that need the workspace lease
CHUNK_TASK = "immersal.transfer.submit_chunk"


class WorkspaceLost(JobError):
    kind = "WorkspaceLost"


class ConstructionFailed(JobError):
    kind = "ConstructionFailed"


class Stopped(Exception):
    """The job finished elsewhere (failed, canceled) while this task worked for it."""


# --- the job's own records ---
def state_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal"            # hash: step, step_at, bank, images, chunks, base, map_id, ...


STEPS = Steps(state_key, STEP_TASKS)
move_step, send_step, dispatch_step = STEPS.move, STEPS.send, STEPS.dispatch


def chunks_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:chunks"     # hash: chunk name -> JSON list of manifest rows


def sent_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:sent"       # set of "run:index" Immersal confirmed


def calling_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:calling"    # hash "run:index" -> order in which its capture call began


def calls_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:calls"      # counter giving that order (Redis's, not worker clocks)


def working_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:working"    # set of chunks being submitted right now


def busy_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:immersal:busy"       # lease: one step task at a time per job


def scratch_keys(job_id: str) -> list[str]:
    return [state_key(job_id), chunks_key(job_id), sent_key(job_id), calling_key(job_id), calls_key(job_id),
            working_key(job_id)]


def job_state(job_id: str) -> dict[str, str]:
    return get_redis().hgetall(state_key(job_id))


def image_key(row: dict) -> str:
    return f"{row['run']}:{row['index']}"


_MARK_CALLING = """
redis.call('HSET', KEYS[1], ARGV[1], redis.call('INCR', KEYS[2]))
redis.call('EXPIRE', KEYS[2], ARGV[2])
"""

@functools.lru_cache(maxsize=1)
def _mark_calling_script():
    return get_redis().register_script(_MARK_CALLING)
