"""The poller: beat sends dronemapper.poll every few seconds, and one cycle follows every survey in
progress. Never sleeps.

- Processing tasks: one request per project (its task list) or per task, whichever is fewer; new
  console lines of moving tasks, a bounded number per cycle; progress. COMPLETED goes to delivery,
  FAILED or CANCELED to the finish step.
- Steps whose message was lost are sent again.
- Surveys that ended on our side (a producer's cancel, a failure before processing) have their
  vendor task stopped or removed, then leave the poller's care.

What the cycle does for one job runs under the guard for that job alone: a transient failure waits
for the next cycle; any other fails that job, never the cycle for the others.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from functools import partial
from typing import Any

from config import redaction
from config.redis_client import get_ledger
from config.settings import get_settings
from geoqueue.job_record import CANCELED, Job
from runtime import JobContext, liveness, on_job_end
from runtime.fanout import Fanout
from runtime.guard import polled
from tasks.dronemapper.account import POLL_REQUESTS, client, poll_client
from tasks.dronemapper.records import (
    COMMIT,
    DELIVER,
    FINISH,
    PROCESSING,
    STEPS,
    UPLOAD,
    Survey,
    TaskGone,
    log,
    stop_made,
    vendor_id,
)
from vendors.dronemapper.client import DroneMapperClient
from vendors.dronemapper.states import PendingAction, Status
from vendors.errors import NotFound

POLL_LEASE_SECONDS = 60
# Console lines cost one request per task; status costs one per project. Past this many moving
# tasks a cycle reads the consoles least recently read, and the rest follow in the next cycles.
CONSOLE_READS_PER_CYCLE = 20

WHERE = "dronemapper poll"
TaskReads = dict[str, Any]      # "project/task" -> the task, None (gone at the vendor) or the read's exception


def poll_cycle() -> dict:
    began, ledger = time.time(), get_ledger()
    processing: list[tuple[JobContext, dict]] = []
    for job_id in Survey.active():
        job, state = ledger.get(job_id), Survey(job_id).state()
        if job is None:
            Survey(job_id).retire()
        elif job.finished:
            polled(job_id, partial(wind_down, job_id), WHERE)
        elif state.get("step") == PROCESSING:
            processing.append((JobContext(job), state))
        else:
            polled(job_id, partial(keep_moving, job_id, state), WHERE)
    if not processing:
        return {"processing": 0, "status_requests": 0, "console_requests": 0}
    before = POLL_REQUESTS.made
    tasks = read_tasks(processing)
    status_requests = POLL_REQUESTS.made - before
    moving = [m for job, state in processing if (m := polled(job.id, partial(follow, job, state, tasks, began), WHERE))]
    liveness.looked_at([job.id for job, _state in processing])
    read_consoles(moving)
    console_requests = POLL_REQUESTS.made - before - status_requests
    log.info("dronemapper poll: %d processing, %d status and %d console requests",
             len(processing), status_requests, console_requests)
    return {"processing": len(processing), "status_requests": status_requests, "console_requests": console_requests}


def task_ref(state: dict) -> str:
    return f"{state['project']}/{state['task']}"


def read_tasks(processing: list[tuple[JobContext, dict]]) -> TaskReads:
    """Each processing task by "project/task": one list per project following several, one get for
    a lone task. A read that failed is handed to each of its jobs, whose guard decides."""
    by_project: dict[int, list[str]] = defaultdict(list)
    for _job, state in processing:
        by_project[int(state["project"])].append(state["task"])
    found: TaskReads = {}
    for project, task_ids in by_project.items():
        try:
            vendor = poll_client()
            if len(task_ids) > 1:
                listed = {str(t["id"]): t for t in vendor.list_tasks(project)}
                found.update({f"{project}/{t}": listed.get(t) for t in task_ids})
            else:
                found[f"{project}/{task_ids[0]}"] = vendor.get_task(project, task_ids[0])
        except NotFound:
            found.update({f"{project}/{t}": None for t in task_ids})
        except Exception as exc:  # classified per job, by each job's guard
            found.update({f"{project}/{t}": exc for t in task_ids})
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


def follow(job: JobContext, state: dict, tasks: TaskReads, began: float) -> tuple | None:
    """Act on one task's status; returns (job, state, signature) when its console may have grown."""
    if task_ref(state) not in tasks or float(state.get("since") or 0) > began:
        return None  # committed or restarted after the read began
    found = tasks[task_ref(state)]
    if isinstance(found, Exception):
        raise found
    if found is None:
        raise TaskGone(f"DroneMapper task {state['task']} of project {state['project']} no longer exists "
                       "(removed at the vendor)", project=int(state["project"]), task=vendor_id(state["task"]))
    status, pending = found.get("status"), found.get("pending_action")
    progress = float(found.get("running_progress") or 0)
    signature = f"{status}:{pending}:{progress}:{found.get('processing_time')}"
    survey = Survey(job.id)
    if signature != state.get("seen"):
        survey.set(seen=signature)
        job.progress(phase_for(status, pending), round(progress * 100), 100)
    if pending is not None:
        return None  # until the action is done the status is the old one (a restarting task says FAILED)
    if status == Status.COMPLETED:
        survey.set(available_assets=json.dumps(found.get("available_assets") or []),
                   processing_time=found.get("processing_time") or -1)
        STEPS.dispatch(job.id, DELIVER, PROCESSING)
    elif status in (Status.FAILED, Status.CANCELED):
        survey.set(status=status, last_error=found.get("last_error") or "")
        STEPS.dispatch(job.id, FINISH, PROCESSING)
    elif status == Status.RUNNING and signature != state.get("console_seen"):
        return job, state, signature
    return None


