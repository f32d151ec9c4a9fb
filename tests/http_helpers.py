"""HTTP helpers for the API tests: calls with the stack's key, a second API process with other
settings, and a webhook receiver that verifies Standard Webhooks signatures."""
from __future__ import annotations

import json
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from standardwebhooks import Webhook

from devstack.local_stack import REPO_ROOT, free_port, local_argv, wait_until
from devstack.processes import PROCESSES


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
        wait_until(lambda: stack._http_ok(url + "/healthz"), 30, "the second API")
        yield url
    finally:
        process.terminate()
        process.wait(20)


@dataclass
class Receiver:
    """A webhook receiver on loopback: verifies each request's signature with the fleet's secret,
    answers 500 to the first `fail_first` requests, and keeps every request it saw."""

    secret: str
    fail_first: int = 0
    seen: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except Exception as exc:  # recorded, and the test asserts on it
                    payload, verified = {"error": repr(exc)}, False
                failing = len(receiver.seen) < receiver.fail_first
                receiver.seen.append({"path": self.path, "headers": headers, "body": body.decode(),
                                      "payload": payload, "verified": verified, "answered": 500 if failing else 204,
                                      "at": time.time()})
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/geoqueue?token=receiver-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            assert time.monotonic() < deadline, f"{len(self.seen)} of {count} webhook requests arrived"
            time.sleep(0.05)
        return self.seen

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
