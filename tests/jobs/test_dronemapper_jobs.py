"""DroneMapper jobs end to end: real workers, Redis, beat, moto S3 and the sandbox over HTTP."""
from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections import Counter

import pytest
import redis
import requests
from PIL import Image

from bench.memory import PeakMemory, process_tree
from geoqueue import InvalidParams, JobFailed
from geoqueue.s3ref import S3Ref, parse_ref
from tests.conftest import DRONEMAPPER_FAST, TEST_SETTINGS, wait_until
from tests.inputs import BUCKET, noise_jpeg, put_survey
from vendors.dronemapper.client import DroneMapperClient
from vendors.dronemapper.states import Status
from vendors.errors import NotFound

STATUS_PATH = re.compile(r"^/dronemapper/api/projects/(\d+)/tasks/(?:(\d+)/)?$")
WORKER_PROCESSES = (int(TEST_SETTINGS["GEOQUEUE_CONTROL_CONCURRENCY"])
                    + int(TEST_SETTINGS["GEOQUEUE_TRANSFER_CONCURRENCY"]))
JWT_HEADER = "eyJ0eXAiOiJKV1Qi"  # base64 of '{"typ":"JWT"': the start of every token the sandbox issues


@pytest.fixture(autouse=True)
def fast_vendor(sandbox):
    sandbox.configure("dronemapper", **DRONEMAPPER_FAST)


def vendor(sandbox) -> DroneMapperClient:
    return DroneMapperClient(f"{sandbox.url}/dronemapper", "sandbox", "sandbox-password", timeout=10)


def removed_at_vendor(sandbox, project: int, task: int) -> bool:
    """The stand-in applies a pending removal when the task is next read."""
    try:
        vendor(sandbox).get_task(project, task)
    except NotFound:
        return True
    return False


def vendor_statuses(sandbox) -> list[int]:
    """Every task's status as the vendor reports it when asked (the stand-in's clock moves on reads)."""
    client = vendor(sandbox)
    return [t["status"] for p in client.list_projects() for t in client.list_tasks(p["id"])]


def the_vendor_task(sandbox, job) -> dict:
    return sandbox.status("dronemapper")["tasks"][str(job.result["task"])]


# --- the main path ---

@pytest.mark.parametrize("partial_upload", [True, False], ids=["partial-upload", "single-request"])
def test_a_200_image_survey_streams_with_bounded_worker_memory(queue, store, stack, sandbox, partial_upload):
    sandbox.configure("dronemapper", partial_upload=partial_upload)
    warm_prefix, _ = put_survey(store, 8)  # the worker has its clients and imports before we measure
    queue.wait(queue.submit("dronemapper.process_survey", {"images": warm_prefix}), timeout=90)
    picture = noise_jpeg(0, (800, 640), quality=92)
    prefix, digests = put_survey(store, 200, picture)
    survey_bytes = 200 * len(picture)
    assert survey_bytes > 90 * 2 ** 20

    # The transfer worker, its threads (or pool processes) and all: the survey streams through it.
    with PeakMemory(process_tree(stack.processes["transfer"].popen.pid)) as memory:
        job = queue.wait(queue.submit("dronemapper.process_survey", {"images": prefix, "name": "two hundred"}),
                         timeout=150)
    assert memory.growth() < 40 * 2 ** 20, f"the transfer worker grew by {memory.growth() / 2 ** 20:.0f} MiB"

    result = job.result
    assert result["images"] == 200
    assert result["upload"] == ("partial" if partial_upload else "single request")
    stored = the_vendor_task(sandbox, job)["images"]
    assert {name: info["sha256"] for name, info in stored.items()} == digests
    seen = sandbox.counters("dronemapper")
    assert seen["task_create:two hundred"] == 1
    assert sum(v for k, v in seen.items() if k.startswith(f"image_upload:{result['task']}/")) == 200
    assert seen.get("commit", 0) == (2 if partial_upload else 0)  # the warm-up's and this one's

    assert sorted(result["assets"]) == ["dsm.tif", "orthophoto.tif", "pointcloud.ply"] and result["missing"] == []
    for asset, delivered in result["assets"].items():
        ref = parse_ref(delivered["uri"])
        assert ref.key == f"dronemapper/{job.id}/{asset}"
        assert store.size(ref) == delivered["bytes"] > 0
        # the caller presigns; the link serves exactly what the vendor sent
        link = requests.get(store.presign_get(ref, for_vendor=False), timeout=10)
        assert link.content == b"".join(vendor(sandbox).iter_asset(result["project"], result["task"], asset))
    assert queue.console(job.id) == vendor(sandbox).output(result["project"], result["task"])
    assert result["console_lines"] == DRONEMAPPER_FAST["console_lines"]


