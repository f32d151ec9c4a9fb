"""A map's construction: created once, followed by the poller, downloaded into S3."""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from geoqueue import jobs
from geoqueue.s3ref import S3Ref
from tasks.immersal.client import client
from tasks.immersal.records import (
    ACTIVE_KEY,
    CLAIMS_KEY,
    CLOCK_SLACK_SECONDS,
    CONSTRUCTION,
    DOWNLOAD,
    POLL_CALL_TIMEOUT,
    POLL_LOCK_KEY,
    POLL_LOCK_SECONDS,
    QUEUED,
    SETTLE,
    START,
    STEP_PHASES,
    STEP_TASKS,
    SUBMIT,
    WORKSPACE_STEPS,
    ConstructionFailed,
    dispatch_step,
    job_state,
    log,
    send_step,
    state_key,
)
from tasks.immersal.steps import step_task
from tasks.immersal.workspace import retire, start_on_workspace, tend_workspace, workspace_lease
from vendors.errors import TransientError, VendorError
from vendors.immersal import FAILED, LOCALIZABLE, ImmersalClient
from workers import app
from workers.jobtask import JobTask, error_dict
from workers.lease import Lease
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings
from workers.steps import grace_seconds, report
from workers.storage import get_store, object_ref


def create_once(vendor: ImmersalClient, job_id: str, name: str, bank: int | None, call: Callable[[], dict]) -> int:
    """Run a map-creating call (/construct, /fuse) once: after a call cut off without an answer, the
    map it may have created is looked up in /list before calling again."""
    r = get_redis()
    began = r.hget(state_key(job_id), "construct_at")
    if began is not None:
        found = find_created_map(vendor, job_id, name, float(began), bank)
        if found is not None:
            return found
    r.hset(state_key(job_id), "construct_at", time.time())
    try:
        return int(call()["id"])
    except TransientError as exc:
        if exc.status is not None:    # answered: nothing was created
            r.hdel(state_key(job_id), "construct_at")
        raise
    except VendorError:
        r.hdel(state_key(job_id), "construct_at")
        raise


def find_created_map(vendor: ImmersalClient, job_id: str, name: str, since: float, bank: int | None) -> int | None:
    claims = get_redis()
    for entry in vendor.list_jobs(bank or 0):    # newest first
        if entry.get("name") != name or (bank is not None and int(entry.get("bank", bank)) != bank):
            continue
        if vendor_time(entry.get("created")) < since - CLOCK_SLACK_SECONDS:
            continue
        claimed = claims.hget(CLAIMS_KEY, str(entry["id"]))
        if claimed in (None, job_id):
            return int(entry["id"])
    return None


def vendor_time(value: Any) -> float:
    try:
        return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


def record_map(job_id: str, map_id: int, summary: dict) -> None:
    """The map exists at Immersal: from now on the poller follows its construction."""
    r = get_redis()
    r.hsetnx(CLAIMS_KEY, str(map_id), job_id)
    r.hset(state_key(job_id), mapping={"map_id": map_id, "status": "pending", "summary": json.dumps(summary),
                                       "step": CONSTRUCTION, "step_at": time.time()})
    get_ledger().transition(job_id, jobs.WAITING, phase="construction: pending")
    r.sadd(ACTIVE_KEY, job_id)


# --- the poller: beat sends immersal.poll every few seconds ---
@app.task(bind=True, base=JobTask, name="immersal.poll", ignore_result=True)
def poll(self) -> dict:
    """Look after every job in progress: hand free workspaces on, keep leases alive, re-send steps
    whose message was lost, and check the construction of every map being built. Never sleeps."""
    lock, owner = Lease(get_redis(), POLL_LOCK_KEY, POLL_LOCK_SECONDS), uuid.uuid4().hex
    if not lock.acquire(owner):
        return {"skipped": "another poll is running"}
    try:
        return sweep(self)
    finally:
        lock.release(owner)


