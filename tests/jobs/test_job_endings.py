"""Every job reaches an end state: bad input the producer could not see fails the job with a
typed error naming the field, an unexpected exception fails it with InternalError, and a job
that ends lets go of what it held. Nothing stays running or queued."""
from __future__ import annotations

import uuid

import redis
from celery import Celery

from devstack.waiting import wait_until
from geoqueue.routes import queue_for
from geoqueue.s3ref import S3Ref
from tests.inputs import BUCKET, prefix_of, put_images
from tests.probes import failed_with


def send_straight(stack, name: str, kwargs: dict, job_id: str | None = None) -> str:
    """A message sent with Celery alone, as Flower's async-apply or another language's client would."""
    app = Celery(broker=stack.redis_url)
    try:
        job_id = job_id or uuid.uuid4().hex
        app.send_task(name, kwargs=kwargs, task_id=job_id, queue=queue_for(name))
    finally:
        app.close()
    return job_id


def test_a_prefix_in_a_bucket_that_does_not_exist_fails_naming_the_field(queue, stack):
    job_id = queue.submit("immersity.batch", {"prefix": "s3://no-such-bucket-4711/photos/"})
    error = failed_with(queue, job_id, "InvalidInput", "prefix")
    assert "s3://no-such-bucket-4711/photos/" in error["message"] and "bucket does not exist" in error["message"]


def test_an_output_outside_the_fleets_bucket_is_refused_before_any_call(queue, store, sandbox):
    [image] = put_images(store, 1)
    job_id = queue.submit("immersity.disparity", {"image": image.uri, "output": "s3://someone-elses/x.png"})
    error = failed_with(queue, job_id, "InvalidInput", "output")
    assert "outside the fleet's output area" in error["message"]
    assert not any(k.startswith("disparity") for k in sandbox.counters("immersity"))


def test_a_message_that_bypassed_submit_is_checked_by_the_worker(queue, stack):
    job_id = send_straight(stack, "immersity.disparity", {"image": f"s3://{BUCKET}/a.jpg", "options": 5})
    failed_with(queue, job_id, "InvalidInput", "options")
    job_id = send_straight(stack, "immersity.batch", {"prefix": f"s3://{BUCKET}/a/", "max_parallel": -1})
    failed_with(queue, job_id, "InvalidInput", "max_parallel")


def test_a_job_id_that_escapes_is_refused_by_the_worker_too(queue, store, stack, sandbox):
    [image] = put_images(store, 1)
    job_id = send_straight(stack, "immersity.disparity", {"image": image.uri}, job_id="../../x-escape/pwn")
    failed_with(queue, job_id, "InvalidInput", "job_id")
    assert not any(k.startswith("disparity") for k in sandbox.counters("immersity"))


def test_an_unexpected_exception_fails_the_job_with_internal_error(queue, store, stack, sandbox):
    [image] = put_images(store, 1)
    sandbox.configure("immersity", prices=["not", "an", "object"])
    redis.Redis.from_url(stack.redis_url).delete("gq:immersity:prices")
    error = failed_with(queue, queue.submit("immersity.disparity", {"image": image.uri}), "InternalError", None)
    assert "AttributeError" in error["message"] and "immersity.disparity" in error["message"]
    redis.Redis.from_url(stack.redis_url).delete("gq:immersity:prices")


def test_a_prefix_never_takes_in_its_longer_siblings(queue, store, stack):
    base = f"t/{uuid.uuid4().hex[:8]}/"
    put_images(store, 2, prefix=f"{base}site/")
    put_images(store, 3, prefix=f"{base}site2/")
    job = queue.wait(queue.submit("immersity.batch", {"prefix": f"s3://{BUCKET}/{base}site"}), timeout=90)
    assert job.result["images"] == 2
    assert all("/site/" in image for image in job.result["outputs"])


def test_a_failed_batch_lets_go_of_its_credit_reservation(queue, store, stack):
    refs = put_images(store, 3)
    store.write(S3Ref(BUCKET, refs[0].key), b"not an image at all")
    job = queue.wait(queue.submit("immersity.batch", {"prefix": prefix_of(refs)}), timeout=90,
                     raise_on_failure=False)
    assert job.state == "failed" and job.error["type"] == "SomeItemsFailed"
    reserved = redis.Redis.from_url(stack.redis_url, decode_responses=True).hgetall("gq:budget:immersity:reserved")
    assert job.id not in reserved


def test_a_map_build_from_a_bucket_that_does_not_exist_fails_naming_images(queue, sandbox):
    job_id = queue.submit("immersal.build_map", {"images": "s3://no-such-bucket-4711/scan/", "name": "Nowhere"})
    error = failed_with(queue, job_id, "InvalidInput", "images")
    assert "bucket does not exist" in error["message"]
    assert not any(path in sandbox.counters("immersal") for path in ("/clear", "/capture", "/construct"))


def test_a_producers_cancel_lets_go_of_what_the_job_held_at_once(queue, store, stack, sandbox):
    """The credits a batch reserved go back the moment its producer cancels it, not at the next sweep
    (a minute later): another job may need them."""
    refs = put_images(store, 4)
    sandbox.configure("immersity", processing_delay_s=2.0)
    job_id = queue.submit("immersity.batch", {"prefix": prefix_of(refs), "max_parallel": 1})
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    wait_until(lambda: r.hexists("gq:budget:immersity:reserved", job_id), 30, "the batch's reservation")
    assert queue.cancel(job_id)
    wait_until(lambda: not r.hexists("gq:budget:immersity:reserved", job_id)
               and not r.sismember("gq:holders", job_id), 5, "the reservation let go")
