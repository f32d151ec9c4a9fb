"""The job pages: a list of jobs and one page per job, read-only, behind the same API keys (the
login form opens a read-only session, api/sessions.py). Live updates come from /v1/events."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from api import sessions
from api.auth import require
from api.errors import ApiError
from api.flower_tasks import job_tasks
from api.keys import ApiKey, find
from geoqueue.client import VENDORS, GeoQueue, UnknownJob
from geoqueue.job_record import STATES, Job

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
STATIC = Path(__file__).with_name("static")  # the pages' script and style, served at /ui/static


def age(seconds: float) -> str:
    seconds = max(0, int(time.time() - seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


templates.env.filters["age"] = age


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, failed: bool = False):
    return templates.TemplateResponse(request, "login.html", {"failed": failed})


@router.post("/login")
async def login(request: Request):
    # A key is all the form holds: no file is taken (nothing spooled to disk), and few small fields.
    form = await request.form(max_files=0, max_fields=4, max_part_size=4096)
    presented = form.get("key")
    found = find(request.app.state.api_keys, presented) if isinstance(presented, str) else None
    if found is None or "read" not in found.scopes:
        return RedirectResponse("/ui/login?failed=true", status_code=303)
    settings = request.app.state.settings
    session_id = await run_in_threadpool(sessions.start, request.app.state.queue.redis, found,
                                         settings.api_session_ttl)
    response = RedirectResponse("/ui/jobs", status_code=303)
    response.set_cookie(sessions.COOKIE, session_id, httponly=True, samesite="strict",
                        secure=sessions.cookies_secure(settings), max_age=settings.api_session_ttl, path="/")
    response.delete_cookie(sessions.KEY_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(request: Request):
    session_id = request.cookies.get(sessions.COOKIE)
    if session_id:
        sessions.end(request.app.state.queue.redis, session_id)
    response = RedirectResponse("/ui/login", status_code=303)
    for cookie in (sessions.COOKIE, sessions.KEY_COOKIE):
        response.delete_cookie(cookie, path="/", secure=sessions.cookies_secure(request.app.state.settings),
                               httponly=True, samesite="strict")
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


def app_queue(request: Request, key: ApiKey) -> GeoQueue:
    """The queue as the key's app: its own jobs only, another app's is not found."""
    return request.app.state.queue.as_app(key.app)


def existing_job(queue: GeoQueue, job_id: str) -> Job:
    try:
        return queue.status(job_id)
    except UnknownJob:
        raise ApiError(404, "UnknownJob", f"no job {job_id}") from None


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, key: ApiKey = Depends(require("read"))):
    queue = app_queue(request, key)
    job = existing_job(queue, job_id)
    items: dict[str, Any] = queue.items(job_id)
    return templates.TemplateResponse(request, "job.html", {
        "job": job, "items": sorted(items.items()), "console": queue.console(job_id)[-200:],
        "deliveries": queue.deliveries(job_id), "flower": bool(request.app.state.settings.api_flower_url),
        "item_errors": [(item, outcome["error"]) for item, outcome in sorted(items.items())
                        if isinstance(outcome.get("error"), dict)]})


@router.get("/jobs/{job_id}/tasks")
async def tasks_in_flower(request: Request, job_id: str, key: ApiKey = Depends(require("read"))) -> dict[str, Any]:
    """The job's tasks as Flower knows them, for its page (which asks once it has loaded)."""
    queue = app_queue(request, key)
    await run_in_threadpool(existing_job, queue, job_id)
    return {"tasks": await job_tasks(request.app.state.settings, request.app.state.flower, queue.stored(job_id))}