def test_a_given_project_takes_the_task_and_all_zip_on_request(queue, store, sandbox):
    project = vendor(sandbox).create_project("North field")
    prefix, _ = put_survey(store, 3)
    job = queue.wait(queue.submit("dronemapper.process_survey", {
        "images": prefix, "project": project["id"], "options": {"dsm": True, "orthophoto-resolution": 2.5},
        "assets": ["all.zip", "dtm.tif"], "output": f"s3://{BUCKET}/deliveries/north/"}), timeout=60)
    assert job.result["project"] == project["id"]
    assert vendor(sandbox).get_project(project["id"])["tasks"] == [job.result["task"]]
    assert job.result["assets"]["all.zip"]["uri"] == f"s3://{BUCKET}/deliveries/north/all.zip"
    assert job.result["missing"] == ["dtm.tif"]  # no DTM without the dtm option
    task = vendor(sandbox).get_task(project["id"], job.result["task"])
    assert {o["name"]: o["value"] for o in task["options"]} == {"dsm": True, "orthophoto-resolution": 2.5}
    assert sandbox.counters("dronemapper")["project_create"] == 1  # the test's own: the job made none


def test_a_short_download_is_retried_and_sizes_match(queue, store, sandbox):
    sandbox.configure("dronemapper", short_download_next=1)
    prefix, _ = put_survey(store, 2)
    job = queue.wait(queue.submit("dronemapper.process_survey", {"images": prefix}), timeout=90)
    seen = sandbox.counters("dronemapper")
    assert seen["download_cut"] == 1
    downloads = [k for k in seen if k.startswith(f"asset_download:{job.result['task']}/")]
    assert sorted(seen[k] for k in downloads) == [1, 1, 2]
    for delivered in job.result["assets"].values():
        assert store.size(parse_ref(delivered["uri"])) == delivered["bytes"]


# --- faults ---

def test_cut_off_create_and_image_uploads_are_retried_without_duplicates(queue, store, sandbox):
    sandbox.configure("dronemapper", upload_drop_next=1)  # the create: cut off before the vendor made anything
    # then the first image upload of the task the retried create makes (the reset stand-in's task 1)
    sandbox.faults("dronemapper", drop_next=1, paths="/tasks/1/upload/")
    prefix, digests = put_survey(store, 3)
    job = queue.wait(queue.submit("dronemapper.process_survey", {"images": prefix}), timeout=60)
    seen = sandbox.counters("dronemapper")
    project, task = job.result["project"], job.result["task"]
    assert seen[f"upload_dropped:/dronemapper/api/projects/{project}/tasks/"] == 1
    assert seen["task_create"] == 1 and task == 1
    uploads = [e["status"] for e in sandbox.journal("dronemapper") if e["path"].endswith(f"/tasks/{task}/upload/")]
    assert sorted(uploads) == [200, 200, 200, 500]  # the dropped one shows as 500 in the stand-in's journal
    assert all(seen[f"image_upload:{task}/{name}"] == 1 for name in digests)
    stored = the_vendor_task(sandbox, job)["images"]
    assert {name: info["sha256"] for name, info in stored.items()} == digests


