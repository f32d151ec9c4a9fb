"""/v1/jobs: submit, read, list, cancel; a job's items, console and events."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from api import events, idempotency
from api.auth import require
from api.errors import ApiError
from api.keys import ApiKey
from api.requests_in import json_body
from api.schemas import ERRORS, JobPage, JobRecord, submit_request_body
from geoqueue.callback_url import check_callback_url
from geoqueue.catalog import CATALOG
from geoqueue.client import VENDORS, GeoQueue, UnknownJob
from geoqueue.job_record import STATES, Job
from webhooks.destinations import CallbackRefused, check_destination

router = APIRouter(prefix="/v1", responses=ERRORS)
State = Literal[STATES]  # type: ignore[valid-type]
Vendor = Literal[tuple(VENDORS)]  # type: ignore[valid-type]


def queue(request: Request, key: ApiKey) -> GeoQueue:
    """The fleet as the key's app sees it: its own jobs, under its own ids."""
    return request.app.state.queue.as_app(key.app)


def record(request: Request, key: ApiKey, job: Job, deliveries: bool = True) -> dict[str, Any]:
    """A job as the API shows it: its record, its webhook deliveries (one job's read only: null in
    lists) and where to find the rest."""
    base = f"/v1/jobs/{job.id}"
    links = {"self": base, "items": f"{base}/items", "console": f"{base}/console", "events": f"{base}/events",
             "page": f"/ui/jobs/{job.id}"}
    shown = queue(request, key).deliveries(job.id) if deliveries else None
    return job.to_dict() | {"webhook_deliveries": shown, "links": links}


def existing(request: Request, key: ApiKey, job_id: str) -> Job:
    """The key's app's job `job_id`; another app's job answers as one that does not exist."""
    try:
        return queue(request, key).status(job_id)
    except UnknownJob:
        raise ApiError(404, "UnknownJob", f"no job {job_id}") from None


@router.post("/jobs", status_code=202, response_model=JobRecord, openapi_extra={"requestBody": submit_request_body()},
             summary="Submit a job", description="The body's schema depends on the job's name: one schema per job, "
             "made from the job catalog. Parameters are checked before anything is enqueued; a refusal names the "
             "field.")
async def submit(request: Request, response: Response, key: ApiKey = Depends(require("submit")),
                 idempotency_key: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    settings = request.app.state.settings
    body = await json_body(request, settings.api_max_body_bytes)
    name, params, callback_url = body.get("name"), body.get("params", {}), body.get("callback_url")
    params = CATALOG[name].check(params)  # before any key is claimed: a refused body claims nothing
    request.app.state.access.check_params(key.app, name, params)  # inputs and outputs where the app may
    if callback_url is not None:
        check_callback_url(callback_url)
        try:
            await run_in_threadpool(check_destination, callback_url, settings.webhook_allow_private)
        except CallbackRefused as exc:
            raise ApiError(422, "InvalidParams", str(exc), field="callback_url") from None
    job_id, replayed = body.get("job_id"), False
    if idempotency_key is not None:
        owner = f"{key.app}/{key.name}"  # a key's own, within its app: two apps' keys never share one
        job_id, replayed = idempotency.claim(queue(request, key).redis, owner, idempotency_key, body,
                                             settings.api_idempotency_ttl)
    job_id = await run_in_threadpool(queue(request, key).submit, name, params, job_id, callback_url)
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return record(request, key, existing(request, key, job_id))


@router.get("/jobs", response_model=JobPage, summary="List jobs, newest first")
def list_jobs(request: Request, key: ApiKey = Depends(require("read")), state: State | None = None,
              vendor: Vendor | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50,
              cursor: str | None = None) -> dict[str, Any]:
    found, next_cursor = queue(request, key).page(limit, state=state, vendor=vendor, cursor=cursor)
    return {"jobs": [record(request, key, job, deliveries=False) for job in found], "next_cursor": next_cursor}


@router.get("/jobs/{job_id}", response_model=JobRecord, summary="A job's record")
def get_job(request: Request, job_id: str, key: ApiKey = Depends(require("read"))) -> dict[str, Any]:
    return record(request, key, existing(request, key, job_id))


@router.delete("/jobs/{job_id}", response_model=JobRecord, summary="Cancel a job",
               description="409 when the job has already ended.")
def cancel(request: Request, job_id: str, key: ApiKey = Depends(require("submit"))) -> dict[str, Any]:
    existing(request, key, job_id)
    if not queue(request, key).cancel(job_id):
        raise ApiError(409, "AlreadyEnded", f"job {job_id} is already {existing(request, key, job_id).state}")
    return record(request, key, existing(request, key, job_id))


@router.get("/jobs/{job_id}/items", summary="Per-item outcomes of a batch job")
def items(request: Request, job_id: str, key: ApiKey = Depends(require("read"))) -> dict[str, Any]:
    existing(request, key, job_id)
    return {"items": queue(request, key).items(job_id)}


@router.get("/jobs/{job_id}/console", summary="The vendor's console lines of a job, from `start`")
def console(request: Request, job_id: str, key: ApiKey = Depends(require("read")),
            start: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
    existing(request, key, job_id)
    lines = queue(request, key).console(job_id, start)
    return {"lines": lines, "next": start + len(lines)}


@router.get("/jobs/{job_id}/events", summary="Server-sent events: the job now, then each change until it ends",
            response_class=EventSourceResponse)
async def job_events(request: Request, job_id: str, key: ApiKey = Depends(require("read"))):
    job = await run_in_threadpool(existing, request, key, job_id)
    return EventSourceResponse(events.job_stream(request, queue(request, key), job.id, key), ping=15)


@router.get("/events", summary="Server-sent events of the changes of every job of the key's app (the job pages' "
            "live updates)", response_class=EventSourceResponse)
async def all_events(request: Request, key: ApiKey = Depends(require("read"))):
    return EventSourceResponse(events.all_stream(request, key), ping=15)


@router.get("/job-types", summary="Every job's parameters as JSON Schema")
def job_types(_: ApiKey = Depends(require("read"))) -> dict[str, Any]:
    return {name: CATALOG[name].schema() for name in CATALOG}
