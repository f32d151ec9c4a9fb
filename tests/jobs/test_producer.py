"""The producer side: the Python API's list/cancel, its HTTP form and the `geoqueue` command."""
from __future__ import annotations

import json
import time

import pytest

from geoqueue import ApiRefused, GeoQueue, InvalidParams, JobConflict, JobFailed, UnknownJob
from tests.conftest import wait_for_done
from tests.inputs import prefix_of, put_images
from tests.probes import geoqueue


def test_cli_submit_watch_status_list(stack, store):
    [image] = put_images(store, 1)
    submitted = geoqueue(stack, "submit", "immersity.disparity", "-p", f"image={image.uri}",
                         "-p", 'options={"outputBitDepth": "uint16"}', "--watch")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.splitlines()[0]
    record = json.loads(geoqueue(stack, "status", job_id, "-o", "json").stdout)
    assert record["state"] == "succeeded" and record["params"]["options"] == {"outputBitDepth": "uint16"}
    assert "immersity.disparity" in submitted.stderr  # the progress bar's description
    listing = geoqueue(stack, "list", "--vendor", "immersity", "--state", "succeeded").stdout
    assert job_id in listing
    assert geoqueue(stack, "status", "no-such-job").returncode == 2


def test_cancel_stops_a_batch_between_images(queue, store, stack, sandbox):
    refs = put_images(store, 6)
    prefix = prefix_of(refs)
    sandbox.configure("immersity", processing_delay_s=1.0)
    job_id = queue.submit("immersity.batch", {"prefix": prefix, "max_parallel": 1})
    wait_for_done(queue, job_id, 1)
    assert geoqueue(stack, "cancel", job_id).stdout.strip() == "canceled"
    time.sleep(3)  # let the image in flight finish
    job = queue.status(job_id)
    assert job.state == "canceled"
    served = sandbox.counters("immersity").get("disparity", 0)
    assert served < 6
    time.sleep(2)
    assert sandbox.counters("immersity").get("disparity", 0) == served, "work went on after the cancel"
    assert geoqueue(stack, "cancel", job_id).returncode == 1  # already finished


def test_list_filters_by_state(queue, store):
    [image] = put_images(store, 1)
    ok = queue.wait(queue.submit("immersity.disparity", {"image": image.uri}), timeout=60)
    bad = queue.wait(queue.submit("immersity.disparity", {"image": "s3://geoqueue/none.jpg"}), timeout=60,
                     raise_on_failure=False)
    assert ok.id in [j.id for j in queue.list(state="succeeded")]
    assert bad.id in [j.id for j in queue.list(state="failed")]
    assert bad.id not in [j.id for j in queue.list(state="succeeded")]


def test_the_client_over_http_holds_no_redis_and_follows_jobs_by_their_events(stack, store, sandbox):
    """GeoQueue given the HTTP API's URL and a key: the calls of the Redis form, as the key's app,
    with waits woken by the job's event stream (the safety re-read is further away than the timeout)."""
    http = GeoQueue(stack.api_url, api_key=stack.api_key)
    assert not hasattr(http, "redis") and not hasattr(http, "celery")
    [image] = put_images(store, 1)
    job_id = http.submit("immersity.disparity", {"image": image.uri}, job_id=f"http-{image.key.split('/')[1]}")
    job = http.wait(job_id, timeout=60, poll=120)
    assert job.id == job_id and job.state == "succeeded" and job.result["disparity"].startswith("s3://")
    assert job_id in [j.id for j in http.list(500, state="succeeded", vendor="immersity")]
    assert http.items(job_id) == {} and http.console(job_id) == []
    assert http.submit("immersity.disparity", {"image": image.uri}, job_id=job_id) == job_id  # the same job

    refs = put_images(store, 3)
    sandbox.configure("immersity", processing_delay_s=0.5)
    batch = http.submit("immersity.batch", {"prefix": prefix_of(refs), "max_parallel": 1})
    dones = [j.done for j in http.watch(batch, poll=120)]
    assert dones == sorted(dones) and dones[-1] == 3 and len(set(dones)) >= 3, dones
    assert len(http.items(batch)) == 3

    sandbox.configure("immersity", processing_delay_s=1.0)
    slow = http.submit("immersity.batch", {"prefix": prefix_of(put_images(store, 4)), "max_parallel": 1})
    assert http.cancel(slow) is True and http.cancel(slow) is False
    assert http.wait(slow, timeout=30, raise_on_failure=False).state == "canceled"
    with pytest.raises(JobFailed):
        http.wait(slow, timeout=30)

    with pytest.raises(UnknownJob):
        http.status("no-such-job")
    with pytest.raises(JobConflict):
        http.submit("immersity.disparity", {"image": refs[0].uri}, job_id=job_id)
    with pytest.raises(InvalidParams) as refused:  # the API's refusal, naming the field
        http.submit("immersity.disparity", {"image": "s3://some-other-bucket/prod/.env"})
    assert refused.value.field == "image"
    with pytest.raises(ApiRefused) as unknown_key:
        GeoQueue(stack.api_url, api_key="gq_not-a-key").list()
    assert unknown_key.value.status == 401