def test_token_expiry_in_the_middle_of_a_job(queue, store, sandbox):
    sandbox.faults("dronemapper", latency_ms=150, paths="/upload/")
    prefix, _ = put_survey(store, 16)
    job_id = queue.submit("dronemapper.process_survey", {"images": prefix, "max_parallel_uploads": 2})
    wait_until(lambda: queue.status(job_id).done >= 3, 60, "three uploads")
    sandbox.configure("dronemapper", clock_offset_s=7 * 3600)  # the vendor's clock jumps past our cached token's exp
    job = queue.wait(job_id, timeout=90)
    seen = sandbox.counters("dronemapper")
    assert job.state == "succeeded"
    assert seen["auth_rejected:expired"] >= 1
    assert seen["token:sandbox"] <= 1 + WORKER_PROCESSES  # the first login, then at most one per process
    assert seen["task_create"] == 1
    assert len(the_vendor_task(sandbox, job)["images"]) == 16


def test_worker_killed_during_upload_still_makes_one_vendor_task(queue, store, stack, sandbox):
    sandbox.faults("dronemapper", latency_ms=300, paths="/upload/")
    prefix, digests = put_survey(store, 40)
    job_id = queue.submit("dronemapper.process_survey", {"images": prefix, "name": "killed mid-upload"})
    wait_until(lambda: queue.status(job_id).done >= 8, 60, "eight uploads")
    stack.replace_worker("transfer")  # SIGKILL with uploads in flight, then a fresh worker
    job = queue.wait(job_id, timeout=180)
    assert job.state == "succeeded"
    assert sandbox.counters("dronemapper")["task_create:killed mid-upload"] == 1
    stored = the_vendor_task(sandbox, job)["images"]
    assert {name: info["sha256"] for name, info in stored.items()} == digests
    assert len(queue.items(job_id)) == 40


def test_a_task_created_just_before_a_worker_died_is_adopted_not_created_again(queue, store, stack, sandbox):
    """The window between the vendor's create and our record of it: the vendor made the task,
    the worker died before writing its id; the job's next attempt finds it by name."""
    prefix, _ = put_survey(store, 3)
    project = vendor(sandbox).create_project("window")
    job_id = uuid.uuid4().hex
    orphan = vendor(sandbox).create_task(project["id"], partial=True, name=f"geoqueue-{job_id}")
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    # the marker the exactly-once helper (runtime/once.py) sets before the create call
    r.hset(f"gq:job:{job_id}:once", "dronemapper:task", json.dumps({"at": time.time(), "seq": 1}))
    job = queue.wait(queue.submit("dronemapper.process_survey", {"images": prefix, "project": project["id"]},
                                  job_id=job_id), timeout=60)
    assert job.result["task"] == orphan["id"]
    assert sandbox.counters("dronemapper")["task_create"] == 1
    assert len(sandbox.status("dronemapper")["tasks"][str(orphan["id"])]["images"]) == 3


# --- the poller ---

