"""The HTTP API under abuse, as an operator would try it: many open event streams, bodies of any
size and shape, stolen or replayed job-page cookies, a slow Flower, and `python -m api --help`.
Everything runs against real API processes of the stack (a second one where a setting differs)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from http.cookiejar import Cookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import redis
import requests

from api.keys import new_key
from config.settings import Settings
from devstack.local_stack import REPO_ROOT, free_port, wait_until
from tests.http_helpers import api, other_api

# --- event streams ---


def open_stream(url: str, path: str, key: str) -> requests.Response:
    """An event stream left open: its answer's head is read, its body is not."""
    return requests.get(url + path, headers={"Authorization": f"Bearer {key}"}, stream=True, timeout=30)


def events_until_end(response: requests.Response, timeout: float = 60) -> list[tuple[str, dict]]:
    """Every (event, data) of an open stream until the server ends it."""
    events, kind, deadline = [], None, time.monotonic() + timeout
    for line in response.iter_lines(decode_unicode=True):
        assert time.monotonic() < deadline, "the event stream did not end"
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[len("data: "):])))
    return events


def first_event_naming(response: requests.Response, job_id: str) -> dict:
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: ") and json.loads(line[len("data: "):])["id"] == job_id:
            return json.loads(line[len("data: "):])
    raise AssertionError(f"the stream ended without an event of {job_id}")


def pattern_subscribers(stack) -> int:
    """Redis connections subscribed to a pattern (the API's event streams)."""
    return sum(1 for client in redis.Redis.from_url(stack.redis_url).client_list() if int(client.get("psub", 0)))


def test_many_open_streams_share_one_subscription_and_never_break_another(stack, queue):
    with ExitStack() as held, other_api(stack, GEOQUEUE_API_MAX_STREAMS_PER_KEY="1000") as url:
        subscribed_before = pattern_subscribers(stack)
        streams = [held.enter_context(open_stream(url, "/v1/events", stack.api_key)) for _ in range(130)]
        assert all(s.status_code == 200 for s in streams)
        # More than a connection pool holds (100), yet one job's stream still follows its job.
        job_id = f"fanout-{free_port()}"
        queue.ledger.create(job_id, "dronemapper.remove", {})
        with open_stream(url, f"/v1/jobs/{job_id}/events", stack.api_key) as one:
            assert one.status_code == 200
            wait_until(lambda: queue.ledger.get(job_id), 5, "the job")
            time.sleep(0.5)  # the stream has read the job; its end comes as an event
            queue.ledger.transition(job_id, "canceled")
            states = [e["state"] for kind, e in events_until_end(one) if kind == "state"]
        assert states == ["queued", "canceled"]
        for stream in (streams[0], streams[-1]):
            assert first_event_naming(stream, job_id)["state"] in ("queued", "canceled")
        assert pattern_subscribers(stack) - subscribed_before <= 1  # one subscription for 131 streams


def test_open_streams_per_key_are_capped(stack):
    other, other_entry = new_key("other", ["read"])
    keys = f"{stack.env['GEOQUEUE_API_KEYS']} {other_entry}"
    with ExitStack() as held, other_api(stack, GEOQUEUE_API_MAX_STREAMS_PER_KEY="3", GEOQUEUE_API_KEYS=keys) as url:
        streams = [held.enter_context(open_stream(url, "/v1/events", stack.api_key)) for _ in range(3)]
        assert [s.status_code for s in streams] == [200, 200, 200]
        with open_stream(url, "/v1/events", stack.api_key) as refused:
            assert refused.status_code == 429
            assert refused.json()["error"] == "TooManyStreams" and "3" in refused.json()["detail"]
        with open_stream(url, "/v1/events", other) as another_key:
            assert another_key.status_code == 200  # a cap per key: another key is not held back
        streams[0].close()

        def reopened() -> bool:
            response = held.enter_context(open_stream(url, "/v1/events", stack.api_key))
            return response.status_code == 200

        wait_until(reopened, 20, "a stream in place of the closed one")


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


LIMIT = 1 << 20  # GEOQUEUE_API_MAX_BODY_BYTES
MULTIPART_FILE = b'--b\r\nContent-Disposition: form-data; name="key"; filename="k.bin"\r\n\r\n' + b"k" * LIMIT
MANY_FIELDS = b"&".join(b"f%d=" % n + b"v" * (256 << 10) for n in range(5))


