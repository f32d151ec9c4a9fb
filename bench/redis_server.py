"""A throwaway redis-server for a benchmark: no persistence, on a free loopback port."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from devstack.loopback import free_port
from devstack.redis_service import redis_answers, redis_server_binary
from devstack.waiting import wait_until


@contextmanager
def redis_server() -> Iterator[redis.Redis]:
    port, data = free_port(), tempfile.mkdtemp(prefix="bench-redis-")
    process = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", data], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: redis_answers(url), 20, "redis-server")
        yield redis.Redis.from_url(url, decode_responses=True)
    finally:
        process.terminate()
        process.wait(20)
        shutil.rmtree(data, ignore_errors=True)
