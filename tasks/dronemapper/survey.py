"""A survey to the vendor: its inputs checked, its project and task created once, its images
uploaded (one item task per image, or one request where the server has no partial flow), then
processing started, which the poller follows from there."""
from __future__ import annotations

import time

from config.settings import get_settings
from geoqueue.job_record import RUNNING, WAITING
from geoqueue.s3ref import S3Ref, parse_ref
from runtime import JobContext, JobError
from runtime.fanout import Fanout
from services.storage import get_store
from tasks.dronemapper.account import client, partial_upload_supported
from tasks.dronemapper.creation import project_for, task_for, task_name
from tasks.dronemapper.inputs import check_options, check_output, existing_project, find_images
from tasks.dronemapper.records import (
    COMMIT,
    CREATE,
    PROCESSING,
    SEND,
    STEP_PHASES,
    STEPS,
    UPLOAD,
    UPLOAD_TASK,
    VENDOR,
    ImageRejected,
    MiB,
    Survey,
)
from tasks.dronemapper.streams import S3Image
from vendors.errors import TransientError


def start(job: JobContext, images: S3Ref, project: int | None, project_name: str | None, name: str | None,
          options: dict | list | None, output: str | None, max_parallel_uploads: int | None) -> None:
    """Check what needs S3 or the vendor, then the project and the task, each created once; the
    uploads start. Safe to run again: a redelivered start picks up where the job is."""
    survey = Survey(job.id)
    parallel = max_parallel_uploads or get_settings().dronemapper_max_parallel_uploads
    step = survey.state().get("step")
    if step == UPLOAD:
        start_uploads(job, parallel)  # the worker may have died before the uploads began
    if step not in (None, CREATE):
        return
    survey.set(step=CREATE, step_at=time.time())
    job.progress("checking images")
    store = get_store()
    photos = find_images(store, images)
    check_output(store, job.id, output)
    vendor = client()
    check_options(vendor, options)
    if project is not None:
        existing_project(vendor, project)
    job.check_canceled()
    survey.track()  # from here on the job may leave something at the vendor to clean up
    job.progress(STEP_PHASES[CREATE])
    if project is None:
        project = project_for(job.id, vendor, project_name)
    survey.save_images(photos)
    survey.set(images=len(photos), project=project)
    if not partial_upload_supported():
        survey.set(flow="single")
        STEPS.dispatch(job.id, SEND, CREATE)
        return
    survey.set(flow="partial")
    title = task_name(job.id, name)
    task_for(job.id, vendor, project, title, lambda: vendor.create_task(project, partial=True, name=title,
                                                                        options=options or {}))
    job.check_canceled()
    job.show(RUNNING, STEP_PHASES[UPLOAD], done=0, total=len(photos))
    STEPS.move(job.id, UPLOAD, CREATE)
    start_uploads(job, parallel)


def start_uploads(job: JobContext, parallel: int) -> None:
    """One item per image, named by its S3 reference; starting twice queues nothing twice."""
    items = sorted(ref.uri for ref, _size in Survey(job.id).images().values())
    Fanout().start(job.id, items, UPLOAD_TASK, parallel)


# --- the partial flow: one task per image, then commit ---
def upload_image(job: JobContext, item: str) -> dict:
    """One image to the job's partial task, streamed from S3; sending it again replaces it."""
    survey = Survey(job.id)
    ref = parse_ref(item)
    size = survey.image_size(ref.name)
    state = survey.state()
    image = S3Image(get_store(), ref, size)
    try:
        answer = client().upload_image(int(state["project"]), state["task"], ref.name, image, size)
    finally:
        image.close()
    stored = (answer or {}).get("uploaded", {}).get(ref.name)
    if stored != size:
        raise TransientError(f"{VENDOR}: {ref.name}: the vendor stored {stored} of {size} bytes", vendor=VENDOR)
    return {"image": ref.uri, "bytes": size}


def image_rejected(item: str, error: dict) -> ImageRejected:
    """An image the vendor did not take (after its retries) fails the survey, naming it."""
    return ImageRejected(f"images: {item} was not accepted: {error.get('message')}", field="images", image=item,
                         cause=error)


def uploads_done(job: JobContext) -> None:
    STEPS.dispatch(job.id, COMMIT, UPLOAD)


def commit(job: JobContext, state: dict) -> None:
    """Every image is at the vendor: start processing (committing twice is harmless)."""
    job.progress(STEP_PHASES[COMMIT])
    answer = client().commit(int(state["project"]), state["task"])
    held = answer.get("images_count")
    if held is not None and int(held) != int(state["images"]):
        raise JobError(f"images: DroneMapper holds {held} images of task {state['task']} "
                       f"where {state['images']} were uploaded", field="images")
    Fanout().close(job.id)
    begin_processing(job)


# --- a server without the partial flow: one request ---
def send(job: JobContext, state: dict) -> None:
    """The task is created by one multipart request that streams every image from S3, one after the other."""
    vendor, store, params = client(), get_store(), job.params
    project, title = int(state["project"]), task_name(job.id, params.get("name"))
    photos = Survey(job.id).images()
    shown = {"at": 0.0}

    def progress(sent: int, total: int) -> None:
        if time.monotonic() - shown["at"] >= 1.0:
            shown["at"] = time.monotonic()
            job.check_canceled()  # aborts the request: the vendor creates nothing
            job.progress(STEP_PHASES[SEND] + " (MiB)", sent // MiB, total // MiB)

    def create() -> dict:
        images = [(filename, S3Image(store, ref, size), size) for filename, (ref, size) in sorted(photos.items())]
        return vendor.create_task(project, images, options=params.get("options") or {}, name=title, progress=progress)

    job.progress(STEP_PHASES[SEND])
    task_for(job.id, vendor, project, title, create)
    begin_processing(job)


def begin_processing(job: JobContext) -> None:
    """The vendor has every image and processes them: from now on the poller follows the task."""
    survey = Survey(job.id)
    survey.set(committed=1, since=time.time(), console_offset=0, step=PROCESSING, step_at=time.time())
    job.show(WAITING, "processing: queued", done=0, total=100)
    survey.track()
