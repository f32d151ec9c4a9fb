"""The job pages: a list of jobs and one page per job, read-only, behind the same API keys (a
login form puts the key in an HttpOnly cookie). Live updates come from /v1/events."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from api.auth import COOKIE, require
from api.errors import ApiError
from api.keys import ApiKey, find
from geoqueue.client import VENDORS, UnknownJob
from geoqueue.job_record import STATES

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))


def age(seconds: float) -> str:
    seconds = max(0, int(time.time() - seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


templates.env.filters["age"] = age


def flower_tasks(request: Request, job_id: str) -> list[dict[str, str]]:
    """The job's tasks as Flower knows them (the entry task has the job's id; item tasks carry it
    in their arguments), each with its Flower link; the entry task alone when Flower is unreachable."""
    settings = request.app.state.settings
    if not settings.api_flower_url:
        return []
    base = settings.api_flower_url.rstrip("/")
    tasks = {job_id: {"uuid": job_id, "name": "(the job's task)", "state": ""}}
    auth = settings.flower_basic_auth.get_secret_value().split(":", 1) if settings.flower_basic_auth else None
    try:
        found = requests.get(f"{base}/api/tasks", params={"search": job_id, "limit": 200},
                             auth=tuple(auth) if auth else None,
                             timeout=3).json()
        for uuid, task in found.items():
            tasks[uuid] = {"uuid": uuid, "name": task.get("name") or "", "state": task.get("state") or ""}
    except (requests.RequestException, ValueError, AttributeError):
        pass
    return [task | {"url": f"{base}/task/{task['uuid']}"} for task in tasks.values()]


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, failed: bool = False):
    return templates.TemplateResponse(request, "login.html", {"failed": failed})


@router.post("/login")
def login(request: Request, key: str = Form(...)):
    found = find(request.app.state.api_keys, key)
    if found is None or "read" not in found.scopes:
        return RedirectResponse("/ui/login?failed=true", status_code=303)
    response = RedirectResponse("/ui/jobs", status_code=303)
    response.set_cookie(COOKIE, key, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        max_age=12 * 3600, path="/")
    return response


@router.post("/logout")
def logout():
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, key: ApiKey = Depends(require("read")), state: str = "", vendor: str = "",
              cursor: str | None = None):
    state = state if state in STATES else ""
    vendor = vendor if vendor in VENDORS else ""
    found, next_cursor = request.app.state.queue.as_app(key.app).page(50, state=state or None, vendor=vendor or None,
                                                                      cursor=cursor)
    return templates.TemplateResponse(request, "jobs.html", {
        "jobs": found, "states": STATES, "vendors": VENDORS, "state": state, "vendor": vendor,
        "next_cursor": next_cursor})


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, key: ApiKey = Depends(require("read"))):
    queue = request.app.state.queue.as_app(key.app)  # its own jobs only: another app's is not found
    try:
        job = queue.status(job_id)
    except UnknownJob:
        raise ApiError(404, "UnknownJob", f"no job {job_id}") from None
    items: dict[str, Any] = queue.items(job_id)
    return templates.TemplateResponse(request, "job.html", {
        "job": job, "items": sorted(items.items()), "console": queue.console(job_id)[-200:],
        "deliveries": queue.deliveries(job_id), "tasks": flower_tasks(request, queue.stored(job_id)),
        "item_errors": [(item, outcome["error"]) for item, outcome in sorted(items.items())
                        if isinstance(outcome.get("error"), dict)]})
