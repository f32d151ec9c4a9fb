"""The end of processing: assets delivered into S3, or the job ends as the vendor's task did."""
from __future__ import annotations

import json

from geoqueue import jobs
from geoqueue.s3ref import S3Ref
from tasks.dronemapper.client import client
from tasks.dronemapper.inputs import check_assets
from tasks.dronemapper.poller import sync_console
from tasks.dronemapper.records import (
    CONSOLE_TAIL,
    CONTENT_TYPES,
    DELIVER,
    FINISH,
    STEP_PHASES,
    STEP_TASKS,
    VENDOR,
    ProcessingFailed,
    assets_key,
    retire,
    vendor_id,
)
from tasks.dronemapper.steps import step_task
from tasks.dronemapper.streams import ChunkStream
from vendors.dronemapper import DroneMapperClient, Status
from vendors.errors import TransientError
from workers.redis_client import get_ledger, get_redis
from workers.settings import get_settings
from workers.steps import report
from workers.storage import get_store, prefix_ref


# --- the end of processing ---
@step_task(STEP_TASKS[DELIVER], DELIVER)
def deliver(task, job: jobs.Job, state: dict) -> None:
    """COMPLETED: the last console lines, then each requested asset streamed from its download into S3."""
    vendor, r = client(), get_redis()
    sync_console(vendor, job.id, state)
    wanted = check_assets(job.params.get("assets"))
    available = json.loads(state.get("available_assets") or "[]")
    target = prefix_ref(job.params["output"], "output") if job.params.get("output") else S3Ref(
        get_settings().s3_bucket, f"dronemapper/{job.id}/")
    deliverable = [a for a in wanted if a in available]
    delivered = {k: json.loads(v) for k, v in r.hgetall(assets_key(job.id)).items()}
    for asset in deliverable:
        if asset in delivered:
            continue
        report(task, job.id, f"{STEP_PHASES[DELIVER]}: {asset}", len(delivered), len(deliverable))
        delivered[asset] = deliver_asset(vendor, state, asset, target.child(asset))
        r.hset(assets_key(job.id), asset, json.dumps(delivered[asset]))
    result = {
        "project": int(state["project"]), "task": vendor_id(state["task"]), "images": int(state["images"]),
        "upload": "partial" if state.get("flow") == "partial" else "single request",
        "assets": {a: delivered[a] for a in wanted if a in delivered},
        "missing": [a for a in wanted if a not in available],
        "processing_time_ms": int(state.get("processing_time") or -1),
        "console_lines": int(state.get("console_offset") or 0),
    }
    get_ledger().transition(job.id, jobs.SUCCEEDED, result=result, done=len(delivered), total=len(delivered))
    retire(job.id)


def deliver_asset(vendor: DroneMapperClient, state: dict, asset: str, target: S3Ref) -> dict:
    """One asset from the vendor's download into S3 by multipart upload, its size checked twice:
    the download against its Content-Length, the stored object against the bytes we read."""
    stream = ChunkStream(vendor.iter_asset(int(state["project"]), state["task"], asset))
    suffix = asset[asset.rfind("."):]
    try:
        get_store().upload_stream(target, stream, CONTENT_TYPES.get(suffix, "application/octet-stream"))
    except Exception:
        if stream.error is not None:
            raise stream.error from None
        raise
    stored = get_store().size(target)
    if stored != stream.bytes_read:
        raise TransientError(f"{target} holds {stored} bytes where {stream.bytes_read} were downloaded", vendor=VENDOR)
    return {"uri": target.uri, "bytes": stored}


@step_task(STEP_TASKS[FINISH], FINISH)
def finish(task, job: jobs.Job, state: dict) -> None:
    """FAILED or CANCELED at the vendor: the last console lines, then the job ends the same way."""
    sync_console(client(), job.id, state)
    ledger = get_ledger()
    if int(state["status"]) == Status.CANCELED:
        ledger.transition(job.id, jobs.CANCELED, error={
            "type": "Canceled", "message": f"DroneMapper task {state['task']} was canceled at the vendor"})
    else:
        last_error = state.get("last_error") or "no error message"
        failure = ProcessingFailed(
            f"DroneMapper task {state['task']} failed: {last_error}", vendor=VENDOR, vendor_message=last_error,
            project=int(state["project"]), task=vendor_id(state["task"]), console_tail=ledger.console(job.id, -CONSOLE_TAIL))
        ledger.transition(job.id, jobs.FAILED, error=failure.to_dict())
    retire(job.id)
