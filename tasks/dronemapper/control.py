"""Cancel, restart and remove: jobs addressed to a survey by its job id, which is the app's own
(geoqueue/job_record.py): a control job reaches the surveys of its own app only, and another app's
survey is not found, as if it did not exist."""
from __future__ import annotations

from typing import Any

from config.redis_client import get_ledger
from geoqueue.job_record import CANCELED, WAITING, Job, app_of, own_id, stored_id
from runtime import CutOff, InvalidInput, JobContext, Once, ending
from tasks.dronemapper.account import client
from tasks.dronemapper.inputs import check_options
from tasks.dronemapper.poller import wind_down
from tasks.dronemapper.records import SURVEY_JOB, Survey, vendor_id
from vendors.errors import NotFound


def survey_job(control: JobContext, job_id: str) -> Job:
    """The survey `job_id` of the control job's own app, under its stored id."""
    target = get_ledger().get(stored_id(app_of(control.id), job_id))
    if target is None:
        raise InvalidInput(f"job_id: no job {job_id!r}", field="job_id")
    if target.name != SURVEY_JOB:
        raise InvalidInput(f"job_id: job {job_id} is a {target.name} job, not {SURVEY_JOB}", field="job_id")
    return target


def cancel(job: JobContext, job_id: str) -> dict:
    target, by = survey_job(job, job_id), own_id(job.id)
    if target.finished and (target.error or {}).get("by") != by:  # by this job: a retry stops it again
        raise InvalidInput(f"job_id: job {job_id} has already {target.state}", field="job_id")
    ending.end_job(target.id, CANCELED, error={"type": "Canceled", "message": f"canceled by job {by}", "by": by})
    return {"job_id": job_id, "canceled": True, "vendor_action": wind_down(target.id)}


def restart(job: JobContext, job_id: str, options: dict | list | None) -> dict:
    target = survey_job(job, job_id)
    survey = Survey(target.id)
    state = survey.state()
    if not target.finished:
        raise InvalidInput(f"job_id: job {job_id} is still {target.state}; cancel it before restarting", field="job_id")
    if not state.get("committed") or state.get("removed"):
        raise InvalidInput(f"job_id: job {job_id} has no DroneMapper task to restart "
                           f"({'it was removed' if state.get('removed') else 'it never reached processing'}); "
                           "submit the survey again", field="job_id")
    vendor = client()
    check_options(vendor, options)
    project = int(state["project"])
    try:
        Once(job.id).run("dronemapper:restart", lambda: vendor.restart(project, state["task"], options=options))
    except CutOff:
        pass  # an earlier attempt's restart got no answer: taken as made, never sent twice; the poller shows
    survey.reopen()
    job.ledger.append_console(target.id, [f"[geoqueue] restarted by job {own_id(job.id)}"])
    job.ledger.transition(target.id, WAITING, force=True, phase="processing: restart pending", done=0, total=100,
                          error=None, result=None)
    survey.track()  # only now: the poller would retire a survey it finds tracked and still finished
    return {"job_id": job_id, "project": project, "task": vendor_id(state["task"]), "restarted": True,
            "options": options}


def remove(job: JobContext, job_id: str) -> dict[str, Any]:
    target = survey_job(job, job_id)
    survey = Survey(target.id)
    state = survey.state()
    if not state.get("task"):
        raise InvalidInput(f"job_id: job {job_id} has no DroneMapper task", field="job_id")
    survey.set(removed=1)  # the poller leaves a removed task alone
    if not target.finished:
        ending.end_job(target.id, CANCELED, error={"type": "Canceled", "message": f"removed by job {own_id(job.id)}"})
    try:
        client().remove(int(state["project"]), state["task"])
    except NotFound:
        pass  # gone already
    survey.retire()
    return {"job_id": job_id, "project": int(state["project"]), "task": vendor_id(state["task"]), "removed": True}
