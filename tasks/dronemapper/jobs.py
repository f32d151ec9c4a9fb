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

import time
from typing import Any

from geoqueue import jobs
from tasks.dronemapper.client import client
from tasks.dronemapper.creation import created_project, task_for, task_name
from tasks.dronemapper.inputs import (
    check_assets,
    check_option_names,
    check_options,
    check_output,
    check_parallel,
    check_project_param,
    existing_project,
    find_images,
)
from tasks.dronemapper.poller import stop_at_vendor
from tasks.dronemapper.records import (
    CREATE,
    PROCESSING,
    SEND,
    STEP_PHASES,
    SURVEY_JOB,
    UPLOAD,
    UPLOAD_TASK,
    assets_key,
    dispatch_step,
    images_key,
    job_state,
    move_step,
    retire,
    save_images,
    set_state,
    state_key,
    track,
    vendor_id,
)
from tasks.dronemapper.survey import send_upload
from vendors.errors import NotFound, VendorError
from workers import app
from workers.fanout import Fanout
from workers.jobtask import PENDING, InvalidInput, JobContext, job_task
from workers.redis_client import get_ledger, get_redis
from workers.storage import get_store, prefix_ref


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
