"""No job is lost between producer and broker, and what stalls shows: a submit that could not send
can be sent again with the same id, the sweeper sends recorded jobs whose message is in no queue,
waiting jobs their poller forgot are polled again, and the exporter tells when each periodic task
last ran and how old the oldest queued, running and waiting jobs are."""
from __future__ import annotations

import time

import pytest
import redis
from celery import Celery

from geoqueue import GeoQueue, SubmitFailed
from tests.conftest import DRONEMAPPER_FAST, start_stack, wait_until
from tests.inputs import put_images, put_survey
from tests.probes import scrape


@pytest.fixture(scope="module")
def fleet():
    # No beat: the test sends the sweeper itself, so nothing happens behind its back.
    stack = start_stack(flower=False, beat=False, GEOQUEUE_SUBMIT_GRACE="2", GEOQUEUE_UNPOLLED_AFTER="3")
    yield stack
    stack.stop()


@pytest.fixture
def sandbox_url(fleet) -> str:
    """The shared `sandbox` fixture controls this module's stack."""
    return fleet.sandbox_url


def sweep(stack) -> None:
    app = Celery(broker=stack.redis_url)
    try:
        app.send_task("geoqueue.sweep", queue="control")
    finally:
        app.close()


def broker_down(queue: GeoQueue) -> GeoQueue:
    """The same producer, with its broker connection pointing where nothing listens."""
    queue.celery.conf.broker_url = "redis://127.0.0.1:9/0"
    queue.celery.conf.broker_connection_retry = False
    queue.celery.conf.broker_connection_max_retries = 0
    queue.celery.conf.task_publish_retry = False
    return queue


def test_a_submit_that_could_not_send_names_its_job_and_sends_when_submitted_again(fleet):
    store = fleet.object_store()
    [image] = put_images(store, 1)
    with pytest.raises(SubmitFailed) as failed:
        broker_down(GeoQueue(fleet.redis_url)).submit("immersity.disparity", {"image": image.uri})
    job_id = failed.value.job_id
    queue = GeoQueue(fleet.redis_url)
    assert queue.status(job_id).state == "queued"
    assert queue.submit("immersity.disparity", {"image": image.uri}, job_id=job_id) == job_id
    assert queue.wait(job_id, timeout=60).state == "succeeded"


def test_the_sweeper_sends_a_job_whose_submit_failed_and_one_whose_message_was_lost(fleet):
    store, queue = fleet.object_store(), GeoQueue(fleet.redis_url)
    [first, second] = put_images(store, 2)
    with pytest.raises(SubmitFailed) as failed:
        broker_down(GeoQueue(fleet.redis_url)).submit("immersity.disparity", {"image": first.uri})
    never_sent = failed.value.job_id
    # A message lost on the way: sent while no worker consumes the queue, then gone from Redis.
    control = Celery(broker=fleet.redis_url)
    try:
        control.control.cancel_consumer("transfer", destination=["transfer@" + host(fleet)], reply=True)
        lost = queue.submit("immersity.disparity", {"image": second.uri})
        redis.Redis.from_url(fleet.redis_url).delete("transfer")
        control.control.add_consumer("transfer", destination=["transfer@" + host(fleet)], reply=True)
    finally:
        control.close()
    time.sleep(2.5)                         # past GEOQUEUE_SUBMIT_GRACE
    sweep(fleet)
    for job_id in (never_sent, lost):
        assert queue.wait(job_id, timeout=60).state == "succeeded"
    assert "its message is in no queue: sending it" in fleet.logs("control")


def host(stack) -> str:
    app = Celery(broker=stack.redis_url)
    try:
        names = [name for reply in app.control.ping(timeout=2) for name in reply]
    finally:
        app.close()
    return next(name for name in names if name.startswith("transfer@")).split("@", 1)[1]


def test_a_waiting_job_its_poller_forgot_is_polled_again_and_liveness_shows(fleet, sandbox):
    store, queue = fleet.object_store(), GeoQueue(fleet.redis_url)
    sandbox.configure("dronemapper", **DRONEMAPPER_FAST)
    prefix, _ = put_survey(store, 3)
    job_id = queue.submit("dronemapper.process_survey", {"images": prefix})
    wait_until(lambda: queue.status(job_id).state == "waiting", 60, "the survey waiting on the vendor")
    time.sleep(3.5)                         # past GEOQUEUE_UNPOLLED_AFTER; no beat, so no poller ran
    metrics = scrape(fleet.metrics_url)
    assert metrics['geoqueue_waiting_unpolled_jobs{vendor="dronemapper"}'] == 1
    assert metrics['geoqueue_oldest_job_age_seconds{state="waiting"}'] >= 3

    def finished_or_swept() -> bool:
        if queue.status(job_id).finished:
            return True
        sweep(fleet)                        # each sweep finds it forgotten again and sends the poller
        return False

    wait_until(finished_or_swept, 90, "the survey polled to its end", interval=3.5)
    assert queue.status(job_id).state == "succeeded"
    assert "were not looked at for 3 s" in fleet.logs("control")
    metrics = scrape(fleet.metrics_url)
    for task in ("geoqueue.sweep", "dronemapper.poll"):
        assert time.time() - metrics[f'geoqueue_last_run_timestamp_seconds{{task="{task}"}}'] < 120
