"""The poller: beat sends dronemapper.poll every few seconds; it follows every survey in progress."""
from __future__ import annotations

import contextlib
import json
import time
from collections import defaultdict
from typing import Callable

from redis.exceptions import LockError

from geoqueue import jobs
from tasks.dronemapper.client import client
from tasks.dronemapper.records import (
    ACTIVE_KEY,
    COMMIT,
    CONSOLE_READS_PER_CYCLE,
    DELIVER,
    FINISH,
    POLL_CALL_TIMEOUT,
    POLL_LOCK_KEY,
    POLL_LOCK_SECONDS,
    PROCESSING,
    STEP_TASKS,
    UPLOAD,
    TaskGone,
    dispatch_step,
    job_state,
    log,
    retire,
    send_step,
    set_state,
    state_key,
    vendor_id,
)
from vendors.dronemapper import DroneMapperClient, PendingAction, Status
from vendors.errors import NotFound, VendorError
from workers import app
from workers.fanout import Fanout
from workers.jobtask import JobTask
from workers.redis_client import get_ledger, get_redis
from workers.steps import grace_seconds, is_finished, report


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
