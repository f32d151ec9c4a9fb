"""A survey's records in Redis, its steps, and the names they go by.

    gq:job:<id>:dronemapper          hash, the step machine's: step, step_at, project, task, flow, images,
                                     committed, since, console_offset, seen, status, last_error, stop,
                                     stop_claimed_at (while the stop call is under way), removed, ...
    gq:job:<id>:dronemapper:images   hash: vendor filename -> {"uri", "size"}
    gq:job:<id>:dronemapper:assets   hash: asset -> {"uri", "bytes"} once delivered
    gq:job:<id>:once                 the project, task and restart made once (runtime/once.py)
    gq:dronemapper:active            set: surveys the poller looks after
    gq:dronemapper:claim:<kind>:<id>@<created_at>   string: the job a project or task belongs to
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from config.redis_client import get_redis
from config.settings import get_settings
from geoqueue.ledger import RECORD_TTL_SECONDS
from geoqueue.ledger_keys import job_key
from geoqueue.s3ref import S3Ref, parse_ref
from runtime import JobError
from runtime.steps import StepMachine, is_finished

log = logging.getLogger("geoqueue.dronemapper")

VENDOR = "dronemapper"
SURVEY_JOB = "dronemapper.process_survey"
MiB = 1 << 20

# Steps of a survey (the `step` field of its state hash).
CREATE, UPLOAD, SEND, COMMIT, PROCESSING, DELIVER, FINISH = (
    "create", "upload", "send", "commit", "processing", "deliver", "finish")
UPLOAD_TASK = "dronemapper.transfer.upload"
STEP_TASKS = {SEND: "dronemapper.transfer.send", COMMIT: "dronemapper.commit",
              DELIVER: "dronemapper.transfer.deliver", FINISH: "dronemapper.finish"}
STEP_PHASES = {CREATE: "preparing", UPLOAD: "uploading images", SEND: "uploading images (one request)",
               COMMIT: "starting processing", DELIVER: "delivering assets", FINISH: "finishing"}
STEPS = StepMachine(VENDOR, STEP_TASKS)

ACTIVE_KEY = "gq:dronemapper:active"

# Claim the stop (ARGV[1] the action, ARGV[2] now): free, or claimed more than ARGV[3] seconds ago.
# A stop without a claim time was made, and stays made.
_CLAIM_STOP = """
local action = redis.call('HGET', KEYS[1], 'stop')
local claimed = redis.call('HGET', KEYS[1], 'stop_claimed_at')
if action and (not claimed or tonumber(claimed) > tonumber(ARGV[2]) - tonumber(ARGV[3])) then return 0 end
redis.call('HSET', KEYS[1], 'stop', ARGV[1], 'stop_claimed_at', ARGV[2])
return 1
"""


class ProcessingFailed(JobError):
    """DroneMapper's processing task failed."""


class TaskGone(JobError):
    """The survey's task no longer exists at DroneMapper."""


class ImageRejected(JobError):
    """DroneMapper refused one of the survey's images."""


def stop_made(state: dict) -> bool:
    """The vendor task's stop call was made (a stop claimed and no longer under way)."""
    return bool(state.get("stop")) and not state.get("stop_claimed_at")


def vendor_id(value: str) -> int | str:
    """A task id as the vendor gave it: an int in the doc, a UUID in current WebODM."""
    return int(value) if value.isdigit() else value


