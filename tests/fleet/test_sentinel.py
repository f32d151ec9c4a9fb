"""The fleet on Redis Sentinel: broker, result backend, ledger and beat all find the master
through the sentinels."""
from __future__ import annotations

import subprocess

import redis

from devstack.loopback import free_port
from devstack.redis_service import redis_answers, redis_server_binary
from geoqueue import GeoQueue
from tests.conftest import start_stack, wait_until
from tests.inputs import put_images


def test_jobs_run_with_redis_behind_a_sentinel(tmp_path):
    master_port, sentinel_port = free_port(), free_port()
    (tmp_path / "sentinel.conf").write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor geoqueue-master 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds geoqueue-master 5000\n")
    servers = [
        subprocess.Popen([redis_server_binary(), "--port", str(master_port), "--bind", "127.0.0.1", "--save", "",
                          "--dir", str(tmp_path)], stdout=subprocess.DEVNULL),
        subprocess.Popen([redis_server_binary(), str(tmp_path / "sentinel.conf"), "--sentinel"],
                         stdout=subprocess.DEVNULL),
    ]
    url = f"sentinel://127.0.0.1:{sentinel_port}/0"
    try:
        wait_until(lambda: redis_answers(url, "geoqueue-master"), 30, "the sentinel's master")
        stack = start_stack(flower=False, GEOQUEUE_REDIS_URL=url, GEOQUEUE_REDIS_SENTINEL_MASTER="geoqueue-master")
        try:
            assert "redis" not in stack.processes  # it used the sentinel's master, started none of its own
            queue = GeoQueue(url, sentinel_master="geoqueue-master")
            [image] = put_images(stack.object_store(), 1)
            job = queue.wait(queue.submit("immersity.disparity", {"image": image.uri}), timeout=60)
            assert job.state == "succeeded"
            master = redis.Redis(port=master_port, decode_responses=True)
            assert master.hget(f"gq:job:{job.id}", "state") == "succeeded"
            wait_until(lambda: any(master.scan_iter("redbeat:*lock")), 20, "RedBeat's lock on the master")
        finally:
            stack.stop()
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
