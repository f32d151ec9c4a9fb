"""Cancel, restart and remove: jobs addressed to a survey by its job id."""
from __future__ import annotations

from typing import Any

from config.redis_client import get_ledger
from geoqueue.job_record import CANCELED, WAITING, Job
from runtime import CutOff, InvalidInput, JobContext, Once, ending
from tasks.dronemapper.account import client
from tasks.dronemapper.inputs import check_options
from tasks.dronemapper.poller import wind_down
from tasks.dronemapper.records import SURVEY_JOB, Survey, vendor_id
from vendors.errors import NotFound


def survey_job(job_id: str) -> Job:
    target = get_ledger().get(job_id)
    if target is None:
        raise InvalidInput(f"job_id: no job {job_id!r}", field="job_id")
    if target.name != SURVEY_JOB:
        raise InvalidInput(f"job_id: job {job_id} is a {target.name} job, not {SURVEY_JOB}", field="job_id")
    return target


def cancel(job: JobContext, job_id: str) -> dict:
    target = survey_job(job_id)
    if target.finished and (target.error or {}).get("by") != job.id:  # by this job: a retry stops it again
        raise InvalidInput(f"job_id: job {job_id} has already {target.state}", field="job_id")
    ending.end_job(job_id, CANCELED, error={"type": "Canceled", "message": f"canceled by job {job.id}",
                                                  "by": job.id})
    return {"job_id": job_id, "canceled": True, "vendor_action": wind_down(job_id)}


def restart(job: JobContext, job_id: str, options: dict | list | None) -> dict:
    target, survey = survey_job(job_id), Survey(job_id)
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
    job.ledger.append_console(job_id, [f"[geoqueue] restarted by job {job.id}"])
    job.ledger.transition(job_id, WAITING, force=True, phase="processing: restart pending", done=0, total=100,
                          error=None, result=None)
    survey.track()  # only now: the poller would retire a survey it finds tracked and still finished
    return {"job_id": job_id, "project": project, "task": vendor_id(state["task"]), "restarted": True,
            "options": options}


def remove(job: JobContext, job_id: str) -> dict[str, Any]:
    target, survey = survey_job(job_id), Survey(job_id)
    state = survey.state()
    if not state.get("task"):
        raise InvalidInput(f"job_id: job {job_id} has no DroneMapper task", field="job_id")
    survey.set(removed=1)  # the poller leaves a removed task alone
    if not target.finished:
        ending.end_job(job_id, CANCELED, error={"type": "Canceled", "message": f"removed by job {job.id}"})
    try:
        client().remove(int(state["project"]), state["task"])
    except NotFound:
        pass  # gone already
    survey.retire()
    return {"job_id": job_id, "project": int(state["project"]), "task": vendor_id(state["task"]), "removed": True}
