"""DroneMapper jobs: a drone survey in S3 -> orthophoto, DSM and point cloud back in S3.

    dronemapper.process_survey  {"images": "s3://b/survey/", "project"?: 12, "project_name"?: "North field",
                                 "name"?: "flight 3", "options"?: {"dsm": true, ...},
                                 "assets"?: ["orthophoto.tif", "dsm.tif", "pointcloud.ply", "all.zip"],
                                 "output"?: "s3://b/out/", "max_parallel_uploads"?: 4}
    dronemapper.cancel          {"job_id": "<survey job id>"}
    dronemapper.restart         {"job_id": "<survey job id>", "options"?: {...}}
    dronemapper.remove          {"job_id": "<survey job id>"}

A survey, one task per arrow:

    process_survey       check images (>= 2 JPEGs, unique names), options and project; the project (given or
                         created once); the vendor task created once, empty (partial), before any upload
    -> transfer.upload   one task per image, `max_parallel_uploads` at a time, streamed from S3; retried per image
    -> commit            processing starts at the vendor
       (a server without WebODM's partial upload: transfer.send, one streamed multipart request)
    -> poll              beat, every 5 s: one request per project (the task list) or per task, whichever is fewer;
                         new console lines of moving tasks (a bounded number per cycle); progress. Never sleeps.
    -> transfer.deliver  COMPLETED: the last console lines, then each asset streamed from its download into S3
    -> finish            FAILED or CANCELED at the vendor: the last console lines, and the job ends

One vendor task per job: a marker is written just before the create call and the task id just after
it. A job that finds the marker without an id (its worker died in between) looks the task up by name
in the project before creating anything, and a claim key keeps two jobs from adopting the same task.
Images are recorded per image once the vendor confirmed their size, so a redelivered upload resumes.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import defaultdict
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

from botocore.exceptions import BotoCoreError, ClientError
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import LockError

from geoqueue import jobs
from geoqueue.routes import queue_for
from geoqueue.s3ref import S3Ref, parse_ref
from tasks.dronemapper_inputs import (
    check_assets,
    check_option_names,
    check_options,
    check_output,
    check_parallel,
    check_project_param,
    existing_project,
    find_images,
    s3_code,
)
from vendors.dronemapper import DroneMapperClient, PendingAction, Status
from vendors.errors import NotFound, TransientError, VendorError
from workers import app
from workers.fanout import Fanout
from workers.inputs import prefix_ref
from workers.jobtask import (
    PENDING,
    InvalidInput,
    JobCanceled,
    JobContext,
    JobError,
    JobTask,
    error_dict,
    fail,
    job_task,
    retry_or_raise,
)
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings
from workers.steps import Steps, grace_seconds, is_finished, report
from workers.storage import ObjectStore, get_store
from workers.token_cache import RedisTokenStore

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


# --- the vendor, configured from settings ---
def client(timeout: float | None = None) -> DroneMapperClient:
    s = get_settings()
    if not (s.dronemapper_username and s.dronemapper_password):
        raise VendorError("DroneMapper credentials are not configured (GEOQUEUE_DRONEMAPPER_USERNAME/_PASSWORD)",
                          vendor=VENDOR)
    secret = s.dronemapper_password.get_secret_value()
    return DroneMapperClient(s.dronemapper_url, s.dronemapper_username, secret,
                             token_store=RedisTokenStore(get_redis(), VENDOR, secret),
                             timeout=timeout or s.dronemapper_timeout)


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


# --- creating a project or a task exactly once ---
def vendor_time(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


def claim(kind: str, created: dict, job_id: str) -> bool:
    """True when the project or task is this job's (now or already); each is one job's only."""
    key = claim_key(kind, created)
    get_redis().set(key, job_id, nx=True, ex=jobs.RECORD_TTL_SECONDS)
    return get_redis().get(key) == job_id


def create_once(job_id: str, kind: str, create: Callable[[], dict],
                find: Callable[[float], Iterable[dict]]) -> str:
    """The id of the project or task (`kind`) this job created, creating it only if no earlier
    attempt did. A marker set just before the call tells a later attempt that a call may have
    reached the vendor without its answer reaching us; `find(since)` lists the candidates then."""
    r, key, marker = get_redis(), state_key(job_id), f"{kind}_create_at"
    recorded = r.hget(key, kind)
    if recorded:
        return recorded
    if not r.hsetnx(key, marker, time.time()):
        since = float(r.hget(key, marker) or 0) - CLOCK_SLACK_SECONDS
        for candidate in find(since):
            if claim(kind, candidate, job_id):
                r.hset(key, kind, str(candidate["id"]))
                log.warning("job %s: adopted %s %s that an interrupted attempt created", job_id, kind, candidate["id"])
                return str(candidate["id"])
        r.hset(key, marker, time.time())
    try:
        created = create()
    except VendorError as exc:
        if exc.status is not None and exc.status < 500:  # refused: nothing was created
            r.hdel(key, marker)
        raise
    claim(kind, created, job_id)
    r.hset(key, kind, str(created["id"]))
    return str(created["id"])


def created_project(job_id: str, vendor: DroneMapperClient, project_name: str | None) -> int:
    marker = f"created by geoqueue job {job_id}"

    def find(_since: float) -> Iterable[dict]:
        return vendor.list_projects(description=marker)

    name = project_name or f"geoqueue survey {job_id}"
    return int(create_once(job_id, "project", lambda: vendor.create_project(name, marker), find))


def task_name(job_id: str, name: str | None) -> str:
    return name or f"geoqueue-{job_id}"


def task_for(job_id: str, vendor: DroneMapperClient, project: int, name: str,
             create: Callable[[], dict]) -> str:
    def find(since: float) -> Iterable[dict]:
        return [t for t in vendor.list_tasks(project)
                if t.get("name") == name and vendor_time(t.get("created_at")) >= since]

    task_id = create_once(job_id, "task", create, find)
    track(job_id)  # again: a cancel may have retired the job meanwhile, and the poller must clean up this task
    return task_id


# --- streaming between S3 and the vendor ---
class S3Image:
    """An S3 object as a binary file-like that is opened on its first read and closed at its end
    (a single request holding hundreds of images keeps one open at a time). It rewinds by opening
    again, which is all the client asks of it when it resends after a token expired."""

    def __init__(self, store: ObjectStore, ref: S3Ref, size: int) -> None:
        self.store, self.ref, self.size = store, ref, size
        self._body = None
        self._position = 0

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise OSError("an S3 image can only be rewound to its start")
        self.close()
        self._position = 0
        return 0

    def read(self, n: int = -1) -> bytes:
        if self._position >= self.size:
            return b""
        try:
            if self._body is None:
                self._body = self.store.open(self.ref)
            data = self._body.read(n if n is not None and n >= 0 else None)
        except (BotoCoreError, ClientError) as exc:
            raise storage_error(self.ref, exc) from exc
        self._position += len(data)
        if not data or self._position >= self.size:
            self.close()
        return data

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None


class ChunkStream:
    """A read(n) over an iterator of chunks, for boto3's multipart upload: exactly n bytes
    until the end (S3 refuses parts under 5 MB but the last). Keeps an error the iterator raised,
    since boto3 may report it from its own threads under another type."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self.bytes_read = 0
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        while n is None or n < 0 or len(self._buffer) < n:
            try:
                chunk = next(self._chunks, None)
            except Exception as exc:
                self.error = exc
                raise
            if chunk is None:
                break
            self._buffer += chunk
        size = len(self._buffer) if n is None or n < 0 else min(n, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.bytes_read += len(data)
        return data


def storage_error(ref: S3Ref, exc: Exception) -> Exception:
    """A missing or unreadable object fails the job naming it; anything else is worth a retry."""
    if isinstance(exc, ClientError):
        return JobError(f"images: {ref} could not be read ({s3_code(exc)})", field="images")
    return TransientError(f"S3: {ref} could not be read ({type(exc).__name__})", vendor="s3")


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


# --- dronemapper.process_survey ---
@job_task(app, SURVEY_JOB)
def process_survey(job: JobContext, images: str, project: int | None = None, project_name: str | None = None,
                   name: str | None = None, options: dict | list | None = None, assets: list[str] | None = None,
                   output: str | None = None, max_parallel_uploads: int | None = None) -> Any:
    """Process the survey under an S3 prefix at DroneMapper and deliver its assets to S3."""
    prefix = prefix_ref(images, "images")
    project_id = check_project_param(project, project_name)
    chosen = check_options(options)
    check_assets(assets)
    parallel = check_parallel(max_parallel_uploads)
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise InvalidInput(f"name: {name!r} is not a task name", field="name")
    if resumed(job):
        return PENDING
    set_state(job.id, step=CREATE, step_at=time.time())
    job.progress("checking images")
    store = get_store()
    photos = find_images(store, prefix)
    check_output(store, output, job.id)
    vendor = client()
    check_option_names(vendor, chosen)
    if project_id is not None:
        existing_project(vendor, project_id)
    job.check_canceled()
    track(job.id)
    job.progress("preparing")
    if project_id is None:
        project_id = created_project(job.id, vendor, project_name)
    save_images(job.id, photos)
    set_state(job.id, images=len(photos), project=project_id)
    if not vendor.supports_partial_upload():
        set_state(job.id, flow="single")
        dispatch_step(job.id, SEND, CREATE)
        return PENDING
    set_state(job.id, flow="partial")
    title = task_name(job.id, name)
    task_for(job.id, vendor, project_id, title,
             lambda: vendor.create_task(project_id, partial=True, name=title, options=chosen))
    job.check_canceled()
    job.ledger.transition(job.id, jobs.RUNNING, phase=STEP_PHASES[UPLOAD], done=0, total=len(photos))
    move_step(job.id, UPLOAD, CREATE)
    Fanout(get_redis(), job.ledger).start(job.id, sorted(photos), UPLOAD_TASK, parallel, send_upload)
    return PENDING


def resumed(job: JobContext) -> bool:
    """The entry task ran again (redelivered) after the job went on: show the job where it is."""
    step = job_state(job.id).get("step")
    if step in (None, CREATE):
        return False
    if step == PROCESSING:
        job.ledger.transition(job.id, jobs.WAITING, phase="processing")
    else:
        job.ledger.transition(job.id, jobs.RUNNING, phase=STEP_PHASES[step])
    if step == UPLOAD:
        Fanout(get_redis(), job.ledger).fill(job.id, send_upload)
    return True


# --- uploads: the partial flow, one task per image ---
def send_upload(job_id: str, item: str) -> None:
    app.send_task(UPLOAD_TASK, kwargs={"job_id": job_id, "item": item}, queue=queue_for(UPLOAD_TASK))


@app.task(bind=True, base=JobTask, name=UPLOAD_TASK)
def upload(self, job_id: str, item: str) -> dict:
    """Upload one image (the vendor filename `item`) to the job's partial task; safe to run again."""
    ledger = get_ledger()
    job = ledger.get(job_id)
    if job is None or job.finished:
        return {"job_id": job_id, "item": item, "skipped": True}
    fanout = Fanout(get_redis(), ledger)
    if ledger.item_is_recorded(job_id, item):  # an earlier run recorded it, then died: keep the window moving
        finished = fanout.finish_item(job_id, item, ledger.items(job_id)[item], send_upload)
        if finished:
            dispatch_step(job_id, COMMIT, UPLOAD)
        return {"job_id": job_id, "item": item, "skipped": True}
    state = job_state(job_id)
    ref, size = image_record(get_redis().hget(images_key(job_id), item))
    error = None
    try:
        upload_one(state, item, ref, size)
        outcome = {"state": "succeeded", "image": ref.uri, "bytes": size}
    except SoftTimeLimitExceeded:
        raise self.retry(countdown=1, max_retries=get_settings().max_retries)
    except TransientError as exc:
        retry_or_raise(self, exc)
        error = exc
    except (VendorError, JobError) as exc:
        error = exc
    if error is not None:
        outcome = {"state": "failed", "image": ref.uri, "error": error_dict(error)}
    finished = fanout.finish_item(job_id, item, outcome, send_upload)
    report(self, job_id, STEP_PHASES[UPLOAD], ledger.finished_count(job_id), int(state["images"]))
    if error is not None:
        fail(self, job_id, ImageRejected(f"images: {ref} ({item}) was not accepted: {error}", field="images",
                                         image=ref.uri, cause=error_dict(error)))
    if finished:
        dispatch_step(job_id, COMMIT, UPLOAD)
    return {"job_id": job_id, "item": item, "state": outcome["state"]}


def upload_one(state: dict, filename: str, ref: S3Ref, size: int) -> None:
    image = S3Image(get_store(), ref, size)
    try:
        answer = client().upload_image(int(state["project"]), state["task"], filename, image, size)
    finally:
        image.close()
    stored = (answer or {}).get("uploaded", {}).get(filename)
    if stored != size:
        raise TransientError(f"{VENDOR}: {filename}: the vendor stored {stored} of {size} bytes", vendor=VENDOR)


# --- steps after the uploads: one task per step, run while the job is at that step ---
def step_task(name: str, step: str):
    """Register `fn(task, job, state)` as the task of `step`. It runs only while the job is at that
    step, one run at a time: a late duplicate (redelivered, re-sent by the poller) finds nothing to do."""

    def register(fn: Callable[[Any, jobs.Job, dict], None]):
        def run(self, job_id: str) -> dict:
            job = get_ledger().get(job_id)
            if job is None or job.finished or job_state(job_id).get("step") != step:
                return {"job_id": job_id, "step": step, "skipped": True}
            busy = get_redis().lock(f"{state_key(job_id)}:busy", timeout=get_settings().task_time_limit,
                                    blocking=False)
            if not busy.acquire():
                return {"job_id": job_id, "step": step, "skipped": True}
            try:
                fn(self, job, job_state(job_id))
            except JobCanceled:
                return {"job_id": job_id, "step": step, "canceled": True}
            except SoftTimeLimitExceeded:
                raise self.retry(countdown=1, max_retries=get_settings().max_retries)
            except TransientError as exc:
                retry_or_raise(self, exc)
                fail(self, job_id, exc)
            except (VendorError, JobError) as exc:
                fail(self, job_id, exc)
            except ClientError as exc:
                fail(self, job_id, JobError(f"S3 refused a request ({s3_code(exc)}): {exc}"))
            except BotoCoreError as exc:
                retry_or_raise(self, TransientError(f"S3: {exc}", vendor="s3"))
                fail(self, job_id, exc)
            finally:
                with contextlib.suppress(LockError):
                    busy.release()
            return {"job_id": job_id, "step": step}

        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return app.task(bind=True, base=JobTask, name=name)(run)

    return register


@step_task(STEP_TASKS[COMMIT], COMMIT)
def commit(task, job: jobs.Job, state: dict) -> None:
    """Every image is at the vendor: start processing (committing twice is harmless)."""
    report(task, job.id, STEP_PHASES[COMMIT])
    answer = client().commit(int(state["project"]), state["task"])
    held = answer.get("images_count")
    if held is not None and int(held) != int(state["images"]):
        raise JobError(f"images: DroneMapper holds {held} images of task {state['task']} "
                       f"where {state['images']} were uploaded")
    Fanout(get_redis(), get_ledger()).close(job.id)
    begin_processing(job.id)


@step_task(STEP_TASKS[SEND], SEND)
def send(task, job: jobs.Job, state: dict) -> None:
    """A server without partial uploads: the task is created by one multipart request that streams
    every image from S3, one after the other."""
    vendor, store = client(), get_store()
    project, params = int(state["project"]), job.params
    title = task_name(job.id, params.get("name"))
    photos = stored_images(job.id)
    shown = {"at": 0.0}

    def progress(sent: int, total: int) -> None:
        if time.monotonic() - shown["at"] >= 1.0:
            shown["at"] = time.monotonic()
            if is_finished(job.id):
                raise JobCanceled(job.id)  # aborts the request: the vendor creates nothing
            report(task, job.id, STEP_PHASES[SEND] + " (MiB)", sent // MiB, total // MiB)

    def create() -> dict:
        images = [(filename, S3Image(store, ref, size), size) for filename, (ref, size) in sorted(photos.items())]
        return vendor.create_task(project, images, options=check_options(params.get("options")), name=title,
                                  progress=progress)

    report(task, job.id, STEP_PHASES[SEND])
    task_for(job.id, vendor, project, title, create)
    begin_processing(job.id)


def begin_processing(job_id: str) -> None:
    """The vendor has every image and processes them: from now on the poller follows the task."""
    set_state(job_id, committed=1, since=time.time(), console_offset=0, step=PROCESSING, step_at=time.time())
    get_ledger().transition(job_id, jobs.WAITING, phase="processing: queued", done=0, total=100)
    track(job_id)


# --- the poller: beat sends dronemapper.poll every few seconds ---
@app.task(bind=True, base=JobTask, name="dronemapper.poll", ignore_result=True)
def poll(self) -> dict:
    """Follow every survey in progress: status, progress and console of processing tasks, steps whose
    message was lost, and vendor tasks of jobs canceled meanwhile. Never sleeps."""
    lock = get_redis().lock(POLL_LOCK_KEY, timeout=POLL_LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return {"skipped": "another poll cycle is running"}
    try:
        return poll_cycle(self)
    finally:
        with contextlib.suppress(LockError):
            lock.release()


def poll_cycle(task) -> dict:
    began = time.time()
    ledger = get_ledger()
    processing = []
    for job_id in sorted(get_redis().smembers(ACTIVE_KEY)):
        job, state = ledger.get(job_id), job_state(job_id)
        if job is None:
            get_redis().srem(ACTIVE_KEY, job_id)
        elif job.finished:
            wind_down(job, state)
        elif state.get("step") == PROCESSING:
            processing.append((job, state))
        else:
            keep_moving(job.id, state)
    if not processing:
        return {"processing": 0, "status_requests": 0, "console_requests": 0}
    vendor = client(timeout=POLL_CALL_TIMEOUT)
    requests_made = count_requests(vendor)
    tasks = read_tasks(vendor, processing)
    status_requests = requests_made()
    moving = [m for job, state in processing
              if (m := follow(task, job, state, tasks, began)) is not None]
    read_consoles(vendor, moving)
    console_requests = requests_made() - status_requests
    log.info("dronemapper poll: %d processing, %d status and %d console requests",
             len(processing), status_requests, console_requests)
    return {"processing": len(processing), "status_requests": status_requests, "console_requests": console_requests}


def count_requests(vendor: DroneMapperClient) -> Callable[[], int]:
    """A counter of the HTTP requests the client makes from now on."""
    made = [0]

    def count(response, *_args, **_kwargs):
        made[0] += 1

    vendor.session.hooks["response"].append(count)
    return lambda: made[0]


def vendor_id(value: str) -> int | str:
    """A task id as the vendor gave it: an int in the doc, a UUID in current WebODM."""
    return int(value) if value.isdigit() else value


def task_ref(state: dict) -> str:
    return f"{state['project']}/{state['task']}"


def read_tasks(vendor: DroneMapperClient, processing: list) -> dict[str, dict | None]:
    """Each processing task by "project/task": one list per project following several, one get for
    a lone task. None marks a task (or project) the vendor no longer has; a failed read leaves it out."""
    by_project: dict[int, list[str]] = defaultdict(list)
    for _job, state in processing:
        by_project[int(state["project"])].append(state["task"])
    found: dict[str, dict | None] = {}
    for project, task_ids in by_project.items():
        try:
            if len(task_ids) > 1:
                listed = {str(t["id"]): t for t in vendor.list_tasks(project)}
                found.update({f"{project}/{t}": listed.get(t) for t in task_ids})
            else:
                found[f"{project}/{task_ids[0]}"] = vendor.get_task(project, task_ids[0])
        except NotFound:
            found.update({f"{project}/{t}": None for t in task_ids})
        except VendorError as exc:
            log.info("dronemapper poll: tasks of project %s unknown this cycle (%s)", project, exc)
    return found


def code_name(kind: type, code: int) -> str:
    try:
        return kind(code).name.lower()
    except ValueError:
        return str(code)


def phase_for(status: int | None, pending: int | None) -> str:
    if pending is not None:
        return f"processing: {code_name(PendingAction, pending)} pending"
    return f"processing: {code_name(Status, status)}" if status is not None else "processing: queued"


def follow(task, job: jobs.Job, state: dict, tasks: dict, began: float) -> tuple | None:
    """Act on one task's status; returns (job, state, signature) when its console may have grown."""
    if task_ref(state) not in tasks or float(state.get("since") or 0) > began:
        return None  # unknown this cycle, or committed/restarted after the read began
    found = tasks[task_ref(state)]
    if found is None:
        gone = TaskGone(f"DroneMapper task {state['task']} of project {state['project']} no longer exists "
                        "(removed at the vendor)", project=int(state["project"]), task=vendor_id(state["task"]))
        get_ledger().transition(job.id, jobs.FAILED, error=gone.to_dict())
        retire(job.id)
        return None
    status, pending = found.get("status"), found.get("pending_action")
    progress = float(found.get("running_progress") or 0)
    signature = f"{status}:{pending}:{progress}:{found.get('processing_time')}"
    if signature != state.get("seen"):
        set_state(job.id, seen=signature)
        report(task, job.id, phase_for(status, pending), round(progress * 100), 100)
    if pending is not None:
        return None  # until the action is done the status is the old one (a restarting task says FAILED)
    if status == Status.COMPLETED:
        set_state(job.id, available_assets=json.dumps(found.get("available_assets") or []),
                  processing_time=found.get("processing_time") or -1)
        dispatch_step(job.id, DELIVER, PROCESSING)
    elif status in (Status.FAILED, Status.CANCELED):
        set_state(job.id, status=status, last_error=found.get("last_error") or "")
        dispatch_step(job.id, FINISH, PROCESSING)
    elif status == Status.RUNNING and signature != state.get("console_seen"):
        return job, state, signature
    return None


def read_consoles(vendor: DroneMapperClient, moving: list) -> None:
    """New console lines of the moving tasks read longest ago, up to the per-cycle budget."""
    moving.sort(key=lambda m: float(m[1].get("console_at") or 0))
    for job, state, signature in moving[:CONSOLE_READS_PER_CYCLE]:
        try:
            sync_console(vendor, job.id, state)
        except VendorError as exc:
            log.info("dronemapper poll: console of job %s unknown this cycle (%s)", job.id, exc)
            continue
        set_state(job.id, console_seen=signature, console_at=time.time())


def sync_console(vendor: DroneMapperClient, job_id: str, state: dict) -> int:
    """Append the console lines after the job's offset; the lines and the new offset in one write."""
    offset = int(state.get("console_offset") or 0)
    lines = vendor.output(int(state["project"]), state["task"], line=offset)
    if lines:
        pipe = get_redis().pipeline()  # MULTI: a crash never leaves lines appended twice
        pipe.rpush(f"{jobs.job_key(job_id)}:console", *lines)  # the ledger's console list
        pipe.hset(state_key(job_id), "console_offset", offset + len(lines))
        pipe.execute()
    state["console_offset"] = str(offset + len(lines))
    return len(lines)


def keep_moving(job_id: str, state: dict) -> None:
    """Re-send a step whose message was lost, and start processing once every image is in."""
    step = state.get("step")
    if step == UPLOAD and Fanout(get_redis(), get_ledger()).complete(job_id):
        dispatch_step(job_id, COMMIT, UPLOAD)  # the last upload's worker died before it could
    elif step in STEP_TASKS and time.time() - float(state.get("step_at") or 0) > grace_seconds():
        set_state(job_id, step_at=time.time())
        send_step(job_id, step)


def wind_down(job: jobs.Job, state: dict) -> None:
    """A job that ended on our side: stop its vendor task if it still runs for nothing, then let go."""
    try:
        stop_at_vendor(job, state)
    except VendorError as exc:
        log.info("dronemapper poll: could not stop the vendor task of job %s (%s); next cycle", job.id, exc)
        return
    retire(job.id)


def stop_at_vendor(job: jobs.Job, state: dict) -> str | None:
    """Cancel the processing task of a canceled job; remove the uncommitted (partial) task of a job
    that ended before processing. Once per job; the action taken, if any."""
    if not state.get("task") or state.get("removed"):
        return None
    committed = bool(state.get("committed"))
    if committed and not (job.state == jobs.CANCELED and state.get("step") == PROCESSING):
        return None
    action = "cancel" if committed else "remove"
    r = get_redis()
    if not is_finished(job.id):
        return None  # restarted since this job was read
    if not r.hsetnx(state_key(job.id), "stop", action):
        return r.hget(state_key(job.id), "stop")
    vendor = client()
    try:
        getattr(vendor, action)(int(state["project"]), state["task"])
    except NotFound:
        pass
    except VendorError:
        r.hdel(state_key(job.id), "stop")
        raise
    return action


# --- the end of processing ---
@step_task(STEP_TASKS[DELIVER], DELIVER)
def deliver(task, job: jobs.Job, state: dict) -> None:
    """COMPLETED: the last console lines, then each requested asset streamed from its download into S3."""
    vendor, r = client(), get_redis()
    sync_console(vendor, job.id, state)
    wanted = check_assets(job.params.get("assets"))
    available = json.loads(state.get("available_assets") or "[]")
    target = prefix_ref(job.params["output"], "output") if job.params.get("output") else S3Ref(
        get_settings().s3_bucket, f"dronemapper/{job.id}/")
    deliverable = [a for a in wanted if a in available]
    delivered = {k: json.loads(v) for k, v in r.hgetall(assets_key(job.id)).items()}
    for asset in deliverable:
        if asset in delivered:
            continue
        report(task, job.id, f"{STEP_PHASES[DELIVER]}: {asset}", len(delivered), len(deliverable))
        delivered[asset] = deliver_asset(vendor, state, asset, target.child(asset))
        r.hset(assets_key(job.id), asset, json.dumps(delivered[asset]))
    result = {
        "project": int(state["project"]), "task": vendor_id(state["task"]), "images": int(state["images"]),
        "upload": "partial" if state.get("flow") == "partial" else "single request",
        "assets": {a: delivered[a] for a in wanted if a in delivered},
        "missing": [a for a in wanted if a not in available],
        "processing_time_ms": int(state.get("processing_time") or -1),
        "console_lines": int(state.get("console_offset") or 0),
    }
    get_ledger().transition(job.id, jobs.SUCCEEDED, result=result, done=len(delivered), total=len(delivered))
    retire(job.id)


def deliver_asset(vendor: DroneMapperClient, state: dict, asset: str, target: S3Ref) -> dict:
    """One asset from the vendor's download into S3 by multipart upload, its size checked twice:
    the download against its Content-Length, the stored object against the bytes we read."""
    stream = ChunkStream(vendor.iter_asset(int(state["project"]), state["task"], asset))
    suffix = asset[asset.rfind("."):]
    try:
        get_store().upload_stream(target, stream, CONTENT_TYPES.get(suffix, "application/octet-stream"))
    except Exception:
        if stream.error is not None:
            raise stream.error from None
        raise
    stored = get_store().size(target)
    if stored != stream.bytes_read:
        raise TransientError(f"{target} holds {stored} bytes where {stream.bytes_read} were downloaded", vendor=VENDOR)
    return {"uri": target.uri, "bytes": stored}


@step_task(STEP_TASKS[FINISH], FINISH)
def finish(task, job: jobs.Job, state: dict) -> None:
    """FAILED or CANCELED at the vendor: the last console lines, then the job ends the same way."""
    sync_console(client(), job.id, state)
    ledger = get_ledger()
    if int(state["status"]) == Status.CANCELED:
        ledger.transition(job.id, jobs.CANCELED, error={
            "type": "Canceled", "message": f"DroneMapper task {state['task']} was canceled at the vendor"})
    else:
        last_error = state.get("last_error") or "no error message"
        failure = ProcessingFailed(
            f"DroneMapper task {state['task']} failed: {last_error}", vendor=VENDOR, vendor_message=last_error,
            project=int(state["project"]), task=vendor_id(state["task"]), console_tail=ledger.console(job.id, -CONSOLE_TAIL))
        ledger.transition(job.id, jobs.FAILED, error=failure.to_dict())
    retire(job.id)


# --- cancel, restart, remove: jobs addressed by the survey's job id ---
def survey_job(job_id: Any) -> jobs.Job:
    target = get_ledger().get(str(job_id)) if isinstance(job_id, str) and job_id else None
    if target is None:
        raise InvalidInput(f"job_id: no job {job_id!r}", field="job_id")
    if target.name != SURVEY_JOB:
        raise InvalidInput(f"job_id: job {job_id} is a {target.name} job, not {SURVEY_JOB}", field="job_id")
    return target


@job_task(app, "dronemapper.cancel")
def cancel(job: JobContext, job_id: str) -> dict:
    """Cancel a survey: its job ends canceled and its vendor task is canceled (or removed, before processing)."""
    target = survey_job(job_id)
    if target.finished:
        raise InvalidInput(f"job_id: job {job_id} has already {target.state}", field="job_id")
    get_ledger().transition(job_id, jobs.CANCELED, error={"type": "Canceled", "message": f"canceled by job {job.id}"})
    action = stop_at_vendor(get_ledger().get(job_id), job_state(job_id))
    retire(job_id)
    return {"job_id": job_id, "canceled": True, "vendor_action": action}


@job_task(app, "dronemapper.restart")
def restart(job: JobContext, job_id: str, options: dict | list | None = None) -> dict:
    """Run a finished survey's vendor task again (with new options if given) and deliver its assets again."""
    target = survey_job(job_id)
    state = job_state(job_id)
    chosen = check_options(options) if options is not None else None
    if not target.finished:
        raise InvalidInput(f"job_id: job {job_id} is still {target.state}; cancel it before restarting", field="job_id")
    if not state.get("committed") or state.get("removed"):
        raise InvalidInput(f"job_id: job {job_id} has no DroneMapper task to restart "
                           f"({'it was removed' if state.get('removed') else 'it never reached processing'}); "
                           "submit the survey again", field="job_id")
    vendor = client()
    if chosen:
        check_option_names(vendor, chosen)
    # This job's own marker: a redelivered restart job must not restart the vendor task twice.
    if get_redis().hsetnx(state_key(job.id), "restart_at", time.time()):
        try:
            vendor.restart(int(state["project"]), state["task"], options=chosen)
        except VendorError:
            get_redis().hdel(state_key(job.id), "restart_at")
            raise
    reopen(job_id, job.id)
    return {"job_id": job_id, "project": int(state["project"]), "task": vendor_id(state["task"]), "restarted": True,
            "options": chosen}


def reopen(job_id: str, by: str) -> None:
    """The survey job follows its restarted vendor task from the start: a fresh console offset
    (the vendor's console starts again), no delivered assets, no stop, a new status read."""
    r = get_redis()
    pipe = r.pipeline()
    for key in (state_key(job_id), images_key(job_id), assets_key(job_id)):
        pipe.persist(key)
    pipe.delete(assets_key(job_id))
    pipe.hdel(state_key(job_id), "stop", "status", "last_error", "seen", "console_seen", "available_assets")
    pipe.execute()
    set_state(job_id, since=time.time(), console_offset=0, step=PROCESSING, step_at=time.time())
    get_ledger().append_console(job_id, [f"[geoqueue] restarted by job {by}"])
    get_ledger().transition(job_id, jobs.WAITING, force=True, phase="processing: restart pending", done=0, total=100,
                            error=None, result=None)
    track(job_id)


@job_task(app, "dronemapper.remove")
def remove(job: JobContext, job_id: str) -> dict:
    """Remove a survey's vendor task and its assets at the vendor (what was delivered to S3 stays);
    a survey still in progress ends canceled."""
    target = survey_job(job_id)
    state = job_state(job_id)
    if not state.get("task"):
        raise InvalidInput(f"job_id: job {job_id} has no DroneMapper task", field="job_id")
    if not target.finished:
        get_ledger().transition(job_id, jobs.CANCELED, error={"type": "Canceled", "message": f"removed by job {job.id}"})
    set_state(job_id, removed=1)  # the poller leaves a removed task alone
    try:
        client().remove(int(state["project"]), state["task"])
    except NotFound:
        pass
    retire(job_id)
    return {"job_id": job_id, "project": int(state["project"]), "task": vendor_id(state["task"]), "removed": True}
