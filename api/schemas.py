"""The request schemas of POST /v1/jobs, one per job name, made from the job catalog (the same
declarations that check a submit), and the response models."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from geoqueue.catalog import CATALOG
from geoqueue.job_record import JOB_ID


def schema_name(job_name: str) -> str:
    return "Submit_" + job_name.replace(".", "_")


def submit_schema(job_name: str) -> dict[str, Any]:
    spec = CATALOG[job_name]
    return {
        "title": schema_name(job_name), "description": spec.summary, "type": "object",
        "required": ["name", "params"], "additionalProperties": False,
        "properties": {
            "name": {"const": job_name},
            "params": spec.schema(),
            "callback_url": {"type": "string", "format": "uri", "maxLength": 2000,
                             "description": "receives the job's record, signed (Standard Webhooks), when it ends"},
            "job_id": {"type": "string", "pattern": f"^{JOB_ID.pattern}$",
                       "description": "your own id for the job, within your app (another app may use the same "
                                      "id for its own job); the same id with the same name and params is the "
                                      "same job"},
        },
    }


def submit_components() -> dict[str, dict[str, Any]]:
    return {schema_name(name): submit_schema(name) for name in CATALOG}


def submit_request_body() -> dict[str, Any]:
    refs = {name: f"#/components/schemas/{schema_name(name)}" for name in CATALOG}
    return {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [{"$ref": ref} for ref in refs.values()],
        "discriminator": {"propertyName": "name", "mapping": refs}}}}}


class Progress(BaseModel):
    phase: str
    done: int
    total: int


class JobRecord(BaseModel):
    id: str
    app: str
    name: str
    vendor: str
    state: str
    progress: Progress
    params: dict[str, Any]
    result: Any = None
    error: dict[str, Any] | None = None
    created: float
    updated: float
    credits: int
    callback_url: str | None = None
    webhook_deliveries: list[dict[str, Any]] | None = None
    links: dict[str, str] = {}


class JobPage(BaseModel):
    jobs: list[JobRecord]
    next_cursor: str | None


class Problem(BaseModel):
    error: str
    detail: str
    field: str | None = None


ERRORS = {status: {"model": Problem} for status in (400, 401, 403, 404, 409, 413, 415, 422)}
