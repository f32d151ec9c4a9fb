"""A webhook receiver on loopback, as a producer app would run one: it verifies each request's
Standard Webhooks signature with the fleet's secret and keeps what it saw. `fail_first` makes it
answer 500 to its first requests, to watch the fleet retry. Used by the demo and the tests."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Receiver:
    secret: str
    fail_first: int = 0
    token: str = "receiver-token"  # in the URL's query, as many receivers authenticate the sender
    seen: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload, verified = Webhook(receiver.secret).verify(body, headers), True
                except WebhookVerificationError as exc:
                    payload, verified = {"error": str(exc)}, False
                failing = len(receiver.seen) < receiver.fail_first
                status = 500 if failing else (204 if verified else 401)
                receiver.seen.append({"path": self.path, "headers": headers, "body": body.decode(errors="replace"),
                                      "payload": payload, "verified": verified, "answered": status, "at": time.time()})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/geoqueue?token={self.token}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.seen)} of {count} webhook requests arrived in {timeout:g}s")
            time.sleep(0.05)
        return self.seen

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
