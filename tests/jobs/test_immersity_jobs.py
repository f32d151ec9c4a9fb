"""Immersity AI jobs end to end: real workers, Redis, moto S3 and the sandbox over HTTP."""
from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from geoqueue import InvalidParams, JobFailed
from geoqueue.s3ref import S3Ref, parse_ref
from tests.conftest import SandboxControl, start_stack, wait_for_done
from tests.inputs import BUCKET, prefix_of, put_images


def decoded(store, uri: str) -> Image.Image:
    return Image.open(io.BytesIO(store.read(parse_ref(uri))))


def test_single_image_disparity(queue, store, sandbox):
    [image] = put_images(store, 1, size=(200, 150))
    job = queue.wait(queue.submit("immersity.disparity", {"image": image.uri}), timeout=60)
    assert job.state == "succeeded"
    assert (job.done, job.total) == (1, 1)
    disparity = decoded(store, job.result["disparity"])
    assert disparity.format == "PNG" and disparity.size == (200, 150)
    assert job.credits == 10 == job.result["credits"]
    assert sandbox.disparity_calls_for(job.result["disparity"]) == 1


def s3_requests(stack, method: str, ref: S3Ref) -> int:
    """How often the S3 stand-in was asked `method` on this object."""
    asked = requests.get(stack.s3_url + "/_sandbox/requests", timeout=10).json()
    return asked.get(f"{method} /{ref.bucket}/{ref.key}", 0)


def test_a_disparity_costs_one_head_of_its_image_and_one_of_its_output(stack, queue, store):
    """The image is checked once (its size, then its first bytes), and the output looked at once, after
    the call (what it wrote); nothing is looked for before a first call."""
    [image] = put_images(store, 1)
    job = queue.wait(queue.submit("immersity.disparity", {"image": image.uri}), timeout=60)
    output = parse_ref(job.result["disparity"])
    assert s3_requests(stack, "HEAD", image) == 1
    assert s3_requests(stack, "GET", image) == 2   # its first bytes, and the vendor's read by a presigned URL
    assert s3_requests(stack, "HEAD", output) == 1


def test_disparity_chained_with_animation(queue, store, sandbox):
    [image] = put_images(store, 1)
    job = queue.wait(queue.submit("immersity.disparity", {
        "image": image.uri, "animation": {"animationType": "gif", "animationLength": 2}}), timeout=60)
    animation = decoded(store, job.result["animation"])
    assert animation.format == "GIF" and animation.n_frames > 1
    assert job.credits == 20
    assert sandbox.counters("immersity")["animation"] == 1


def test_animation_job_from_existing_disparity(queue, store):
    [image] = put_images(store, 1)
    first = queue.wait(queue.submit("immersity.disparity", {"image": image.uri}), timeout=60)
    job = queue.wait(queue.submit("immersity.animation", {
        "image": image.uri, "disparity": first.result["disparity"]}), timeout=60)
    assert store.read(parse_ref(job.result["animation"]))[4:8] == b"ftyp"  # an MP4 container


def test_batch_reports_progress_and_each_image(queue, store, sandbox):
    refs = put_images(store, 8)
    prefix = prefix_of(refs)
    job_id = queue.submit("immersity.batch", {"prefix": prefix, "max_parallel": 3})
    seen_partial = False
    for snapshot in queue.watch(job_id, poll=0.05):
        seen_partial |= snapshot.total == 8 and 0 < snapshot.done < 8
    job = queue.status(job_id)
    assert job.state == "succeeded", job.error
    assert (job.done, job.total) == (8, 8) and seen_partial
    assert job.result["succeeded"] == 8 and job.credits == 80
    items = queue.items(job_id)
    assert sorted(items) == sorted(r.key for r in refs)
    for ref in refs:
        outcome = items[ref.key]
        assert outcome["state"] == "succeeded"
        assert decoded(store, outcome["disparity"]).size == (160, 120)
        assert sandbox.disparity_calls_for(outcome["disparity"]) == 1


def test_expired_token_is_refreshed_once(queue, store, sandbox):
    [first, second] = put_images(store, 2)
    queue.wait(queue.submit("immersity.disparity", {"image": first.uri}), timeout=60)
    tokens_before = sandbox.counters("immersity")["token"]
    sandbox.configure("immersity", expire_issued_tokens=True)
    job = queue.wait(queue.submit("immersity.disparity", {"image": second.uri}), timeout=60)
    after = sandbox.counters("immersity")
    assert job.state == "succeeded"
    assert after["token"] == tokens_before + 1
    assert after["unauthorized"] >= 1


def test_payment_required_fails_without_retry(queue, store, sandbox):
    [image] = put_images(store, 1)
    sandbox.configure("immersity", credits=5)
    with pytest.raises(JobFailed) as failed:
        queue.wait(queue.submit("immersity.disparity", {"image": image.uri}), timeout=60)
    error = failed.value.job.error
    assert error["type"] == "PaymentRequired"
    assert error["message"] == (f"disparity into s3://geoqueue/immersity/{failed.value.job.id}/img-000.png: "
                                "not enough credits")
    assert error["vendor_message"] == "Not enough credit balance"
    assert sandbox.counters("immersity")["payment_required"] == 1


