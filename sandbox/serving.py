"""Serving a stand-in's WSGI app on loopback: waitress, from a background thread or the main one.

The real vendors' servers, their CDNs and S3 keep HTTP/1.1 connections open between requests;
werkzeug's development server closes every one, so a client there pays a new TCP connection (and
the server a new thread) per request, which the benchmarks would charge to geoqueue.

Each request's environ carries its client socket (SOCKET_KEY), so fault injection can close a
connection without answering, as a crashed proxy would. A body shorter than its Content-Length
needs no socket: waitress closes the connection after it, and the client reads a short body.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import create_server
from waitress.task import WSGITask

SOCKET_KEY = "sandbox.socket"

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

# A stand-in holds some calls for seconds (Immersity's disparity, the latency it is told to add),
# each on a thread of its own: enough threads for the benchmarks' hundred calls in flight and more.
THREADS = 256
CONNECTIONS = 2000
BODY_IN_MEMORY = 64 * 1024 * 1024   # images and uploads stay in memory instead of temporary files
# The vendors' documents name no largest request; waitress refuses bodies over 1 GiB unless told
# otherwise, with a 413 no vendor documents, and a DroneMapper survey sent in one request can be larger.
MAX_BODY = 1 << 40


class _SocketTask(WSGITask):
    def get_environment(self) -> dict:
        environ = super().get_environment()
        environ[SOCKET_KEY] = self.channel.socket
        return environ


class _Parser(HTTPRequestParser):
    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        # waitress 3.0.2 answers "Expect: 100-continue" on an empty body with 100 Continue and then
        # never serves the request; boto3 sends such a PUT for an empty object. With no body to
        # wait for, the final answer alone is what RFC 9110 (10.1.1) allows.
        if not self.chunked and self.content_length == 0:
            self.expect_continue = False


class _Channel(HTTPChannel):
    task_class = _SocketTask
    parser_class = _Parser


class KeepAliveServer:
    """A WSGI app served with keep-alive connections and a pool of threads."""

    def __init__(self, app: WSGIApp, host: str, port: int, name: str, threads: int = THREADS) -> None:
        self._map: dict = {}
        self._server = create_server(
            app, map=self._map, host=host, port=port, threads=threads, ident=name,
            connection_limit=CONNECTIONS, asyncore_use_poll=True,   # poll: no 1,024-descriptor ceiling
            inbuf_overflow=BODY_IN_MEMORY, outbuf_overflow=BODY_IN_MEMORY, max_request_body_size=MAX_BODY)
        self._server.channel_class = _Channel
        self.url = f"http://{host}:{self._server.effective_port}"
        self._thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        # Queue-depth warnings say only that every thread is busy, as the benchmarks make them on purpose.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    def start(self) -> KeepAliveServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.run()

    def stop(self) -> None:
        self._server.task_dispatcher.shutdown(timeout=1)
        wasyncore.close_all(self._map)
