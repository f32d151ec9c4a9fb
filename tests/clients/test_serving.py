"""How the stand-ins are served: connections kept alive as the vendors' servers and S3 keep them,
an empty body announced with Expect: 100-continue answered, a connection dropped on purpose."""
from __future__ import annotations

import http.client
import socket

import pytest

from sandbox.serving import SOCKET_KEY, KeepAliveServer


def app(environ, start_response):
    if environ["PATH_INFO"] == "/drop":
        environ[SOCKET_KEY].shutdown(socket.SHUT_RDWR)
        raise ConnectionAbortedError("dropped on purpose")
    body = environ["wsgi.input"].read()
    answer = f"{environ['REQUEST_METHOD']} {len(body)}".encode()
    start_response("200 OK", [("Content-Length", str(len(answer)))])
    return [answer]


@pytest.fixture(scope="module")
def served():
    server = KeepAliveServer(app, "127.0.0.1", 0, "test").start()
    yield server
    server.stop()


def connect(server: KeepAliveServer) -> http.client.HTTPConnection:
    host, port = server.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=5)


def test_requests_share_one_connection(served):
    conn = connect(served)
    conn.request("GET", "/a")
    first = conn.getresponse()
    assert first.read() == b"GET 0" and first.getheader("Connection") != "close"
    local = conn.sock.getsockname()
    conn.request("PUT", "/b", body=b"12345")
    assert conn.getresponse().read() == b"PUT 5"
    assert conn.sock.getsockname() == local      # the same TCP connection


def test_an_empty_body_sent_with_expect_continue_is_answered(served):
    # boto3 sends an empty object's PUT this way.
    with socket.create_connection(served.url.removeprefix("http://").split(":"), timeout=5) as sock:
        sock.sendall(b"PUT /empty HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n")
        answer = b""
        while not answer.endswith(b"PUT 0"):
            chunk = sock.recv(4096)
            assert chunk, f"the connection closed after {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")


def test_a_dropped_connection_answers_nothing(served):
    conn = connect(served)
    conn.request("GET", "/drop")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()


def test_a_body_over_a_gibibyte_is_taken(served):
    """No vendor document names a largest request (a DroneMapper survey in one request can be GiBs):
    a 2 GiB body is read, not refused with 413 as waitress does past 1 GiB by default."""
    with socket.create_connection(served.url.removeprefix("http://").split(":"), timeout=1) as sock:
        sock.sendall(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2 << 30) + b"x" * 65536)
        with pytest.raises(socket.timeout):     # waiting for the rest of the body, not answering
            sock.recv(4096)
