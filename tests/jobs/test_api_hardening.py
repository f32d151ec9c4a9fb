"""The HTTP API under abuse, as an operator would try it: many open event streams, bodies of any
size and shape, stolen or replayed job-page cookies, a slow Flower, and `python -m api --help`.
Everything runs against real API processes of the stack (a second one where a setting differs)."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from devstack.local_stack import REPO_ROOT, free_port
from tests.http_helpers import api

# --- request bodies ---


def status_of_raw_request(url: str, head: str, body: bytes = b"") -> int:
    """The status of a request sent as bytes: its head, then `body` (possibly less than it declares)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, "the API closed the connection without an answer"
            answer += chunk
    return int(answer.split()[1])


@pytest.mark.parametrize("method, path", [
    ("POST", "/ui/login"), ("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("DELETE", "/v1/jobs/any"), ("GET", "/healthz"),
])
def test_every_route_refuses_a_body_declared_over_the_limit_without_reading_it(stack, method, path):
    head = (f"{method} {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {stack.api_key}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 314572800\r\n\r\n")
    started = time.monotonic()
    assert status_of_raw_request(stack.api_url, head) == 413  # 300 MiB declared, none sent: no wait for it
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=b", "application/x-www-form-urlencoded"])
def test_a_login_form_sent_in_chunks_stops_at_the_limit(stack, content_type):
    limit = 1 << 20
    if content_type.startswith("multipart"):
        part = b'--b\r\nContent-Disposition: form-data; name="key"; filename="k.bin"\r\n\r\n'
        data = part + b"k" * (limit + 100_000)  # a file, as the login form would spool to disk
    else:
        data = b"&".join(b"f%d=" % n + b"v" * (256 << 10) for n in range(5))  # many big fields
    chunk = b"%x\r\n" % len(data) + data + b"\r\n"  # no last chunk: the sender would go on
    head = f"POST /ui/login HTTP/1.1\r\nHost: api\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert status_of_raw_request(stack.api_url, head, chunk) == 413


# --- JSON bodies ---


def nested(depth: int) -> str:
    return '{"name": "immersity.disparity", "params": {"image": ' + "[" * depth + "]" * depth + "}}"


@pytest.mark.parametrize("body, status", [
    (nested(100_000), 400),
    (nested(500), 400),
    ('{"name": "immersity.disparity", "params": {"image": ' + "1" * 5000 + "}}", 400),
    ('{"name": "immersity.disparity", "params": {"image": NaN}}', 400),
])
def test_json_of_any_shape_gets_a_4xx_never_a_500(stack, body, status):
    refused = api(stack, "POST", "/v1/jobs", data=body.encode(), headers={"content-type": "application/json"})
    assert refused.status_code == status, refused.text
    assert refused.json()["error"] == "MalformedJSON"


# --- cursors ---


@pytest.mark.parametrize("cursor", ["nan:page-1", "NaN:page-1", "-nan:x", "inf:page-1", "nan"])
def test_a_cursor_that_is_no_number_gets_422(stack, cursor):
    for path in ("/v1/jobs", "/ui/jobs"):
        refused = api(stack, "GET", path, params={"cursor": cursor})
        assert refused.status_code == 422, (path, refused.text)
        assert refused.json()["field"] == "cursor"


# --- the command ---


def test_python_m_api_help_prints_usage_and_serves_nothing():
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "GEOQUEUE_API_ADDRESS": "127.0.0.1", "GEOQUEUE_API_PORT": str(port)}
    shown = subprocess.run([sys.executable, "-m", "api", "--help"], cwd=REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=15)
    assert shown.returncode == 0 and shown.stdout.startswith("usage: python -m api")
    assert "GEOQUEUE_API_ADDRESS" in shown.stdout and "GEOQUEUE_API_PORT" in shown.stdout
    wrong = subprocess.run([sys.executable, "-m", "api", "--prot", "1"], cwd=REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=30)
    assert wrong.returncode == 2 and "usage:" in wrong.stderr
