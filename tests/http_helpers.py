"""HTTP helpers for the API tests: calls with the stack's key, server-sent events, a second API
process with other settings."""
from __future__ import annotations

import json
import subprocess
import time
from contextlib import contextmanager

import requests

from devstack.commands import REPO_ROOT, local_argv
from devstack.loopback import free_port, http_ok
from devstack.processes import PROCESSES
from devstack.waiting import wait_until


def api(stack, method: str, path: str, key: str | None = "stack", **kwargs) -> requests.Response:
    headers = kwargs.pop("headers", {})
    key = stack.api_key if key == "stack" else key
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return requests.request(method, stack.api_url + path, headers=headers, timeout=30, **kwargs)


def sse_events(stack, path: str, key: str | None = "stack", timeout: float = 120) -> list[tuple[str, dict]]:
    """Every (event, data) of a server-sent event stream until the server ends it."""
    events, kind = [], None
    with api(stack, "GET", path, key, stream=True) as response:
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + timeout
        for line in response.iter_lines(decode_unicode=True):
            assert time.monotonic() < deadline, "the event stream did not end"
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: ") and kind in ("state", "progress"):
                events.append((kind, json.loads(line[len("data: "):])))
    return events


@contextmanager
def other_api(stack, **settings: str):
    """The API in a process of its own, with the stack's settings but these (other keys, private
    callbacks refused); yields its URL."""
    port = free_port()
    env = {**stack.env, "GEOQUEUE_API_PORT": str(port), **settings}
    log = stack.run_dir / f"api-{port}.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(local_argv(PROCESSES["api"], env), env=env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(url + "/healthz"), 30, "the second API")
        yield url
    finally:
        process.terminate()
        process.wait(20)
