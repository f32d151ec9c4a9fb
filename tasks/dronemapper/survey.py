"""A survey's images to the vendor (the partial flow, one task per image, or one request), then processing."""
from __future__ import annotations

import time

from celery.exceptions import SoftTimeLimitExceeded

from geoqueue import jobs
from geoqueue.routes import queue_for
from geoqueue.s3ref import S3Ref
from tasks.dronemapper.client import client
from tasks.dronemapper.creation import task_for, task_name
from tasks.dronemapper.inputs import check_options
from tasks.dronemapper.records import (
    COMMIT,
    PROCESSING,
    SEND,
    STEP_PHASES,
    STEP_TASKS,
    UPLOAD,
    UPLOAD_TASK,
    VENDOR,
    ImageRejected,
    MiB,
    dispatch_step,
    image_record,
    images_key,
    job_state,
    set_state,
    stored_images,
    track,
)
from tasks.dronemapper.steps import step_task
from tasks.dronemapper.streams import S3Image
from vendors.errors import TransientError, VendorError
from workers import app
from workers.fanout import Fanout
from workers.jobtask import JobCanceled, JobError, JobTask, error_dict, fail, retry_or_raise
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings
from workers.steps import is_finished, report
from workers.storage import get_store


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
