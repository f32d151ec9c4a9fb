"""A survey's records in Redis, its steps, and the names they go by."""
from __future__ import annotations

import json
import logging
from typing import Any

from geoqueue import jobs
from geoqueue.s3ref import S3Ref, parse_ref
from workers.jobtask import JobError
from workers.redis_client import get_redis
from workers.steps import Steps, is_finished

log = logging.getLogger("geoqueue.dronemapper")

VENDOR = "dronemapper"
SURVEY_JOB = "dronemapper.process_survey"
# The doc's assets and WebODM's ASSETS_MAP names (facts/webodm.md §1), with the doc's pointcloud.ply.
CONTENT_TYPES = {".tif": "image/tiff", ".zip": "application/zip", ".png": "image/png", ".pdf": "application/pdf",
                 ".json": "application/json", ".geojson": "application/geo+json"}
POLL_CALL_TIMEOUT = 10.0        # a slow answer waits for the next cycle rather than holding this one
POLL_LOCK_SECONDS = 60
# Console lines cost one request per task; status costs one per project. Past this many moving
# tasks a cycle reads the consoles least recently read, and the rest follow in the next cycles.
CONSOLE_READS_PER_CYCLE = 20
CONSOLE_TAIL = 20               # lines of console quoted in the error of a failed task
CLOCK_SLACK_SECONDS = 300       # the vendor's clock against ours, when finding a task a cut-off call created
MiB = 1 << 20

ACTIVE_KEY = "gq:dronemapper:active"          # jobs in progress that the poller looks after
POLL_LOCK_KEY = "gq:dronemapper:poll-lock"

# Steps of a survey (the `step` field of its state hash).
CREATE, UPLOAD, SEND, COMMIT, PROCESSING, DELIVER, FINISH = (
    "create", "upload", "send", "commit", "processing", "deliver", "finish")
UPLOAD_TASK = "dronemapper.transfer.upload"
STEP_TASKS = {SEND: "dronemapper.transfer.send", COMMIT: "dronemapper.commit",
              DELIVER: "dronemapper.transfer.deliver", FINISH: "dronemapper.finish"}
STEP_PHASES = {CREATE: "preparing", UPLOAD: "uploading images", SEND: "uploading images (one request)",
               COMMIT: "starting processing", DELIVER: "delivering assets", FINISH: "finishing"}


class ProcessingFailed(JobError):
    kind = "ProcessingFailed"


class TaskGone(JobError):
    kind = "TaskGone"


class ImageRejected(JobError):
    kind = "ImageRejected"


# --- per-job records in Redis ---
def state_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:dronemapper"          # hash: step, project, task, flow, console_offset, ...


STEPS = Steps(state_key, STEP_TASKS)
move_step, send_step, dispatch_step = STEPS.move, STEPS.send, STEPS.dispatch


def images_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:dronemapper:images"   # hash: vendor filename -> {"key", "size"}


def assets_key(job_id: str) -> str:
    return f"{jobs.job_key(job_id)}:dronemapper:assets"   # hash: asset -> {"uri", "bytes"} once delivered


def claim_key(kind: str, created: dict) -> str:
    # string: the job that created this project/task. With its creation time, so that an id the
    # vendor hands out again (a reset sandbox, a restored database) is a new claim.
    return f"gq:dronemapper:claim:{kind}:{created['id']}@{created.get('created_at', '')}"


def job_state(job_id: str) -> dict[str, str]:
    return get_redis().hgetall(state_key(job_id))


def set_state(job_id: str, **fields: Any) -> None:
    get_redis().hset(state_key(job_id), mapping={k: str(v) for k, v in fields.items()})


def track(job_id: str) -> None:
    get_redis().sadd(ACTIVE_KEY, job_id)


def retire(job_id: str) -> None:
    """A finished job leaves the poller's care; its records expire with its ledger record."""
    r = get_redis()
    r.srem(ACTIVE_KEY, job_id)
    if not is_finished(job_id):
        r.sadd(ACTIVE_KEY, job_id)  # a restart came in between: keep following it
        return
    for key in (state_key(job_id), images_key(job_id), assets_key(job_id)):
        r.expire(key, jobs.RECORD_TTL_SECONDS)


def image_record(raw: str) -> tuple[S3Ref, int]:
    row = json.loads(raw)
    return parse_ref(row["uri"]), int(row["size"])


def stored_images(job_id: str) -> dict[str, tuple[S3Ref, int]]:
    return {name: image_record(raw) for name, raw in get_redis().hgetall(images_key(job_id)).items()}


def save_images(job_id: str, photos: dict[str, tuple[S3Ref, int]]) -> None:
    rows = {name: json.dumps({"uri": ref.uri, "size": size}) for name, (ref, size) in photos.items()}
    pipe = get_redis().pipeline()
    pipe.delete(images_key(job_id))
    pipe.hset(images_key(job_id), mapping=rows)
    pipe.execute()


def vendor_id(value: str) -> int | str:
    """A task id as the vendor gave it: an int in the doc, a UUID in current WebODM."""
    return int(value) if value.isdigit() else value