def test_fifty_surveys_in_flight_cost_one_request_per_project_per_cycle(queue, store, stack, sandbox):
    sandbox.configure("dronemapper", queued_s=1.0, running_s=25.0, console_lines=80)
    client = vendor(sandbox)
    projects = [client.create_project(name)["id"] for name in ("A", "B", "C")]
    layout = [projects[0]] * 46 + [projects[1]] * 3 + [projects[2]]
    prefix, _ = put_survey(store, 2)
    job_ids = [queue.submit("dronemapper.process_survey", {"images": prefix, "project": p}) for p in layout]
    wait_until(lambda: all(queue.status(j).state == "waiting" for j in job_ids), 60, "all 50 processing")
    all_in_flight = time.time()
    jobs_done = [queue.wait(j, timeout=120) for j in job_ids]
    assert all(j.state == "succeeded" for j in jobs_done)

    tasks_of = {p: {str(j.result["task"]) for j in jobs_done if j.result["project"] == p} for p in projects}
    status_reads = [e for e in sandbox.journal("dronemapper") if e["method"] == "GET" and e["time"] > all_in_flight
                    and STATUS_PATH.match(e["path"])]
    cycles = [[(int(project), task) for project, task in (STATUS_PATH.match(e["path"]).groups() for e in cycle)]
              for cycle in cycles_of(status_reads)]
    assert len(cycles) >= 4
    # several tasks in flight in a project: its task list; a lone task: that task (the first cycle
    # counted may have begun before all were in flight)
    assert set(cycles[1]) == {(projects[0], None), (projects[1], None), (projects[2], *tasks_of[projects[2]])}
    for reads in cycles:  # one request per project per cycle, whatever is left in flight
        assert max(Counter(project for project, _ in reads).values()) == 1, reads
        assert all(task is None or task in tasks_of[project] for project, task in reads), reads

    polls = [line for line in stack.logs("control").splitlines() if "dronemapper poll:" in line]
    console_reads = [int(m.group(1)) for m in (re.search(r"status and (\d+) console", p) for p in polls) if m]
    assert console_reads and max(console_reads) <= 20  # CONSOLE_READS_PER_CYCLE
    for job in jobs_done:  # appended by line offset: nothing lost, nothing twice
        assert queue.console(job.id) == client.output(job.result["project"], job.result["task"])


def cycles_of(entries: list[dict], gap: float = 2.5) -> list[list[dict]]:
    """Requests grouped into poll cycles: beat sends one every 5 s and a cycle lasts well under a second."""
    cycles: list[list[dict]] = []
    for entry in sorted(entries, key=lambda e: e["time"]):
        if cycles and entry["time"] - cycles[-1][-1]["time"] < gap:
            cycles[-1].append(entry)
        else:
            cycles.append([entry])
    return cycles


# --- failed, canceled, restarted, removed ---

def test_a_failed_task_fails_the_job_with_its_error_and_console_then_a_restart_completes_it(queue, store, sandbox):
    sandbox.configure("dronemapper", fail_tasks_named=["doomed"])
    prefix, _ = put_survey(store, 3)
    job_id = queue.submit("dronemapper.process_survey", {"images": prefix, "name": "doomed"})
    with pytest.raises(JobFailed) as failed:
        queue.wait(job_id, timeout=60)
    error = failed.value.job.error
    assert error["type"] == "ProcessingFailed" and error["vendor_message"] == "Cannot process dataset"
    assert "Cannot process dataset" in error["message"]
    assert "[ERROR]   Cannot process dataset" in error["console_tail"]
    assert queue.console(job_id) == vendor(sandbox).output(error["project"], error["task"])

    restart = queue.wait(queue.submit("dronemapper.restart", {"job_id": job_id, "options": {"pc-quality": "low"}}),
                         timeout=30)
    assert restart.result["restarted"] and restart.result["task"] == error["task"]
    job = queue.wait(job_id, timeout=60)
    assert job.state == "succeeded" and job.error is None
    assert sorted(job.result["assets"]) == ["dsm.tif", "orthophoto.tif", "pointcloud.ply"]
    seen = sandbox.counters("dronemapper")
    assert seen["task_create"] == 1 and seen["restart"] == 1
    task = vendor(sandbox).get_task(job.result["project"], job.result["task"])
    assert task["options"] == [{"name": "pc-quality", "value": "low"}]
    console = queue.console(job_id)
    marker = console.index(f"[geoqueue] restarted by job {restart.id}")
    assert console[marker + 1:] == vendor(sandbox).output(job.result["project"], job.result["task"])


