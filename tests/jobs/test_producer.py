"""The producer side: the Python API's list/cancel and the `geoqueue` command."""
from __future__ import annotations

import json
import time

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
