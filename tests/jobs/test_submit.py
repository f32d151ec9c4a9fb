"""Submitting: the job and its parameters are checked before anything is enqueued, and a job id
names one job only."""
from __future__ import annotations

import base64
import json
import math

import pytest

from geoqueue import GeoQueue, InvalidParams, JobConflict
from geoqueue.routes import queue_for
from tests.inputs import BUCKET, put_images
from tests.probes import enqueued


def refusal(queue, name, params, **kwargs) -> InvalidParams:
    with pytest.raises(InvalidParams) as refused:
        queue.submit(name, params, **kwargs)
    return refused.value


def test_an_unknown_job_is_refused_naming_the_known_ones(queue, stack):
    refused = refusal(queue, "immersity.disparty", {"image": f"s3://{BUCKET}/a.jpg"})
    assert refused.field == "name" and "immersity.disparity" in str(refused) and "mapillary.harvest" in str(refused)


@pytest.mark.parametrize("name, params, field", [
    ("immersity.disparity", {"image": f"s3://{BUCKET}/a.jpg", "options": 5}, "options"),
    ("immersity.disparity", {"image": f"s3://{BUCKET}/a.jpg", "options": {"dilation": math.nan}}, "options.dilation"),
    ("immersity.disparity", {"image": f"s3://{BUCKET}/a.jpg", "animation": {"outputFps": 7}}, "animation.outputFps"),
    ("immersity.batch", {"prefix": f"s3://{BUCKET}/p/", "max_parallel": -1}, "max_parallel"),
    ("immersity.batch", {"prefix": f"s3://{BUCKET}/p/", "max_parallel": "abc"}, "max_parallel"),
    ("immersity.batch", {"prefix": f"s3://{BUCKET}/p/", "max_parallel": 101}, "max_parallel"),
    ("immersity.batch", {}, "prefix"),
    ("immersity.batch", {"prefix": f"s3://{BUCKET}/p/", "prefx": 1}, "prefx"),
    ("immersity.disparity", {"image": f"s3://{BUCKET}/../other/a.jpg"}, "image"),
    ("immersal.maps_near", {"latitude": 91, "longitude": 0, "radius": 10}, "latitude"),
    ("immersal.maps_near", {"latitude": 10, "longitude": 0, "radius": math.inf}, "radius"),
])
def test_bad_parameters_are_refused_naming_the_field_and_nothing_is_enqueued(queue, stack, name, params, field):
    before = enqueued(stack)
    refused = refusal(queue, name, params)
    assert refused.field == field, str(refused)
    assert enqueued(stack) == before


@pytest.mark.parametrize("params, field", [
    ([1, 2], "params"), (["image"], "params"), ([("image", f"s3://{BUCKET}/a.jpg")], "params"), ([], "params"),
    ("image", "params"), ({1: "x", "image": f"s3://{BUCKET}/a.jpg"}, "1"),
])
def test_parameters_that_are_not_an_object_of_names_are_refused(queue, stack, params, field):
    before = enqueued(stack)
    refused = refusal(queue, "immersity.disparity", params)
    assert refused.field == field, str(refused)
    assert enqueued(stack) == before


def test_submit_records_and_sends_the_parameters_as_the_catalog_normalizes_them(stack):
    # A database of its own, which no worker reads: the message stays in its queue, to be read back.
    queue = GeoQueue(stack.redis_url.rsplit("/", 1)[0] + "/14")
    queue.redis.flushdb()
    try:
        params = {"image": f"s3://{BUCKET}/q.jpg", "intrinsics": [1000, 1000, 320, 240], "map_ids": 7}
        job_id = queue.submit("immersal.localize", params, job_id="normalized-map-ids")
        assert queue.status(job_id).params == {**params, "map_ids": [7]}
        [message] = queue.redis.lrange(queue_for("immersal.localize"), 0, -1)
        _, kwargs, _ = json.loads(base64.b64decode(json.loads(message)["body"]))
        assert kwargs == {**params, "map_ids": [7]}
        # the same job, however its parameters were written
        assert queue.submit("immersal.localize", {**params, "map_ids": [7]}, job_id=job_id) == job_id
        assert queue.redis.llen(queue_for("immersal.localize")) == 1
    finally:
        queue.redis.flushdb()


@pytest.mark.parametrize("job_id", ["a/b", "../../x-escape/pwn", "..", "", "x" * 65, "tab\there", "é"])
def test_job_ids_outside_the_safe_alphabet_are_refused(queue, job_id):
    refused = refusal(queue, "immersity.disparity", {"image": f"s3://{BUCKET}/a.jpg"}, job_id=job_id)
    assert refused.field == "job_id"


def test_a_job_id_names_one_job(queue, store, sandbox):
    [image] = put_images(store, 1)
    params = {"image": image.uri}
    job_id = queue.submit("immersity.disparity", params, job_id="order-4711_disparity")
    assert queue.submit("immersity.disparity", dict(params), job_id="order-4711_disparity") == job_id
    assert queue.wait(job_id, timeout=60).state == "succeeded"
    assert queue.submit("immersity.disparity", params, job_id=job_id) == job_id   # done: the same job, not again
    with pytest.raises(JobConflict) as other_params:
        queue.submit("immersity.disparity", {**params, "options": {"dilation": 0.001}}, job_id=job_id)
    with pytest.raises(JobConflict) as other_name:
        queue.submit("immersity.batch", {"prefix": f"s3://{BUCKET}/t/"}, job_id=job_id)
    assert other_params.value.field == other_name.value.field == "job_id"
    assert queue.status(job_id).params == params
    assert sum(v for k, v in sandbox.counters("immersity").items() if k.startswith("disparity:")) == 1
