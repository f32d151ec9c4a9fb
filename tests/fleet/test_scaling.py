"""Horizontal scaling: three workers, each with its own name, share a mixed batch of every
vendor's jobs; one is SIGKILLed mid-run; every job still ends right, with no duplicate vendor
side effect (the sandbox's counters)."""
from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from devstack.samples import drive_photos
from geoqueue import GeoQueue
from geoqueue.s3ref import S3Ref
from tests.conftest import DRONEMAPPER_FAST, start_stack, wait_until
from tests.inputs import prefix_of, put_images, put_site, put_survey

WORKERS = ("w1", "w2", "w3")
SUCCEEDED = re.compile(r"Task ([\w.]+)\[[0-9a-f-]+\] succeeded")


@pytest.fixture(scope="module")
def fleet():
    stack = start_stack(flower=False, worker_queues=(), GEOQUEUE_TRANSFER_CONCURRENCY="2")
    for name in WORKERS:
        stack.start_worker("transfer", name=name, queues="control,transfer")
    stack.wait_for_workers(list(WORKERS))
    yield stack
    stack.stop()


@pytest.fixture
def sandbox_url(fleet) -> str:
    """The shared `sandbox` fixture controls this module's stack."""
    return fleet.sandbox_url


def busy(stack, worker: str) -> bool:
    from celery import Celery

    app = Celery(broker=stack.redis_url)
    try:
        active = app.control.inspect(timeout=1).active() or {}
    finally:
        app.close()
    return any(name.startswith(f"{worker}@") and tasks for name, tasks in active.items())


def put_drive(store, count: int) -> str:
    prefix = f"drives/{time.time_ns()}/"
    for name, data in drive_photos(count, datetime(2026, 11, 20, 9, 0, tzinfo=UTC)):
        store.write(S3Ref("geoqueue", f"{prefix}{name}"), data, "image/jpeg")
    return f"s3://geoqueue/{prefix}"


def test_mixed_jobs_spread_over_three_workers_survive_one_killed(fleet, sandbox):
    queue, store = GeoQueue(fleet.redis_url), fleet.object_store()
    sandbox.configure("immersity", processing_delay_s=0.5)
    sandbox.configure("dronemapper", **DRONEMAPPER_FAST)
    jobs = {}
    for batch in range(2):
        refs = put_images(store, 8)
        jobs[f"immersity-{batch}"] = queue.submit("immersity.batch", {
            "prefix": prefix_of(refs), "max_parallel": 3})
    site, _rows = put_site(store, 24, seed=7)
    jobs["immersal"] = queue.submit("immersal.build_map", {"images": site, "name": "ScalingSite", "chunk_size": 4})
    jobs["mapillary"] = queue.submit("mapillary.upload_sequence", {"images": put_drive(store, 16)})
    for survey in range(3):
        prefix, _ = put_survey(store, 12)
        jobs[f"survey-{survey}"] = queue.submit("dronemapper.process_survey", {
            "images": prefix, "project_name": f"scaling-{survey}", "max_parallel_uploads": 3})

    victim = "w2"
    # kill it with work in its hands
    wait_until(lambda: busy(fleet, victim), 60, f"{victim} with work in its hands", interval=0.2)
    fleet.processes[victim].kill()
    finished = {label: queue.wait(job_id, timeout=240, raise_on_failure=False) for label, job_id in jobs.items()}
    for label, job in finished.items():
        assert job.state == "succeeded", (label, job.error)

    for name in WORKERS:
        assert SUCCEEDED.search(fleet.logs(name)), f"{name} ran no task"
    survivors_ran = {m.group(1) for name in WORKERS if name != victim for m in SUCCEEDED.finditer(fleet.logs(name))}
    assert "immersity.item" in survivors_ran

    immersity = sandbox.counters("immersity")
    for label in ("immersity-0", "immersity-1"):
        for outcome in queue.items(jobs[label]).values():
            assert sandbox.disparity_calls_for(outcome["disparity"]) == 1
    assert immersity["disparity"] == 16
    dronemapper = sandbox.counters("dronemapper")
    created = {k: v for k, v in dronemapper.items() if k.startswith("task_create:")}
    assert len(created) == 3 and all(count == 1 for count in created.values()), created
    assert len(sandbox.captures()) == 24 and set(sandbox.captures().values()) == {1}
    assert finished["immersal"].result["images"] == 24
    mapillary = sandbox.status("mapillary")
    assert sum(cluster["images"] for cluster in mapillary["clusters"].values()) == 16
    assert len([key for key in mapillary["upload_sessions"] if key.endswith(".jpg")]) == 16
    vendor_tasks = sandbox.status("dronemapper")["tasks"]
    for label in ("survey-0", "survey-1", "survey-2"):
        assert len(vendor_tasks[str(finished[label].result["task"])]["images"]) == 12