def test_cancel_by_the_producer_or_by_job_cancels_the_vendor_task(queue, store, sandbox):
    sandbox.configure("dronemapper", running_s=60.0)
    prefix, _ = put_survey(store, 2)
    by_producer = queue.submit("dronemapper.process_survey", {"images": prefix})
    by_job = queue.submit("dronemapper.process_survey", {"images": prefix})
    for job_id in (by_producer, by_job):
        wait_until(lambda job_id=job_id: queue.status(job_id).phase == "processing: running", 30, "processing")
    queue.cancel(by_producer)
    cancel = queue.wait(queue.submit("dronemapper.cancel", {"job_id": by_job}), timeout=30)
    assert cancel.result == {"job_id": by_job, "canceled": True, "vendor_action": "cancel"}
    wait_until(lambda: sandbox.counters("dronemapper").get("cancel") == 2, 20, "both vendor tasks canceled")
    wait_until(lambda: vendor_statuses(sandbox) == [Status.CANCELED] * 2, 10, "the vendor tasks to stop")
    assert queue.status(by_producer).state == queue.status(by_job).state == "canceled"
    time.sleep(6)  # a poll cycle later: nothing is canceled twice
    assert sandbox.counters("dronemapper")["cancel"] == 2


def test_a_task_canceled_at_the_vendor_ends_the_job_canceled(queue, store, sandbox):
    sandbox.configure("dronemapper", running_s=60.0)
    prefix, _ = put_survey(store, 2)
    job_id = queue.submit("dronemapper.process_survey", {"images": prefix})
    wait_until(lambda: queue.status(job_id).phase == "processing: running", 30, "processing")
    [(task_id, _)] = sandbox.status("dronemapper")["tasks"].items()
    project = vendor(sandbox).list_projects()[0]["id"]
    vendor(sandbox).cancel(project, task_id)  # someone pressed cancel in the vendor's UI
    job = queue.wait(job_id, timeout=30, raise_on_failure=False)
    assert job.state == "canceled" and "canceled at the vendor" in job.error["message"]


def test_a_stop_claimed_by_a_stopper_that_died_is_taken_again_and_the_vendor_task_canceled(queue, store, stack,
                                                                                            sandbox):
    """A stopper claims the stop, then dies (SIGKILL) before its cancel call: once the claim is older than
    one vendor call's time budget, the poller takes it again and cancels the vendor task."""
    sandbox.configure("dronemapper", running_s=60.0)
    prefix, _ = put_survey(store, 2)
    job_id = queue.submit("dronemapper.process_survey", {"images": prefix})
    wait_until(lambda: queue.status(job_id).phase == "processing: running", 30, "processing")
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    claimed_at = time.time()
    r.hset(f"gq:job:{job_id}:dronemapper", mapping={"stop": "cancel", "stop_claimed_at": claimed_at})
    queue.cancel(job_id)
    budget = float(TEST_SETTINGS["GEOQUEUE_CALL_RETRY_SECONDS"])
    wait_until(lambda: sandbox.counters("dronemapper").get("cancel") == 1, budget + 30, "the vendor task canceled")
    wait_until(lambda: vendor_statuses(sandbox) == [Status.CANCELED], 10, "the vendor task to stop")
    [cancel_call] = [e for e in sandbox.journal("dronemapper") if e["path"].endswith("/cancel/")]
    assert cancel_call["time"] >= claimed_at + budget      # the claim held while its stopper might still be calling
    wait_until(lambda: not r.sismember("gq:dronemapper:active", job_id), 15, "the survey out of the poller's care")
    assert sandbox.counters("dronemapper")["cancel"] == 1


def test_cancel_during_upload_removes_the_partial_task(queue, store, sandbox):
    sandbox.faults("dronemapper", latency_ms=300, paths="/upload/")
    prefix, _ = put_survey(store, 20)
    job_id = queue.submit("dronemapper.process_survey", {"images": prefix})
    wait_until(lambda: queue.status(job_id).done >= 2, 30, "two uploads")
    [task_id] = sandbox.status("dronemapper")["tasks"]
    queue.cancel(job_id)
    wait_until(lambda: sandbox.counters("dronemapper").get("remove") == 1, 20, "the partial task removed")
    project = vendor(sandbox).list_projects()[0]["id"]
    wait_until(lambda: removed_at_vendor(sandbox, project, int(task_id)), 5, "the task gone")
    assert sandbox.counters("dronemapper").get("commit", 0) == 0


