"""The time limits hold in a threads pool too: past the soft limit the task is stopped and tried
again by the guard's rules, past the hard limit the worker exits so that its messages come back."""
from __future__ import annotations

import threading
import time

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from geoqueue import GeoQueue
from tests.conftest import start_stack
from tests.inputs import put_images
from workers.watchdog import Watchdog


def test_the_soft_limit_stops_a_task_in_its_thread_and_the_hard_limit_exits():
    seen, exits = [], []
    watchdog = Watchdog(soft_seconds=0.2, hard_seconds=5.0, exit=exits.append)

    def task() -> None:
        watchdog.started("t-1", "slow.task")
        try:
            while True:
                time.sleep(0.01)
        except SoftTimeLimitExceeded:
            seen.append("soft")
        finally:
            watchdog.finished("t-1")

    worker = threading.Thread(target=task)
    worker.start()
    time.sleep(0.3)
    watchdog.check()
    worker.join(timeout=5)
    assert seen == ["soft"] and not worker.is_alive() and exits == []

    stop = threading.Event()

    def stubborn() -> None:                        # a task that swallows the soft limit
        watchdog.started("t-2", "stuck.task")
        while not stop.is_set():
            try:
                time.sleep(0.01)
            except SoftTimeLimitExceeded:
                seen.append("swallowed")
        watchdog.finished("t-2")

    worker = threading.Thread(target=stubborn)
    worker.start()
    time.sleep(0.1)
    started = watchdog.running["t-2"].started
    watchdog.check(now=started + 1.0)
    time.sleep(0.1)
    assert exits == []
    watchdog.check(now=started + 6.0)
    stop.set()
    worker.join(timeout=5)
    assert seen == ["soft", "swallowed"] and exits == [70]


@pytest.fixture(scope="module")
def threads_fleet():
    stack = start_stack(flower=False, beat=False, worker_queues=("control",), GEOQUEUE_TASK_TIME_LIMIT="12",
                        GEOQUEUE_IMMERSITY_TIMEOUT="9", GEOQUEUE_CALL_RETRY_SECONDS="5")
    stack.start_worker("transfer", name="threads", pool="threads", concurrency=8)
    stack.wait_for_workers(["threads"])
    yield stack
    stack.stop()


@pytest.fixture
def sandbox_url(threads_fleet) -> str:
    """The shared `sandbox` fixture controls this module's stack."""
    return threads_fleet.sandbox_url


def test_a_task_past_its_soft_limit_in_a_threads_worker_is_tried_again_and_pays_once(threads_fleet, sandbox):
    stack, store = threads_fleet, threads_fleet.object_store()
    queue = GeoQueue(stack.redis_url)
    [image] = put_images(store, 1)
    # Two calls of 6 s: the soft limit (11 s) passes during the second; it returns, the task stops.
    sandbox.configure("immersity", processing_delay_s=6)
    job = queue.wait(queue.submit("immersity.disparity", {"image": image.uri, "animation": {"animationType": "gif"}}),
                     timeout=120)
    assert job.state == "succeeded" and job.credits == 20
    assert "ran past its soft time limit" in stack.logs("threads")
    served = sandbox.counters("immersity")
    assert served["disparity"] == 1 and served["animation"] == 1
