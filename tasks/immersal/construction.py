"""A map's construction: the map created once, followed by the poller (beat, every few seconds;
no worker waits on Immersal), downloaded into S3 checked against Immersal's sha256."""
from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from config.redis_client import get_ledger, get_redis
from geoqueue.job_record import WAITING
from runtime import JobContext, Once, ending, liveness
from runtime.context import publish_progress
from runtime.guard import polled
from services.storage import default_outputs, get_store
from tasks.immersal.account import client, poller
from tasks.immersal.records import (
    ACTIVE_KEY,
    CLAIMS_KEY,
    CLOCK_SLACK_SECONDS,
    CONSTRUCT,
    CONSTRUCTION,
    DOWNLOAD,
    QUEUED,
    SETTLE,
    START,
    STEP_PHASES,
    STEPS,
    SUBMIT,
    WORKSPACE_STEPS,
    ConstructionFailed,
)
from tasks.immersal.workspace import start_on_workspace, tend_workspace, workspace_lease
from vendors.immersal import FAILED, LOCALIZABLE, ImmersalClient


def create_map_once(job: JobContext, vendor: ImmersalClient, bank: int | None, call: Callable[[], dict]) -> int:
    """Run a map-creating call (/construct, /fuse) once: after a call cut off without an answer, the
    map it may have created is looked up in /list before calling again."""
    name = job.params["name"]

    def created_since(since: float | None) -> int | None:
        for entry in vendor.list_jobs(bank or 0):    # newest first
            if entry.get("name") != name or (bank is not None and int(entry.get("bank", bank)) != bank):
                continue
            if since is not None and vendor_time(entry.get("created")) < since - CLOCK_SLACK_SECONDS:
                continue
            if get_redis().hget(CLAIMS_KEY, str(entry["id"])) in (None, job.id):
                return int(entry["id"])
        return None

    return int(Once(job.id).run(CONSTRUCT, lambda: int(call()["id"]), created_since).result)


def vendor_time(value: Any) -> float:
    try:
        return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


def record_map(job: JobContext, map_id: int, summary: dict) -> None:
    """The map exists at Immersal: from now on the poller follows its construction."""
    r = get_redis()
    r.hsetnx(CLAIMS_KEY, str(map_id), job.id)
    STEPS.set(job.id, map_id=map_id, status="pending", summary=json.dumps(summary), step=CONSTRUCTION,
              step_at=time.time())
    job.show(WAITING, "construction: pending")
    ending.hold(job.id)
    r.sadd(ACTIVE_KEY, job.id)


# --- the poller ---
def poll_cycle() -> dict:
    """Look after every job in progress: hand free workspaces on, keep leases alive, re-send steps
    whose message was lost, and check the construction of every map being built. Never sleeps."""
    constructing, banks, resent = [], set(), 0
    for job_id in sorted(get_redis().smembers(ACTIVE_KEY)):
        job, state = get_ledger().get(job_id), STEPS.state(job_id)
        if job is None or job.finished:
            ending.release(job_id)
            continue
        step = state.get("step")
        if "bank" in state and step in WORKSPACE_STEPS:
            banks.add(int(state["bank"]))
        if step == CONSTRUCTION:
            constructing.append((job_id, state))
        elif step == QUEUED and workspace_lease(int(state["bank"])).holder() == job_id:
            start_on_workspace(job_id, int(state["bank"]))     # granted by a task that died before sending it
        elif step in (START, SUBMIT) and state.get("chunks") and get_ledger().finished_count(job_id) >= int(
                state["chunks"]):
            STEPS.dispatch(job_id, SETTLE, START, SUBMIT)      # the last chunk's worker died before it could
        else:
            resent += STEPS.resend_if_lost(job_id, state)
    for bank in banks:
        tend_workspace(bank)
    checked = check_constructions(constructing)
    liveness.looked_at([job_id for job_id, _state in constructing])
    return {"constructing": len(constructing), "checked": checked, "resent": resent}


def check_constructions(constructing: list[tuple[str, dict]]) -> int:
    """One /list per bank when several maps are being built there, else one /metadataget per map."""
    if not constructing:
        return 0
    vendor = poller()
    by_bank: dict[int, list] = {}
    for job_id, state in constructing:
        by_bank.setdefault(int(state.get("bank") or 0), []).append((job_id, state))
    checked = 0
    for bank, group in by_bank.items():
        listed, failure = {}, None
        try:
            listed = {int(e["id"]): e for e in vendor.list_jobs(bank)} if len(group) > 1 else {}
        except Exception as exc:  # each job of the bank meets it under the guard's rules: next cycle, or it fails
            failure = exc

        for job_id, state in group:
            checked += polled(job_id, functools.partial(follow_listed, job_id, state, listed, failure, vendor),
                              "immersal poll") or 0
    return checked


def follow_listed(job_id: str, state: dict, listed: dict, failure: Exception | None, vendor: ImmersalClient) -> int:
    """One job of a bank whose list of jobs was read (or failed to be, `failure`)."""
    if failure is not None:
        raise failure
    return follow(job_id, state, listed, vendor)


def follow(job_id: str, state: dict, listed: dict[int, dict], vendor: ImmersalClient) -> int:
    map_id = int(state["map_id"])
    entry = listed.get(map_id) or vendor.metadata(map_id)
    status = entry["status"]
    if status != state.get("status"):
        STEPS.set(job_id, status=status)
        get_ledger().progress(job_id, f"construction: {status}")
        publish_progress(job_id, f"construction: {status}", None, None)
    if status in LOCALIZABLE:
        STEPS.dispatch(job_id, DOWNLOAD, CONSTRUCTION)
    elif status == FAILED:
        errno = entry["errno"] if "errno" in entry else vendor.metadata(map_id).get("errno")  # /list has none
        raise ConstructionFailed(f"Immersal could not build map {map_id} ({entry.get('name', '')}): status {status}, "
                                 f"errno {errno}", map_id=map_id, vendor_message=status, errno=errno)
    return 1


def download(job: JobContext, state: dict) -> None:
    """The map's .bytes from /mapb64, checked against Immersal's sha256_al, into S3."""
    map_id, name = int(state["map_id"]), job.params["name"]
    job.progress(STEP_PHASES[DOWNLOAD])
    data = client().download_map(map_id)       # raises (and is retried) when the bytes miss sha256_al
    output = job.params.get("output")
    target = get_store().output(output, "output") if output else default_outputs(job.id, "immersal").child(
        f"{name}-{map_id}.bytes")
    get_store().write(target, data)
    ending.succeed(job.id, {"map_id": map_id, "name": name, **json.loads(state.get("summary") or "{}"),
                            "status": state.get("status"), "map": target.uri,
                            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