def test_remove_deletes_the_vendor_task_and_keeps_the_delivery(queue, store, sandbox):
    prefix, _ = put_survey(store, 2)
    job = queue.wait(queue.submit("dronemapper.process_survey", {"images": prefix}), timeout=60)
    removal = queue.wait(queue.submit("dronemapper.remove", {"job_id": job.id}), timeout=30)
    assert removal.result["removed"] and sandbox.counters("dronemapper")["remove"] == 1
    wait_until(lambda: removed_at_vendor(sandbox, job.result["project"], job.result["task"]), 5, "the task gone")
    assert queue.status(job.id).state == "succeeded"
    assert store.size(parse_ref(job.result["assets"]["orthophoto.tif"]["uri"]))
    with pytest.raises(JobFailed) as refused:
        queue.wait(queue.submit("dronemapper.restart", {"job_id": job.id}), timeout=30)
    assert "removed" in refused.value.job.error["message"]


# --- bad inputs ---

def test_bad_inputs_fail_before_anything_is_created_naming_the_input(queue, store, sandbox):
    one, _ = put_survey(store, 1)
    mixed, _ = put_survey(store, 3)
    png = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(png, format="PNG")
    notes = S3Ref(BUCKET, parse_ref(mixed, prefix=True).key + "field-notes.jpg")
    store.write(notes, png.getvalue())
    good, _ = put_survey(store, 2)
    refused = {
        "unknown asset": ({"images": good, "assets": ["orthophoto.tiff"]}, "assets[0]", "orthophoto.tiff"),
        "not a prefix": ({"images": "https://example.com/survey/"}, "images", "not an s3://bucket/key reference"),
        "misspelled": ({"imagse": good}, "imagse", "unknown parameter(s) imagse"),
        "both projects": ({"images": good, "project": 4, "project_name": "x"}, "project", "not both"),
    }
    for label, (params, field, expected) in refused.items():
        with pytest.raises(InvalidParams) as refusal:
            queue.submit("dronemapper.process_survey", params)
        assert refusal.value.field == field and expected in str(refusal.value), (label, refusal.value)
    cases = {
        "one image": ({"images": one}, "images", "at least 2 images; found 1"),
        "not a JPEG": ({"images": mixed}, "images", f"not JPEG images (1): {notes.uri}"),
        "unknown option": ({"images": good, "options": {"dsm": True, "turbo-mode": 1}}, "options", "turbo-mode"),
        "refused value": ({"images": good, "options": [{"name": "pc-quality", "value": "best"}]}, "options",
                          "pc-quality: 'best' is not one of ultra, high, medium, low, lowest"),
        "missing project": ({"images": good, "project": 4242}, "project", "project 4242 does not exist"),
    }
    for label, (params, field, expected) in cases.items():
        with pytest.raises(JobFailed) as failed:
            queue.wait(queue.submit("dronemapper.process_survey", params), timeout=30)
        error = failed.value.job.error
        assert (error["type"], error.get("field")) == ("InvalidInput", field), (label, error)
        assert expected in error["message"], (label, error)
    seen = sandbox.counters("dronemapper")
    assert seen.get("task_create", 0) == seen.get("project_create", 0) == 0


def test_a_prefix_in_a_bucket_that_does_not_exist_fails_naming_images(queue, stack):
    job = queue.wait(queue.submit("dronemapper.process_survey", {"images": "s3://no-such-bucket-4711/survey/"}),
                     timeout=30, raise_on_failure=False)
    assert job.state == "failed"
    assert (job.error["type"], job.error.get("field")) == ("InvalidInput", "images"), job.error
    assert "s3://no-such-bucket-4711/survey/" in job.error["message"]
    assert "bucket does not exist" in job.error["message"]


