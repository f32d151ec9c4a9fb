"""The stack's processes listen on loopback: a free port to give one, and an HTTP probe of it."""
from __future__ import annotations

import socket

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str, any_status: bool = False) -> bool:
    try:
        response = requests.get(url, timeout=1)
        return any_status or response.ok
    except requests.RequestException:
        return False