@pytest.mark.parametrize("path, content_type, data, statuses", [
    ("/ui/login", "multipart/form-data; boundary=b", MULTIPART_FILE, {400, 413}),  # a file: spooled to disk before
    ("/ui/login", "application/x-www-form-urlencoded", MANY_FIELDS, {400, 413}),  # big fields: read into memory before
    ("/v1/jobs", "application/json", b'{"name": "' + b"x" * LIMIT + b'"}', {413}),
])
def test_a_body_sent_in_chunks_is_refused_without_being_read_to_its_end(stack, path, content_type, data, statuses):
    chunk = b"%x\r\n" % len(data) + data + b"\r\n"  # no last chunk: the sender would go on
    head = (f"POST {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {stack.api_key}\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert status_of_raw_request(stack.api_url, head, chunk) in statuses


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


# --- the job pages' sign-in ---


def sign_in(url: str, key: str) -> requests.Response:
    return requests.post(url + "/ui/login", data={"key": key}, allow_redirects=False, timeout=10)


def cookie_of(response: requests.Response) -> Cookie:
    """The cookie a sign-in sets (one that clears an older cookie is no cookie)."""
    [cookie] = list(response.cookies)
    return cookie


def test_the_pages_cookie_is_an_opaque_read_only_session_that_logout_ends(stack):
    signed_in = sign_in(stack.api_url, stack.api_key)  # a key with submit and read
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ui/jobs"
    cookie = cookie_of(signed_in)
    session = cookie.value
    assert stack.api_key not in signed_in.headers["set-cookie"] and len(session) >= 32
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite").lower() == "strict"
    assert not cookie.secure  # served on loopback over plain HTTP
    cookie = {"Cookie": f"{cookie.name}={session}"}

    def call(method: str, path: str, headers: dict, **kwargs) -> requests.Response:
        return requests.request(method, stack.api_url + path, headers=headers, allow_redirects=False, timeout=10,
                                **kwargs)

    assert call("GET", "/v1/jobs", cookie).status_code == 200
    assert call("GET", "/ui/jobs", cookie).status_code == 200
    # Signed in read-only: the session neither submits nor cancels, and it is not a key.
    assert call("POST", "/v1/jobs", cookie, json={"name": "immersal.list_maps", "params": {}}).status_code == 401
    assert call("DELETE", "/v1/jobs/any", cookie).status_code == 401
    assert call("GET", "/v1/jobs", {"Authorization": f"Bearer {session}"}).status_code == 401
    stored = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    assert not any(session in key or session in (stored.get(key) or "") for key in stored.scan_iter("gq:ui*"))

    logged_out = call("POST", "/ui/logout", cookie)
    assert logged_out.status_code == 303
    # The cookie kept (or stolen) before the logout opens nothing after it.
    assert call("GET", "/v1/jobs", cookie).status_code == 401
    assert call("GET", "/ui/jobs", cookie).headers["location"] == "/ui/login"


def test_a_submit_only_key_cannot_sign_in(stack):
    submitter, entry = new_key("submitter", ["submit"])
    with other_api(stack, GEOQUEUE_API_KEYS=f"{stack.env['GEOQUEUE_API_KEYS']} {entry}") as url:
        refused = sign_in(url, submitter)
        assert refused.headers["location"] == "/ui/login?failed=true" and "set-cookie" not in refused.headers


def test_the_cookie_is_secure_behind_a_tls_proxy(stack):
    with other_api(stack, GEOQUEUE_API_COOKIE_SECURE="true") as url:
        # The proxy speaks TLS to the browser and plain HTTP to the API.
        assert cookie_of(sign_in(url, stack.api_key)).secure
    # Unset, it is on wherever the API listens beyond loopback.
    from api.sessions import cookies_secure

    assert cookies_secure(Settings(api_address="0.0.0.0")) and cookies_secure(Settings(api_address="10.1.2.3"))
    assert not cookies_secure(Settings(api_address="127.0.0.1")) and not cookies_secure(Settings(api_address="::1"))
    assert not cookies_secure(Settings(api_address="0.0.0.0", api_cookie_secure=False))


# --- page headers ---


def test_pages_send_a_content_security_policy(stack):
    for path in ("/ui/login", "/ui/jobs"):
        page = api(stack, "GET", path, allow_redirects=False)
        policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";")
                      if part.strip())
        assert policy["script-src"] == "'self'" and policy["object-src"] == "'none'"
        assert "unsafe-inline" not in policy["style-src"] and policy["frame-ancestors"] == "'none'"


# --- Flower behind the job pages ---


class FakeFlower(BaseHTTPRequestHandler):
    """Flower's task API, answering after `delay` seconds and noting every Authorization it is sent."""
    delay = 0.0
    seen: list[str | None] = []

    def do_GET(self):
        type(self).seen.append(self.headers.get("Authorization"))
        time.sleep(self.delay)
        body = json.dumps({"task-1": {"name": "immersity.item", "state": "SUCCESS"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def fake_flower(delay: float):
    handler = type("Flower", (FakeFlower,), {"delay": delay, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads, server.block_on_close = True, False  # its slow answers are not waited for
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


def test_job_pages_do_not_wait_on_a_slow_flower_nor_send_it_credentials_from_a_browser_url(stack, queue):
    job_id = f"flower-{free_port()}"
    queue.ledger.create(job_id, "dronemapper.remove", {})
    with fake_flower(delay=0.0) as (public_url, public_seen), fake_flower(delay=8.0) as (internal_url, internal_seen), \
            other_api(stack, GEOQUEUE_API_FLOWER_URL=public_url, GEOQUEUE_API_FLOWER_API_URL=internal_url) as url:
        bearer = {"Authorization": f"Bearer {stack.api_key}"}
        lookups = [threading.Thread(target=requests.get, args=(f"{url}/ui/jobs/{job_id}/tasks",),
                                    kwargs={"headers": bearer, "timeout": 30}) for _ in range(60)]
        for lookup in lookups:
            lookup.start()
        started = time.monotonic()
        page = requests.get(f"{url}/ui/jobs/{job_id}", headers=bearer, timeout=30)
        listing = requests.get(f"{url}/ui/jobs", headers=bearer, timeout=30)
        assert page.status_code == listing.status_code == 200
        assert time.monotonic() - started < 2, "the pages waited on Flower"
        tasks = requests.get(f"{url}/ui/jobs/{job_id}/tasks", headers=bearer, timeout=30).json()
        assert f"{public_url}/task/{job_id}" in [task["url"] for task in tasks["tasks"]]
        for lookup in lookups:
            lookup.join()
    assert public_seen == []  # the browser's address of Flower is only linked to
    assert internal_seen and all(auth and auth.startswith("Basic ") for auth in internal_seen)


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
