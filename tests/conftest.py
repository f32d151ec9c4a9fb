"""The real stack for the tests: a redis-server, moto's S3 server, the sandbox over HTTP and
real worker processes, started once per session on loopback."""
from __future__ import annotations

import tempfile
import time

import pytest
import redis

from devstack.local_stack import LocalStack
from geoqueue import GeoQueue

# Short enough that a killed worker's messages come back within a test, and every limit below it.
TEST_SETTINGS = {
    "GEOQUEUE_VISIBILITY_TIMEOUT": "30",
    "GEOQUEUE_UNACKED_RESTORE_INTERVAL": "2",
    "GEOQUEUE_TASK_TIME_LIMIT": "28",
    "GEOQUEUE_IMMERSITY_TIMEOUT": "15",
    "GEOQUEUE_RETRY_BACKOFF_MAX": "8",
    "GEOQUEUE_CALL_RETRY_SECONDS": "12",
    "GEOQUEUE_CONTROL_CONCURRENCY": "2",
    "GEOQUEUE_TRANSFER_CONCURRENCY": "4",
    "GEOQUEUE_WEBHOOK_BACKOFF_INITIAL": "0.5",  # a failing receiver is tried again within seconds
}


# The stack's processes get a PATH with nothing on it, so that a program of ours found through PATH
# (celery, python, flower, redis-server) fails every test, as it would on a fresh machine.
EMPTY_PATH = tempfile.mkdtemp(prefix="geoqueue-empty-path-")


def start_stack(flower: bool = True, beat: bool = True, worker_queues=("control", "transfer"), **settings: str) -> LocalStack:
    return LocalStack(settings_env={"PATH": EMPTY_PATH, **TEST_SETTINGS, **settings}, isolated=True, flower=flower,
                      beat=beat, worker_queues=worker_queues).start()


def wait_for_done(queue: GeoQueue, job_id: str, done: int, timeout: float = 60) -> None:
    """Until the job reports `done` items, so that a fault lands while its work is under way."""
    deadline = time.monotonic() + timeout
    while queue.status(job_id).done < done:
        assert time.monotonic() < deadline, f"job {job_id} did not reach {done} done in {timeout:g}s"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def stack():
    stack = start_stack()
    yield stack
    stack.stop()


@pytest.fixture
def queue(stack) -> GeoQueue:
    return GeoQueue(stack.redis_url)


@pytest.fixture
def store(stack):
    return stack.object_store()


@pytest.fixture(autouse=True)
def clean_sandbox(request):
    """Every test starts with the vendors' default options, no faults and zero counters."""
    if "stack" in request.fixturenames:
        stack = request.getfixturevalue("stack")
        stack.sandbox("POST", "/_sandbox/reset")
        # The reset vendor forgot the tokens it issued; so does the fleet's token cache.
        client = redis.Redis.from_url(stack.redis_url)
        for key in client.scan_iter("gq:token:*"):
            client.delete(key)
    yield