def test_server_errors_are_retried_then_succeed(queue, store, sandbox):
    [image] = put_images(store, 1)
    sandbox.faults("immersity", fail_next=2, paths="/api/v1/disparity")
    job = queue.wait(queue.submit("immersity.disparity", {"image": image.uri}), timeout=90)
    assert job.state == "succeeded"
    statuses = [e["status"] for e in sandbox.journal("immersity") if e["path"].endswith("/disparity")]
    assert statuses == [500, 500, 200]
    assert sandbox.disparity_calls_for(job.result["disparity"]) == 1


def test_rate_limit_honours_retry_after(queue, store, sandbox):
    [image] = put_images(store, 1)
    sandbox.faults("immersity", rate_limit_next=1, retry_after_s=4, paths="/api/v1/disparity")
    job = queue.wait(queue.submit("immersity.disparity", {"image": image.uri}), timeout=90)
    assert job.state == "succeeded"
    calls = [e for e in sandbox.journal("immersity") if e["path"].endswith("/disparity")]
    assert [c["status"] for c in calls] == [429, 200]
    assert calls[1]["time"] - calls[0]["time"] >= 4.0


def test_bad_inputs_fail_with_clear_errors(queue, store):
    refused = {
        "not-a-uri": ({"image": "https://example.com/a.jpg"}, "image"),
        "option": ({"image": f"s3://{BUCKET}/x.jpg", "options": {"depth": 1}}, "options.depth"),
        "param": ({"imagee": f"s3://{BUCKET}/x.jpg"}, "imagee"),
    }
    for label, (params, field) in refused.items():
        with pytest.raises(InvalidParams) as refusal:
            queue.submit("immersity.disparity", params)
        assert refusal.value.field == field, (label, refusal.value)
    with pytest.raises(JobFailed) as failed:
        queue.wait(queue.submit("immersity.disparity", {"image": f"s3://{BUCKET}/nowhere/missing.jpg"}), timeout=30)
    error = failed.value.job.error
    assert error["type"] == "InvalidInput" and "does not exist" in error["message"], error


def test_one_bad_image_does_not_spoil_the_batch(queue, store, sandbox):
    refs = put_images(store, 4)
    prefix = prefix_of(refs)
    bad = S3Ref(BUCKET, prefix[len(f"s3://{BUCKET}/"):] + "notes.jpg")
    store.write(bad, b"this is not an image at all")
    with pytest.raises(JobFailed) as failed:
        queue.wait(queue.submit("immersity.batch", {"prefix": prefix}), timeout=90)
    job = failed.value.job
    assert job.error["type"] == "SomeItemsFailed"
    assert bad.uri in job.error["message"] and "1 of 5" in job.error["message"]
    assert "not a JPEG or PNG" in job.error["items"][bad.uri]["message"]
    assert job.result["succeeded"] == 4
    for ref in refs:
        assert store.size(S3Ref(BUCKET, f"immersity/{job.id}/{ref.name.replace('.jpg', '.png')}"))
    assert not any(bad.name.replace(".jpg", "") in key for key in sandbox.counters("immersity"))


def test_worker_killed_mid_batch_finishes_with_each_image_once(queue, store, stack, sandbox):
    refs = put_images(store, 12)
    prefix = prefix_of(refs)
    sandbox.configure("immersity", processing_delay_s=1.0)
    job_id = queue.submit("immersity.batch", {"prefix": prefix, "max_parallel": 4})
    wait_for_done(queue, job_id, 2)
    stack.replace_worker("transfer")            # SIGKILL mid-call, then a fresh worker
    job = queue.wait(job_id, timeout=180)
    assert job.state == "succeeded" and job.result["succeeded"] == 12
    for outcome in queue.items(job_id).values():
        assert sandbox.disparity_calls_for(outcome["disparity"]) == 1, outcome
    assert job.credits == 120


def test_credit_budget_refuses_a_job_before_any_call():
    small = start_stack(flower=False, beat=False, GEOQUEUE_IMMERSITY_CREDIT_BUDGET="50")
    try:
        from geoqueue import GeoQueue

        queue, store = GeoQueue(small.redis_url), small.object_store()
        refs = put_images(store, 6)
        prefix = prefix_of(refs)
        with pytest.raises(JobFailed) as failed:
            queue.wait(queue.submit("immersity.batch", {"prefix": prefix}), timeout=60)
        assert failed.value.job.error["type"] == "BudgetExceeded"
        assert "needs 60 credits" in failed.value.job.error["message"]
        assert SandboxControl(small.sandbox_url).counters("immersity").get("disparity", 0) == 0
        # A job within the budget still runs.
        job = queue.wait(queue.submit("immersity.disparity", {"image": refs[0].uri}), timeout=60)
        assert job.state == "succeeded"
    finally:
        small.stop()
