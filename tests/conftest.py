"""The real stack for the tests: a redis-server, moto's S3 server, the sandbox over HTTP and
real worker processes, started once per session on loopback."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest
import redis
import requests

from devstack.local_stack import LocalStack
from devstack.waiting import wait_until
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
    # Jobs read the fleet's bucket, and a bucket that does not exist: the errors of a missing bucket.
    "GEOQUEUE_S3_READABLE": "s3://geoqueue/ s3://no-such-bucket-4711/",
}


# DroneMapper's stand-in with a short task clock and small assets keeps the suite quick.
DRONEMAPPER_FAST = {"upload_to_node_s": 0.1, "queued_s": 0.3, "running_s": 2.0, "action_delay_s": 0.1,
                    "console_lines": 30, "orthophoto_px": 256, "dsm_px": 64, "pointcloud_points": 2000}


# The stack's processes get a PATH with nothing on it, so that a program of ours found through PATH
# (celery, python, flower, redis-server) fails every test, as it would on a fresh machine.
EMPTY_PATH = tempfile.mkdtemp(prefix="geoqueue-empty-path-")


# The run directories (logs, Redis data) of the stacks this process started: they go at the end of
# a session where every test passed, and stay to be read after a failure.
RUN_DIRS: list[str] = []


def start_stack(flower: bool = True, beat: bool = True, worker_queues=("control", "transfer"),
                **settings: str) -> LocalStack:
    stack = LocalStack(settings_env={"PATH": EMPTY_PATH, **TEST_SETTINGS, **settings}, isolated=True, flower=flower,
                       beat=beat, worker_queues=worker_queues)
    RUN_DIRS.append(str(stack.run_dir))
    return stack.start()


def pytest_sessionfinish(session, exitstatus) -> None:
    shutil.rmtree(EMPTY_PATH, ignore_errors=True)
    if session.testsfailed == 0 and exitstatus == 0:
        for run_dir in RUN_DIRS:
            shutil.rmtree(run_dir, ignore_errors=True)


# The one way tests wait is devstack's `wait_until(check, timeout, what)`: check()'s first truthy answer.


def wait_for_done(queue: GeoQueue, job_id: str, done: int, timeout: float = 60) -> None:
    """Until the job reports `done` items, so that a fault lands while its work is under way."""
    wait_until(lambda: queue.status(job_id).done >= done, timeout, f"job {job_id} at {done} done", interval=0.05)


class SandboxControl:
    """The stand-ins' control endpoints (sandbox/server.py): a vendor's options and faults, what it
    counted and journaled, and its state."""

    def __init__(self, url: str):
        self.url = url

    def _call(self, method: str, path: str, **kwargs):
        response = requests.request(method, f"{self.url}/_sandbox/{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Every vendor back to its default options, no faults, nothing counted."""
        self._call("POST", "reset")

    def configure(self, vendor: str, **options) -> None:
        self._call("POST", f"config/{vendor}", json=options)

    def faults(self, vendor: str, **faults) -> None:
        self._call("POST", f"faults/{vendor}", json=faults)

    def counters(self, vendor: str) -> dict[str, int]:
        return self._call("GET", "counters")[vendor]

    def disparity_calls_for(self, output_uri: str) -> int:
        """Immersity's disparity calls that wrote `output_uri`."""
        return self.counters("immersity").get("disparity:/" + output_uri[len("s3://"):], 0)

    def captures(self) -> dict[str, int]:
        """Immersal's capture calls, by workspace image."""
        return {k: v for k, v in self.counters("immersal").items() if k.startswith("capture:")}

    def journal(self, vendor: str) -> list[dict]:
        return self._call("GET", f"journal/{vendor}")

    def status(self, vendor: str) -> dict:
        return self._call("GET", f"status/{vendor}")


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


@pytest.fixture
def sandbox_url(stack) -> str:
    """Where the stand-ins listen: the stack's (tests/clients/ points it at a stand-alone server)."""
    return stack.sandbox_url


@pytest.fixture
def sandbox(sandbox_url) -> SandboxControl:
    return SandboxControl(sandbox_url)


@pytest.fixture(autouse=True)
def clean_sandbox(request):
    """Every test starts with the vendors' default options, no faults and zero counters."""
    if "stack" in request.fixturenames:
        stack = request.getfixturevalue("stack")
        request.getfixturevalue("sandbox").reset()
        # The reset vendor forgot the tokens it issued; so does the fleet's token cache.
        client = redis.Redis.from_url(stack.redis_url)
        for key in client.scan_iter("gq:token:*"):
            client.delete(key)
    yield


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium driven by Selenium, for the pages people look at (Flower, the job pages)."""
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True,
                       capture_output=True)
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1600,1000"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()