def test_an_output_outside_the_output_area_fails_naming_output_before_anything_is_created(queue, store, sandbox):
    prefix, _ = put_survey(store, 2)
    job = queue.wait(queue.submit("dronemapper.process_survey", {"images": prefix, "output": "s3://someone-elses/out/"}),
                     timeout=30, raise_on_failure=False)
    assert job.state == "failed"
    assert (job.error["type"], job.error.get("field")) == ("InvalidInput", "output"), job.error
    assert "outside the fleet's output area" in job.error["message"]
    seen = sandbox.counters("dronemapper")
    assert seen.get("task_create", 0) == seen.get("project_create", 0) == 0


def test_an_unexpected_vendor_answer_in_a_step_fails_the_job_with_internal_error(queue, store, stack, sandbox):
    sandbox.configure("dronemapper", assets=[{"name": "orthophoto.tif"}])  # assets listed as objects, not as names
    prefix, _ = put_survey(store, 2)
    job = queue.wait(queue.submit("dronemapper.process_survey", {"images": prefix}), timeout=60,
                     raise_on_failure=False)
    assert job.state == "failed"
    assert job.error["type"] == "InternalError", job.error
    assert "dronemapper.transfer.deliver" in job.error["message"] and "TypeError" in job.error["message"]
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    # The poller no longer follows it: its end lets go of that right after the record ends.
    wait_until(lambda: not client.sismember("gq:dronemapper:active", job.id), 10, "the survey let go")


def test_an_image_the_vendor_keeps_refusing_fails_the_survey_naming_it_and_the_partial_task_goes(queue, store, sandbox):
    # the image uploads of the reset stand-in's task 1 (not the probe for the partial flow, task 0's)
    sandbox.faults("dronemapper", fail_next=1000, paths="/tasks/1/upload/")
    prefix, _ = put_survey(store, 2)
    job = queue.wait(queue.submit("dronemapper.process_survey", {"images": prefix, "max_parallel_uploads": 1}),
                     timeout=120, raise_on_failure=False)
    assert job.state == "failed"
    assert (job.error["type"], job.error.get("field")) == ("ImageRejected", "images"), job.error
    assert job.error["image"].startswith(prefix) and job.error["image"] in job.error["message"]
    assert job.error["cause"]["status"] == 500
    sandbox.faults("dronemapper", fail_next=0)
    wait_until(lambda: sandbox.counters("dronemapper").get("remove") == 1, 20, "the partial task removed")
    assert sandbox.counters("dronemapper").get("commit", 0) == 0


def test_a_task_removed_at_the_vendor_fails_its_survey_and_the_others_go_on(queue, store, sandbox):
    sandbox.configure("dronemapper", running_s=8.0)
    client = vendor(sandbox)
    projects = [client.create_project(name)["id"] for name in ("kept", "emptied")]
    prefix, _ = put_survey(store, 2)
    kept, emptied = (queue.submit("dronemapper.process_survey", {"images": prefix, "project": p}) for p in projects)
    wait_until(lambda: queue.status(emptied).phase == "processing: running", 30, "processing")
    [task_id] = client.get_project(projects[1])["tasks"]
    client.remove(projects[1], task_id)  # someone removed it in the vendor's UI
    gone = queue.wait(emptied, timeout=30, raise_on_failure=False)
    assert gone.state == "failed" and gone.error["type"] == "TaskGone", gone.error
    assert queue.wait(kept, timeout=60).state == "succeeded"


def test_no_token_in_redis_or_logs(queue, store, stack):
    prefix, _ = put_survey(store, 2)
    queue.wait(queue.submit("dronemapper.process_survey", {"images": prefix}), timeout=60)
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        values = (client.hvals(key) if kind == "hash" else client.lrange(key, 0, -1) if kind == "list"
                  else client.smembers(key) if kind == "set" else [client.get(key)] if kind == "string" else [])
        assert not any(JWT_HEADER in str(v) for v in [key, *values]), key
    for name in ("control", "transfer"):
        assert JWT_HEADER not in stack.logs(name) and "JWT ey" not in stack.logs(name)
