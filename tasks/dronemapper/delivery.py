"""The end of processing: assets delivered into S3, or the job ends as the vendor's task did."""
from __future__ import annotations

import json

from geoqueue.catalog.dronemapper import DEFAULT_ASSETS
from geoqueue.job_record import CANCELED
from geoqueue.s3ref import S3Ref
from runtime import JobContext, ending
from services.storage import get_store
from tasks.dronemapper.account import client
from tasks.dronemapper.inputs import delivery_prefix
from tasks.dronemapper.poller import sync_console
from tasks.dronemapper.records import DELIVER, STEP_PHASES, VENDOR, ProcessingFailed, Survey, vendor_id
from tasks.dronemapper.streams import ChunkStream
from vendors.dronemapper.client import DroneMapperClient
from vendors.dronemapper.states import Status
from vendors.errors import TransientError

# What S3 is told each delivered asset is, by its suffix.
CONTENT_TYPES = {".tif": "image/tiff", ".zip": "application/zip", ".png": "image/png", ".pdf": "application/pdf",
                 ".json": "application/json", ".geojson": "application/geo+json"}
CONSOLE_TAIL = 20               # lines of console quoted in the error of a failed task


def deliver(job: JobContext, state: dict) -> None:
    """COMPLETED: the last console lines, then each requested asset streamed from its download into S3."""
    vendor, survey = client(), Survey(job.id)
    sync_console(vendor, survey, state)
    wanted = job.params.get("assets") or list(DEFAULT_ASSETS)
    available = set(json.loads(state.get("available_assets") or "[]"))
    target = delivery_prefix(job.id, job.params.get("output"))
    deliverable = [a for a in wanted if a in available]
    delivered = survey.delivered()
    for asset in deliverable:
        if asset in delivered:
            continue
        job.progress(f"{STEP_PHASES[DELIVER]}: {asset}", len(delivered), len(deliverable))
        delivered[asset] = deliver_asset(vendor, state, asset, target.child(asset))
        survey.record_delivery(asset, delivered[asset])
    result = {
        "project": int(state["project"]), "task": vendor_id(state["task"]), "images": int(state["images"]),
        "upload": "partial" if state.get("flow") == "partial" else "single request",
        "assets": {a: delivered[a] for a in wanted if a in delivered},
        "missing": [a for a in wanted if a not in available],
        "processing_time_ms": int(state.get("processing_time") or -1),
        "console_lines": int(state.get("console_offset") or 0),
    }
    ending.succeed(job.id, result, done=len(delivered), total=len(delivered))


def deliver_asset(vendor: DroneMapperClient, state: dict, asset: str, target: S3Ref) -> dict:
    """One asset from the vendor's download into S3 by multipart upload, its size checked twice:
    the download against its Content-Length, the stored object against the bytes we read."""
    stream = ChunkStream(vendor.iter_asset(int(state["project"]), state["task"], asset))
    suffix = asset[asset.rfind("."):]
    try:
        get_store().upload_stream(target, stream, CONTENT_TYPES.get(suffix, "application/octet-stream"))
    except Exception:
        if stream.error is not None:  # boto3 may report the download's own error under another type
            raise stream.error from None
        raise
    stored = get_store().size(target)
    if stored != stream.bytes_read:
        raise TransientError(f"{target} holds {stored} bytes where {stream.bytes_read} were downloaded", vendor=VENDOR)
    return {"uri": target.uri, "bytes": stored}


def finish(job: JobContext, state: dict) -> None:
    """FAILED or CANCELED at the vendor: the last console lines, then the job ends the same way."""
    sync_console(client(), Survey(job.id), state)
    if int(state["status"]) == Status.CANCELED:
        ending.end_job(job.id, CANCELED, error={
            "type": "Canceled", "message": f"DroneMapper task {state['task']} was canceled at the vendor"})
        return
    last_error = state.get("last_error") or "no error message"
    raise ProcessingFailed(
        f"DroneMapper task {state['task']} failed: {last_error}", vendor=VENDOR, vendor_message=last_error,
        project=int(state["project"]), task=vendor_id(state["task"]),
        console_tail=job.ledger.console(job.id, -CONSOLE_TAIL))
