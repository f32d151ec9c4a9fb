"""An Immersal job's records in Redis, its steps, and the names they go by.

    gq:job:<id>:immersal           hash: step, step_at, bank, images, chunks, base, map_id, status, summary;
                                   an exact build's cut_off_arrived, cut_off_sent_again (capture_gate.py)
    gq:job:<id>:immersal:chunks    hash: chunk name -> JSON list of manifest rows
    gq:job:<id>:immersal:working   set of chunks being submitted right now
    gq:job:<id>:once:captures      each image's capture, made once (runtime/once.py), by "run:index"
    gq:job:<id>:once               the map-creating call (/construct, /fuse), made once
    gq:immersal:active             jobs in progress that the poller looks after
    gq:immersal:map-jobs           hash: map id -> the job that created it
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from config.redis_client import get_redis
from geoqueue.ledger import RECORD_TTL_SECONDS
from geoqueue.ledger_keys import job_key
from runtime import JobError, Once
from runtime.steps import StepMachine

log = logging.getLogger("geoqueue.immersal")

MANIFEST_NAME = "manifest.csv"
DEFAULT_CHUNK_SIZE = 8
POLL_CALL_TIMEOUT = 10.0          # the poller runs every few seconds: a slow answer waits for the next round
POLL_LOCK_SECONDS = 60
CLOCK_SLACK_SECONDS = 300         # Immersal's clock against ours, when finding a map an interrupted call made
MAP_FIELDS = ("id", "name", "status", "size", "bank", "privacy", "latitude", "longitude", "altitude",
              "created", "modified", "sha256_al")

ACTIVE_KEY = "gq:immersal:active"
CLAIMS_KEY = "gq:immersal:map-jobs"

# Where a job is; each step after QUEUED is run by one task (or, for CONSTRUCTION, by the poller).
QUEUED, START, SUBMIT, SETTLE = "queued", "start", "submit", "settle"
CONSTRUCTION, DOWNLOAD = "construction", "download"
STEP_TASKS = {START: "immersal.start", SETTLE: "immersal.transfer.settle", DOWNLOAD: "immersal.transfer.download"}
STEP_PHASES = {START: "preparing workspace", SUBMIT: "submitting images", SETTLE: "constructing map",
               DOWNLOAD: "downloading map"}
WORKSPACE_STEPS = (QUEUED, START, SUBMIT, SETTLE)   # the steps that need the workspace lease
CHUNK_TASK = "immersal.transfer.submit_chunk"
CONSTRUCT = "construct"                             # the map-creating call's name among the job's effects

STEPS = StepMachine("immersal", STEP_TASKS)


class WorkspaceLost(JobError):
    """The job's Immersal workspace was taken from it (its lease expired) while it built there."""


class ConstructionFailed(JobError):
    """Immersal's construction of the map failed."""


def image_key(row: dict) -> str:
    return f"{row['run']}:{row['index']}"


class ImmersalRecords:
    """One job's records beyond its step hash."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.redis = get_redis()
        base = job_key(job_id)
        self.chunks_key, self.working_key = f"{base}:immersal:chunks", f"{base}:immersal:working"
        self.captures = Once(job_id, "captures")

    # --- the manifest's rows, in chunks of images submitted by one task each ---
    def save_chunks(self, rows: list[dict], chunk_size: int) -> None:
        chunks = {f"chunk-{n // chunk_size:04d}": json.dumps(rows[n:n + chunk_size])
                  for n in range(0, len(rows), chunk_size)}
        pipe = self.redis.pipeline()
        pipe.hset(self.chunks_key, mapping=chunks)
        pipe.hset(STEPS.key(self.job_id), mapping={"images": len(rows), "chunks": len(chunks)})
        for key in (self.chunks_key, STEPS.key(self.job_id)):
            pipe.expire(key, RECORD_TTL_SECONDS)
        pipe.execute()

    def chunk_names(self) -> list[str]:
        return sorted(self.redis.hkeys(self.chunks_key))

    def chunk(self, name: str) -> list[dict]:
        return json.loads(self.redis.hget(self.chunks_key, name) or "[]")

    def rows(self) -> Iterator[dict]:
        for chunk in self.redis.hvals(self.chunks_key):
            yield from json.loads(chunk)

    # --- chunks mid-submission: the workspace waits for them before the next job clears it ---
    def working(self, name: str, busy: bool) -> None:
        (self.redis.sadd if busy else self.redis.srem)(self.working_key, name)

    def submitting(self) -> bool:
        return bool(self.redis.scard(self.working_key))

    def expire(self) -> None:
        """The job is over: its rows go now, the rest expires with its ledger record."""
        self.redis.delete(self.chunks_key)
        for key in (STEPS.key(self.job_id), self.working_key):
            self.redis.expire(key, RECORD_TTL_SECONDS)
