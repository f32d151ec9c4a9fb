"""Submitting: the job and its parameters are checked before anything is enqueued, and a job id
names one job only."""
from __future__ import annotations

import base64
import json
import math

import pytest

from geoqueue import GeoQueue, InvalidParams, JobConflict
from geoqueue.catalog import CATALOG
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


def unbounded(schema: dict, where: str) -> list[str]:
    """Where a JSON Schema lets a value grow without a bound: a string without maxLength, a list
    without maxItems, an object of any names without maxProperties (and names without maxLength)."""
    if "enum" in schema or "const" in schema:
        return []
    found = []
    for alternative in schema.get("oneOf", []) + schema.get("anyOf", []):
        found += unbounded(alternative, where)
    if schema.get("type") == "string" and "maxLength" not in schema:
        found.append(where)
    if schema.get("type") == "array":
        found += [] if "maxItems" in schema else [where]
        found += unbounded(schema["items"], f"{where}[]")
    for name, value in schema.get("properties", {}).items():
        found += unbounded(value, f"{where}.{name}")
    free = schema.get("additionalProperties")
    if isinstance(free, dict):
        found += [] if "maxProperties" in schema and "maxLength" in schema.get("propertyNames", {}) else [where]
        found += unbounded(free, f"{where}.*")
    return found


@pytest.mark.parametrize("name", sorted(CATALOG.specs))
def test_every_list_string_and_free_object_of_a_job_has_a_bound_its_schema_shows(name):
    assert unbounded(CATALOG[name].schema(), name) == []


LONG_KEY = "k" * 1100


@pytest.mark.parametrize("name, params, field", [
    ("immersal.stitch", {"name": "big", "map_ids": list(range(1, 150_001))}, "map_ids"),
    ("immersal.build_map", {"images": f"s3://{BUCKET}/m/", "name": "m", "extend": list(range(1, 34))}, "extend"),
    ("immersity.disparity", {"image": f"s3://{BUCKET}/{LONG_KEY}.jpg"}, "image"),
    ("immersity.batch", {"prefix": f"s3://{BUCKET}/{LONG_KEY}/"}, "prefix"),
    ("mapillary.upload_sequence", {"images": f"s3://{BUCKET}/u/", "organization_id": "1" * 21}, "organization_id"),
    ("mapillary.upload_sequence", {"images": f"s3://{BUCKET}/u/", "organization_id": 10 ** 21}, "organization_id"),
    ("mapillary.harvest", {"organization_id": 1, "bbox": [0, 0, 1, 1], "destination": f"s3://{BUCKET}/h/",
                           "fields": [f"creator.f{n}" for n in range(65)]}, "fields"),
    ("dronemapper.process_survey", {"images": f"s3://{BUCKET}/s/",
                                    "options": {f"o{n}": 1 for n in range(201)}}, "options"),
    ("dronemapper.process_survey", {"images": f"s3://{BUCKET}/s/",
                                    "options": [{"name": f"o{n}", "value": 1} for n in range(201)]}, "options"),
    ("dronemapper.process_survey", {"images": f"s3://{BUCKET}/s/",
                                    "options": {f"o{n}": "x" * 9000 for n in range(8)}}, "options"),
    ("dronemapper.process_survey", {"images": f"s3://{BUCKET}/s/", "options": {"o" * 201: 1}}, "options"),
    ("dronemapper.restart", {"job_id": "j", "options": {f"o{n}": "x" * 9000 for n in range(8)}}, "options"),
])
def test_lists_strings_and_options_past_their_bound_are_refused_naming_the_field(queue, stack, name, params, field):
    """Unbounded, 150,000 map ids made a 1.45 MB message: a few hundred such submits fill a 1 GB Redis."""
    before = enqueued(stack)
    refused = refusal(queue, name, params)
    assert refused.field == field, str(refused)
    assert len(str(refused)) < 300, "the refusal names the bound, it does not quote the value"
    assert enqueued(stack) == before