def sweep(task) -> dict:
    r, ledger = get_redis(), get_ledger()
    constructing, banks, resent = [], set(), 0
    for job_id in sorted(r.smembers(ACTIVE_KEY)):
        job, state = ledger.get(job_id), job_state(job_id)
        if job is None or job.finished:
            retire(job_id)
            continue
        step = state.get("step")
        if "bank" in state and step in WORKSPACE_STEPS:
            banks.add(int(state["bank"]))
        if step == CONSTRUCTION:
            constructing.append((job, state))
        elif step == QUEUED and workspace_lease(int(state["bank"])).holder() == job_id:
            start_on_workspace(job_id, int(state["bank"]))     # granted by a task that died before sending it
        elif step in (START, SUBMIT) and state.get("chunks") and ledger.finished_count(job_id) >= int(state["chunks"]):
            dispatch_step(job_id, SETTLE, START, SUBMIT)
        elif step in STEP_TASKS and time.time() - float(state.get("step_at") or 0) > grace_seconds():
            r.hset(state_key(job_id), "step_at", time.time())
            send_step(job_id, step)
            resent += 1
    for bank in banks:
        tend_workspace(bank)
    checked = check_constructions(task, constructing)
    return {"constructing": len(constructing), "checked": checked, "resent": resent}


def check_constructions(task, constructing: list) -> int:
    """One /list per bank when several maps are being built there, else one /metadataget per map."""
    if not constructing:
        return 0
    vendor = client(timeout=POLL_CALL_TIMEOUT)
    by_bank: dict[int, list] = {}
    for job, state in constructing:
        by_bank.setdefault(int(state.get("bank") or 0), []).append((job, state))
    checked = 0
    for bank, group in by_bank.items():
        try:
            listed = {int(e["id"]): e for e in vendor.list_jobs(bank)} if len(group) > 1 else {}
        except TransientError as exc:
            log.info("immersal poll: /list of bank %s failed (%s); next round", bank, exc)
            continue
        for job, state in group:
            map_id = int(state["map_id"])
            try:
                entry = listed.get(map_id) or vendor.metadata(map_id)
                follow_construction(task, job, state, map_id, entry, vendor)
            except TransientError as exc:
                log.info("immersal poll: map %s status unknown (%s); next round", map_id, exc)
                continue
            except VendorError as exc:
                get_ledger().transition(job.id, jobs.FAILED, error=error_dict(exc))
            checked += 1
    return checked


def follow_construction(task, job, state: dict, map_id: int, entry: dict, vendor: ImmersalClient) -> None:
    status = entry["status"]
    if status != state.get("status"):
        get_redis().hset(state_key(job.id), "status", status)
        report(task, job.id, f"construction: {status}")
    if status in LOCALIZABLE:
        dispatch_step(job.id, DOWNLOAD, CONSTRUCTION)
    elif status == FAILED:
        errno = entry["errno"] if "errno" in entry else vendor.metadata(map_id).get("errno")  # /list has none
        error = ConstructionFailed(f"Immersal could not build map {map_id} ({entry.get('name', '')}): status {status}, "
                                   f"errno {errno}", map_id=map_id, vendor_message=status, errno=errno)
        get_ledger().transition(job.id, jobs.FAILED, error=error.to_dict())


@step_task("immersal.transfer.download", DOWNLOAD)
def download(task, job) -> None:
    """The map's .bytes from /mapb64, checked against Immersal's sha256_al, into S3."""
    state = job_state(job.id)
    map_id, name = int(state["map_id"]), job.params["name"]
    report(task, job.id, STEP_PHASES[DOWNLOAD])
    data = client().download_map(map_id)       # raises (and is retried) when the bytes miss sha256_al
    output = job.params.get("output")
    target = object_ref(output, "output") if output else S3Ref(get_settings().s3_bucket, f"immersal/{job.id}/{name}-{map_id}.bytes")
    get_store().write(target, data)
    result = {"map_id": map_id, "name": name, **json.loads(state.get("summary") or "{}"), "status": state.get("status"),
              "map": target.uri, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    get_ledger().transition(job.id, jobs.SUCCEEDED, result=result)
    retire(job.id)
