"""A job's tasks in Flower, for its page. The page asks for them after it has loaded, and this
asks Flower without holding a thread, so a slow or absent Flower never holds a page back.

Flower has two addresses: GEOQUEUE_API_FLOWER_URL, as a browser reaches it, is only linked to;
GEOQUEUE_API_FLOWER_API_URL, as this process reaches it inside the deployment, is the only
address Flower's credentials are sent to. Without the latter a page links the job's entry task only.
"""
from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx

from config.settings import Settings

TIMEOUT = 3.0  # seconds for one look-up, waiting for a connection included


def flower_client(settings: Settings) -> httpx.AsyncClient | None:
    if not (settings.api_flower_url and settings.api_flower_api_url):
        return None
    credentials = settings.flower_basic_auth.get_secret_value().split(":", 1) if settings.flower_basic_auth else None
    return httpx.AsyncClient(base_url=settings.api_flower_api_url.rstrip("/"), timeout=TIMEOUT,
                             auth=tuple(credentials) if credentials and len(credentials) == 2 else None,
                             limits=httpx.Limits(max_connections=8), follow_redirects=False)


async def job_tasks(settings: Settings, client: httpx.AsyncClient | None, job_id: str) -> list[dict[str, str]]:
    """The job's tasks (the entry task has the job's id; item tasks carry it in their arguments),
    each with its link for a browser; the entry task alone when Flower does not answer in time."""
    if not settings.api_flower_url:
        return []
    tasks = {job_id: {"uuid": job_id, "name": "(the job's task)", "state": ""}}
    if client is not None:
        try:
            answer = await asyncio.wait_for(client.get("/api/tasks", params={"search": job_id, "limit": 200}),
                                            TIMEOUT)
            for uuid, task in answer.raise_for_status().json().items():
                tasks[uuid] = {"uuid": uuid, "name": task.get("name") or "", "state": task.get("state") or ""}
        except (httpx.HTTPError, TimeoutError, ValueError, AttributeError):
            pass
    base = settings.api_flower_url.rstrip("/")
    return [task | {"url": f"{base}/task/{quote(task['uuid'], safe='')}"} for task in tasks.values()]
