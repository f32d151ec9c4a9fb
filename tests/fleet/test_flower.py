"""Flower: authentication on by default, its HTTP API as a way to enqueue jobs, job progress
shown while a job runs, and no secret on its pages, in a real headless Chromium."""
from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import wait_until
from tests.inputs import prefix_of, put_images

OUTPUT = Path(__file__).resolve().parents[1] / "output"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def flower(stack, path: str, **kwargs) -> requests.Response:
    kwargs.setdefault("auth", (stack.flower_user, stack.flower_password))
    return requests.request(kwargs.pop("method", "GET"), stack.flower_url + path, timeout=10, **kwargs)


def secrets_of(stack, sandbox) -> list[str]:
    issued = sandbox.status("immersity")["tokens_issued"]
    return [stack.env["GEOQUEUE_IMMERSITY_CLIENT_SECRET"], stack.env["GEOQUEUE_S3_SECRET_ACCESS_KEY"],
            stack.flower_password, "X-Amz-Signature", *issued]


def flower_refuses(**settings: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOQUEUE_FLOWER")} | settings
    started = subprocess.run([sys.executable, "-m", "workers.flower"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert started.returncode != 0
    return started.stderr


def test_flower_refuses_to_start_without_auth_or_with_the_example_password():
    assert "refusing to start Flower without authentication" in flower_refuses()
    shipped = dict(line.split("=", 1) for line in (DEPLOY / "env.example").read_text().splitlines()
                   if line.startswith("GEOQUEUE_FLOWER_BASIC_AUTH="))
    assert "example password" in flower_refuses(**shipped)


@pytest.mark.parametrize("password, rule", [
    ("Tr0ub4dor&3", "shorter than 12 characters"),
    ("abababababababab", "fewer than 8 different characters"),
    ("Password1234!", "a common password"),
    ("Welcome2flower", "the user name"),        # the user is "flower"
    ("qwertyuiopasdf", "keyboard or alphabet sequence"),
    ("0123456789012", "keyboard or alphabet sequence"),
    ("horsestapler", "estimated strength is below 60 bits"),
])
def test_flower_refuses_a_weak_password_naming_the_rule_not_the_password(password, rule):
    said = flower_refuses(GEOQUEUE_FLOWER_BASIC_AUTH=f"ops:{secrets.token_urlsafe(12)},flower:{password}")
    assert rule in said and "user flower" in said and "Traceback" not in said, said
    assert password not in said


def test_a_random_password_passes_the_checks():
    from workers.flower_password import weakness

    assert all(weakness("admin", secrets.token_urlsafe(12)) is None for _ in range(200))


def test_flower_is_read_only_and_needs_auth(stack, store, queue):
    [image] = put_images(store, 1)
    body = {"kwargs": {"image": image.uri}}
    unauthenticated = flower(stack, "/api/task/async-apply/immersity.disparity", method="POST", json=body, auth=None)
    assert unauthenticated.status_code == 401
    for path in ("/api/task/async-apply/immersity.disparity", "/api/task/async-apply/geoqueue.sweep",
                 "/api/task/send-task/immersity.item", "/api/task/apply/immersity.disparity"):
        assert flower(stack, path, method="POST", json=body).status_code == 403, path
    workers = flower(stack, "/api/workers", params={"refresh": 1}).json()
    assert workers
    for worker in workers:
        assert flower(stack, f"/api/worker/shutdown/{worker}", method="POST").status_code == 403
    assert set(flower(stack, "/api/workers", params={"refresh": 1}).json()) == set(workers)


def running_batch(sandbox, store, queue, images: int = 8) -> str:
    refs = put_images(store, images)
    sandbox.configure("immersity", processing_delay_s=0.7)
    return queue.submit("immersity.batch", {"prefix": prefix_of(refs), "max_parallel": 2})


def test_progress_of_a_running_job_shows_in_flower(stack, store, queue, sandbox):
    job_id = running_batch(sandbox, store, queue)
    query = {"draw": 1, "start": 0, "length": 100, "search[value]": job_id,
             "order[0][column]": 0, "columns[0][data]": "received", "order[0][dir]": "desc"}

    def task_showing_progress() -> dict | None:
        rows = flower(stack, "/tasks/datatable", params=query).json()["data"]
        return next((r for r in rows if r["uuid"] == job_id and "progress: images" in str(r["result"])
                     and 0 < int(str(r["result"]).split()[-1].split("/")[0]) < 8), None)

    seen = wait_until(task_showing_progress, 60, "a task of the job showing its progress in Flower", interval=0.3)
    assert seen["result"].endswith("/8")
    queue.wait(job_id, timeout=120)
    everything = flower(stack, "/api/tasks").text + str(flower(stack, "/tasks/datatable", params=query).json())
    assert job_id in everything
    for secret in secrets_of(stack, sandbox):
        assert secret not in everything


def test_browser_sees_job_tasks_and_progress_and_no_secret(stack, store, queue, sandbox, chromium):
    import base64

    job_id = running_batch(sandbox, store, queue, images=10)
    token = base64.b64encode(f"{stack.flower_user}:{stack.flower_password}".encode()).decode()
    chromium.execute_cdp_cmd("Network.enable", {})
    chromium.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})

    def page_with_progress() -> str | None:
        chromium.get(stack.flower_url + "/tasks")
        time.sleep(1.5)  # the table fills from Flower's own API call
        page = chromium.page_source
        return page if job_id in page and re.search(r"progress: images [1-9]\d*/10", page) else None

    try:
        page = wait_until(page_with_progress, 60, "the batch's progress on the page", interval=0)
    finally:
        OUTPUT.mkdir(exist_ok=True)
        chromium.save_screenshot(str(OUTPUT / "flower-tasks.png"))
    assert "immersity.batch" in page and "immersity.item" in page
    assert job_id in page
    assert re.search(r"progress: images [1-9]\d*/10", page), "the batch's progress is not on the page"
    for secret in secrets_of(stack, sandbox):
        assert secret not in page
    queue.wait(job_id, timeout=120)
