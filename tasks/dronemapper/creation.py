"""Creating a project or a task exactly once."""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable, Iterable

from geoqueue import jobs
from tasks.dronemapper.records import CLOCK_SLACK_SECONDS, claim_key, log, state_key, track
from vendors.dronemapper import DroneMapperClient
from vendors.errors import VendorError
from workers.redis_client import get_redis


# --- creating a project or a task exactly once ---
def vendor_time(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


def claim(kind: str, created: dict, job_id: str) -> bool:
    """True when the project or task is this job's (now or already); each is one job's only."""
    key = claim_key(kind, created)
    get_redis().set(key, job_id, nx=True, ex=jobs.RECORD_TTL_SECONDS)
    return get_redis().get(key) == job_id


def create_once(job_id: str, kind: str, create: Callable[[], dict],
                find: Callable[[float], Iterable[dict]]) -> str:
    """The id of the project or task (`kind`) this job created, creating it only if no earlier
    attempt did. A marker set just before the call tells a later attempt that a call may have
    reached the vendor without its answer reaching us; `find(since)` lists the candidates then."""
    r, key, marker = get_redis(), state_key(job_id), f"{kind}_create_at"
    recorded = r.hget(key, kind)
    if recorded:
        return recorded
    if not r.hsetnx(key, marker, time.time()):
        since = float(r.hget(key, marker) or 0) - CLOCK_SLACK_SECONDS
        for candidate in find(since):
            if claim(kind, candidate, job_id):
                r.hset(key, kind, str(candidate["id"]))
                log.warning("job %s: adopted %s %s that an interrupted attempt created", job_id, kind, candidate["id"])
                return str(candidate["id"])
        r.hset(key, marker, time.time())
    try:
        created = create()
    except VendorError as exc:
        if exc.status is not None and exc.status < 500:  # refused: nothing was created
            r.hdel(key, marker)
        raise
    claim(kind, created, job_id)
    r.hset(key, kind, str(created["id"]))
    return str(created["id"])


def created_project(job_id: str, vendor: DroneMapperClient, project_name: str | None) -> int:
    marker = f"created by geoqueue job {job_id}"

    def find(_since: float) -> Iterable[dict]:
        return vendor.list_projects(description=marker)

    name = project_name or f"geoqueue survey {job_id}"
    return int(create_once(job_id, "project", lambda: vendor.create_project(name, marker), find))


def task_name(job_id: str, name: str | None) -> str:
    return name or f"geoqueue-{job_id}"


def task_for(job_id: str, vendor: DroneMapperClient, project: int, name: str,
             create: Callable[[], dict]) -> str:
    def find(since: float) -> Iterable[dict]:
        return [t for t in vendor.list_tasks(project)
                if t.get("name") == name and vendor_time(t.get("created_at")) >= since]

    task_id = create_once(job_id, "task", create, find)
    track(job_id)  # again: a cancel may have retired the job meanwhile, and the poller must clean up this task
    return task_id
