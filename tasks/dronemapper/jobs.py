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
Each image's outcome is recorded once the vendor confirmed its size, so a redelivered upload resumes.
"""
from __future__ import annotations

from typing import Any

from runtime import PENDING, JobContext, task
from services.storage import prefix_ref
from tasks.dronemapper import control, delivery, poller, survey
from tasks.dronemapper.records import COMMIT, DELIVER, FINISH, SEND, STEPS, SURVEY_JOB, UPLOAD_TASK


@task(SURVEY_JOB, kind="job")
def process_survey(job: JobContext, images: str, project: int | str | None = None, project_name: str | None = None,
                   name: str | None = None, options: dict | list | None = None, assets: list[str] | None = None,
                   output: str | None = None, max_parallel_uploads: int | None = None) -> Any:
    """Process the survey under an S3 prefix at DroneMapper and deliver its assets to S3."""
    survey.start(job, prefix_ref(images, "images"), int(project) if project is not None else None, project_name,
                 name, options, output, max_parallel_uploads)
    return PENDING  # the uploads, the poller and delivery carry it on


upload = task(UPLOAD_TASK, kind="item", finish=survey.uploads_done,
              fails_job=survey.image_rejected)(survey.upload_image)
commit = task(kind="step", machine=STEPS, step=COMMIT)(survey.commit)
send = task(kind="step", machine=STEPS, step=SEND)(survey.send)
deliver = task(kind="step", machine=STEPS, step=DELIVER)(delivery.deliver)
finish = task(kind="step", machine=STEPS, step=FINISH)(delivery.finish)


@task("dronemapper.poll", kind="periodic", one_at_a_time=poller.POLL_LEASE_SECONDS, ignore_result=True)
def poll() -> dict:
    """Follow every survey in progress: status, progress and console of processing tasks, steps whose
    message was lost, and vendor tasks of surveys that ended meanwhile."""
    return poller.poll_cycle()


@task("dronemapper.cancel", kind="job")
def cancel(job: JobContext, job_id: str) -> dict:
    """Cancel a survey: its job ends canceled and its vendor task is canceled (or removed, before processing)."""
    return control.cancel(job, job_id)


@task("dronemapper.restart", kind="job")
def restart(job: JobContext, job_id: str, options: dict | list | None = None) -> dict:
    """Run a finished survey's vendor task again (with new options if given) and deliver its assets again."""
    return control.restart(job, job_id, options)


@task("dronemapper.remove", kind="job")
def remove(job: JobContext, job_id: str) -> dict:
    """Remove a survey's vendor task and its assets at the vendor (what was delivered to S3 stays);
    a survey still in progress ends canceled."""
    return control.remove(job, job_id)