class Survey:
    """One survey job's records."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.redis = get_redis()
        self.state_key = STEPS.key(job_id)
        self.images_key, self.assets_key = f"{self.state_key}:images", f"{self.state_key}:assets"

    @staticmethod
    def active() -> list[str]:
        return sorted(get_redis().smembers(ACTIVE_KEY))

    def state(self) -> dict[str, str]:
        return STEPS.state(self.job_id)

    def set(self, **fields: Any) -> None:
        STEPS.set(self.job_id, **fields)

    # --- its images and delivered assets ---
    def save_images(self, photos: dict[str, tuple[S3Ref, int]]) -> None:
        rows = {name: json.dumps({"uri": ref.uri, "size": size}) for name, (ref, size) in photos.items()}
        pipe = self.redis.pipeline()
        pipe.delete(self.images_key)
        pipe.hset(self.images_key, mapping=rows)
        pipe.execute()

    def images(self) -> dict[str, tuple[S3Ref, int]]:
        """Vendor filename -> (object, size)."""
        rows = {name: json.loads(raw) for name, raw in self.redis.hgetall(self.images_key).items()}
        return {name: (parse_ref(row["uri"]), int(row["size"])) for name, row in rows.items()}

    def image_size(self, filename: str) -> int:
        return int(json.loads(self.redis.hget(self.images_key, filename))["size"])

    def delivered(self) -> dict[str, dict]:
        return {asset: json.loads(raw) for asset, raw in self.redis.hgetall(self.assets_key).items()}

    def record_delivery(self, asset: str, delivered: dict) -> None:
        self.redis.hset(self.assets_key, asset, json.dumps(delivered))

    def append_console(self, lines: list[str], offset: int) -> None:
        """The lines and the offset after them in one MULTI: a crash never appends lines twice."""
        pipe = self.redis.pipeline()
        pipe.rpush(f"{job_key(self.job_id)}:console", *lines)  # the ledger's console list
        pipe.hset(self.state_key, "console_offset", offset)
        pipe.execute()

    # --- what belongs to it at the vendor ---
    def claim(self, kind: str, created: dict) -> bool:
        """True when the project or task (`kind`) is this job's, now or already: each is one job's only.
        The key holds the creation time too, so an id the vendor hands out again (a reset server,
        a restored database) is a new claim."""
        key = f"gq:dronemapper:claim:{kind}:{created['id']}@{created.get('created_at', '')}"
        self.redis.set(key, self.job_id, nx=True, ex=RECORD_TTL_SECONDS)
        return self.redis.get(key) == self.job_id

    def claim_stop(self, action: str) -> bool:
        """Note that the vendor task is being stopped (`action`): False when it was stopped, or when
        another stopper (the cancel job, the poller) claimed it less than one vendor call's time budget
        ago. An older claim is taken again: its stopper died before its call was over (SIGKILL).
        Stopping twice is harmless (a cancel or remove repeated stops the same task, and one gone
        already answers NotFound, which the stopper takes as stopped); the claim keeps two live
        stoppers from both calling, and a slow live one is at worst joined by a second call."""
        claim = self.redis.register_script(_CLAIM_STOP)
        return bool(claim(keys=[self.state_key], args=[action, time.time(), get_settings().call_retry_seconds]))

    def stopped(self) -> None:
        """The stop call was made: the claim stays as the record of what was done, and no longer expires."""
        self.redis.hdel(self.state_key, "stop_claimed_at")

    def release_stop(self) -> None:
        self.redis.hdel(self.state_key, "stop", "stop_claimed_at")

    # --- the poller's care ---
    def track(self) -> None:
        self.redis.sadd(ACTIVE_KEY, self.job_id)

    def is_tracked(self) -> bool:
        return bool(self.redis.sismember(ACTIVE_KEY, self.job_id))

    def retire(self) -> None:
        """A finished survey leaves the poller's care; its records expire with its ledger record."""
        self.redis.srem(ACTIVE_KEY, self.job_id)
        if not is_finished(self.job_id):
            self.track()  # a restart came in between: keep following it
            return
        for key in (self.state_key, self.images_key, self.assets_key):
            self.redis.expire(key, RECORD_TTL_SECONDS)

    def reopen(self) -> None:
        """Follow the restarted vendor task from its start: a fresh console offset (the vendor's
        console starts again), no delivered assets, no stop, a new status read."""
        pipe = self.redis.pipeline()
        for key in (self.state_key, self.images_key, self.assets_key):
            pipe.persist(key)
        pipe.delete(self.assets_key)
        pipe.hdel(self.state_key, "stop", "stop_claimed_at", "status", "last_error", "seen", "console_seen",
                  "available_assets")
        pipe.execute()
        now = time.time()
        self.set(since=now, console_offset=0, step=PROCESSING, step_at=now)