def read_consoles(moving: list) -> None:
    """New console lines of the moving tasks read longest ago, up to the per-cycle budget."""
    moving.sort(key=lambda m: float(m[1].get("console_at") or 0))
    for job, state, signature in moving[:CONSOLE_READS_PER_CYCLE]:
        polled(job.id, partial(read_console, job, state, signature), WHERE)


def read_console(job: JobContext, state: dict, signature: str) -> None:
    survey = Survey(job.id)
    sync_console(poll_client(), survey, state)
    survey.set(console_seen=signature, console_at=time.time())


def sync_console(vendor: DroneMapperClient, survey: Survey, state: dict) -> int:
    """Append the console lines after the job's offset; the lines and the new offset in one write."""
    offset = int(state.get("console_offset") or 0)
    lines = vendor.output(int(state["project"]), state["task"], line=offset)
    if lines:
        # kept as logs are: the vendor's console may quote what it was given (a token, a URL)
        shown = redaction.redact_value(lines, redaction.secret_values(get_settings()))
        survey.append_console(shown, offset + len(lines))
    state["console_offset"] = str(offset + len(lines))
    return len(lines)


def keep_moving(job_id: str, state: dict) -> None:
    """Send a step whose message was lost again, and start processing once every image is in."""
    fanout = Fanout()
    if state.get("step") == UPLOAD and fanout.started(job_id) and fanout.complete(job_id):
        STEPS.dispatch(job_id, COMMIT, UPLOAD)  # the last upload's worker died before it could
    else:
        STEPS.resend_if_lost(job_id, state)


# --- what a survey that ended holds: its vendor task, and its place in the poller's care ---
def stop_needed(job: Job, state: dict) -> str | None:
    """What the vendor task of a finished survey still needs: "remove" for a partial task never
    committed, "cancel" for processing that a cancel stopped on our side; None when nothing is left.
    A stop claimed and not yet made is still needed: its stopper may die before its call."""
    if not state.get("task") or state.get("removed") or stop_made(state):
        return None
    if not state.get("committed"):
        return "remove"
    return "cancel" if job.state == CANCELED and state.get("step") == PROCESSING else None


def stop_at_vendor(job_id: str) -> str | None:
    """Stop the vendor task of a finished survey as it needs, once; the action taken, if any."""
    job, survey = get_ledger().get(job_id), Survey(job_id)
    state = survey.state()
    if job is None or not job.finished:
        return None  # restarted since it was read
    action = stop_needed(job, state)
    if action is None or not survey.claim_stop(action):
        return survey.state().get("stop")
    try:
        getattr(client(), action)(int(state["project"]), state["task"])
    except NotFound:
        pass  # gone already (a remove repeated after a claim taken again lands here too)
    except BaseException:
        survey.release_stop()  # not stopped: whoever comes next tries again
        raise
    survey.stopped()
    return action


def wind_down(job_id: str) -> str | None:
    """A survey that ended on our side: its vendor task stopped as it needs, then it leaves the poller's care."""
    action = stop_at_vendor(job_id)
    retire_unless_stop_needed(job_id)
    return action


def retire_unless_stop_needed(job_id: str) -> None:
    """The survey leaves the poller's care, unless its vendor task must still be stopped: then the
    poller's wind-down does it in a later cycle (taking again a claim whose stopper died)."""
    survey, job = Survey(job_id), get_ledger().get(job_id)
    if job is None or stop_needed(job, survey.state()) is None:
        survey.retire()


@on_job_end(reads_end_state=True)
def leave_the_poller(job_id: str) -> None:
    """A survey that ends leaves the poller's care, unless its vendor task must still be stopped
    (a release makes no vendor call)."""
    if Survey(job_id).is_tracked():
        retire_unless_stop_needed(job_id)
