"""Immersal jobs end to end: real workers, Redis, beat, moto S3 and the Immersal sandbox over HTTP."""
from __future__ import annotations

import hashlib
import json
import lzma
import time
import uuid

import numpy as np
import pytest
import redis
import requests
from pyproj import Transformer

from devstack.samples import scene
from geoqueue import InvalidParams, JobFailed
from geoqueue.s3ref import S3Ref, parse_ref
from sandbox.immersal import DEFAULT_LOGIN, DEFAULT_TOKEN
from tests.conftest import TEST_SETTINGS, wait_for_done, wait_until
from tests.inputs import BUCKET, HELSINKI, INTRINSICS, put_site, write_manifest
from tests.probes import failed_with
from vendors.immersal import ImmersalClient

WAITING_PHASE = "waiting for workspace default/0"
ECEF_TO_GEOGRAPHIC = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


@pytest.fixture(autouse=True)
def quick_construction(sandbox):
    sandbox.configure("immersal", construct_seconds=1.0)


def image_digests(store, prefix_uri: str, rows: list[dict]) -> set[tuple[int, int, str]]:
    prefix = parse_ref(prefix_uri, prefix=True)
    return {(r["run"], r["index"], hashlib.sha256(store.read(prefix.child(r["file"]))).hexdigest()) for r in rows}


def map_images(store, uri: str) -> set[tuple[int, int, str]]:
    """(run, index, image sha256) of every image the downloaded map was built from (sandbox map format)."""
    lines = lzma.decompress(store.read(parse_ref(uri))).decode().splitlines()[1:]
    return {(int(run), int(index), digest) for run, index, digest, *_pose in (line.split() for line in lines)}


# --- building maps ---
def test_build_map_in_chunks_end_to_end(queue, store, sandbox):
    images, rows = put_site(store, 64)
    job_id = queue.submit("immersal.build_map", {
        "images": images, "name": "Harbour64", "chunk_size": 8, "max_parallel": 3, "window_size": 5,
        "options": {"featureCount": 2048, "preservePoses": True, "dense": 0}})
    partial = construction = False
    for snapshot in queue.watch(job_id, poll=0.05):
        partial |= snapshot.phase == "submitting images" and snapshot.total == 64 and 0 < snapshot.done < 64
        construction |= snapshot.phase.startswith("construction: ")
    job = queue.status(job_id)
    assert job.state == "succeeded", job.error
    assert partial and construction
    assert (job.done, job.total) == (64, 64)
    assert len(queue.items(job_id)) == 8                      # 8 chunks of 8 images
    result = job.result
    assert result["images"] == 64 and result["name"] == "Harbour64" and result["status"] in ("sparse", "done")
    data = store.read(parse_ref(result["map"]))
    assert hashlib.sha256(data).hexdigest() == result["sha256"] and len(data) == result["bytes"]
    assert map_images(store, result["map"]) == image_digests(store, images, rows)
    assert sorted(sandbox.captures().values()) == [1] * 64 and len(sandbox.captures()) == 64
    options = sandbox.status("immersal")["maps"][str(result["map_id"])]["options"]
    assert options == {"windowSize": 5, "window_size": 5, "featureCount": 2048, "preservePoses": True, "dense": 0}
    record = json.dumps(job.to_dict())
    assert DEFAULT_TOKEN not in record and "sandbox-password" not in record and "X-Amz-Signature" not in record


def test_a_build_of_more_images_than_chunks_moves_on_to_settle_through_its_fan_out(queue, store, stack, sandbox):
    """The job's total counts images (its progress) and the fan-out counts chunks: the fan-out sees its
    last chunk done by its own count, and that chunk's task carries the build on to settle."""
    from runtime.fanout import Fanout

    images, rows = put_site(store, 12, seed=4)
    job = queue.wait(queue.submit("immersal.build_map", {"images": images, "name": "Chunks", "chunk_size": 4}),
                     timeout=60)
    assert (job.done, job.total) == (12, 12) and len(queue.items(job.id)) == 3
    fanout = Fanout(redis.Redis.from_url(stack.redis_url, decode_responses=True), queue.ledger)
    assert fanout.complete(job.id)
    assert map_images(store, job.result["map"]) == image_digests(store, images, rows)


def test_worker_killed_during_submission_submits_each_image_once(queue, store, stack, sandbox):
    images, rows = put_site(store, 60, seed=7)
    # Vendor calls that take a while, as real ones do: the kill lands while captures are in flight.
    sandbox.faults("immersal", latency_ms=150, paths="/immersal/capture")
    job_id = queue.submit("immersal.build_map", {"images": images, "name": "Killed", "chunk_size": 5,
                                                 "max_parallel": 4})
    wait_for_done(queue, job_id, 12)
    stack.replace_worker("transfer")            # SIGKILL mid-call, then a fresh worker
    job = queue.wait(job_id, timeout=180)
    assert job.state == "succeeded"
    assert len(sandbox.captures()) == 60
    assert {k: v for k, v in sandbox.captures().items() if v != 1} == {}, (job.result, queue.items(job_id))
    assert map_images(store, job.result["map"]) == image_digests(store, images, rows)


def test_server_errors_and_dropped_connections_still_submit_each_image_once(queue, store, sandbox):
    images, rows = put_site(store, 16, seed=5)
    # Two answers of 500 and two dropped connections: each capture call tries again where it failed
    # (a capture sent twice replaces its image). Then six drops in a row: one call runs out of tries,
    # is cut off without an answer, and settle counts the workspace to find out whether it arrived.
    tries = int(TEST_SETTINGS.get("GEOQUEUE_CALL_RETRIES", 6))
    sandbox.faults("immersal", fail_next=2, paths="/immersal/capture")
    job = queue.wait(queue.submit("immersal.build_map", {"images": images, "name": "Bumpy", "chunk_size": 16}),
                     timeout=90)
    assert "cut_off_calls" not in job.result
    images2, rows2 = put_site(store, 16, seed=6)
    sandbox.faults("immersal", drop_next=tries, paths="/immersal/capture")
    cut = queue.wait(queue.submit("immersal.build_map", {"images": images2, "name": "CutOff", "chunk_size": 16}),
                     timeout=120)
    assert cut.result["cut_off_calls"] == {"count": 1, "arrived": 0, "sent_again": 1}
    statuses = [e["status"] for e in sandbox.journal("immersal") if e["path"] == "/immersal/capture"]
    assert statuses.count(500) == 2 + tries and statuses.count(200) == 32        # a dropped call shows as 500 here
    assert len(sandbox.captures()) == 16 and set(sandbox.captures().values()) == {2}     # once per job
    assert map_images(store, job.result["map"]) == image_digests(store, images, rows)
    assert map_images(store, cut.result["map"]) == image_digests(store, images2, rows2)


def build_with_cut_off_calls(queue, store, stack, sandbox, markers: dict[int, dict], arrived: list[int]):
    """An 8-image build whose captures of the images `markers` names were cut off without an answer (the
    markers a killed worker leaves, runtime/once.py), of which those in `arrived` had reached Immersal."""
    images, rows = put_site(store, 8, seed=9)
    job_id = uuid.uuid4().hex
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    r.hset(f"gq:job:{job_id}:once:captures", mapping={f"0:{i}": json.dumps(m) for i, m in markers.items()})
    sandbox.faults("immersal", latency_ms=200, paths="/immersal/capture")
    queue.submit("immersal.build_map", {"images": images, "name": "CutOff"}, job_id=job_id)
    wait_until(lambda: r.hget(f"gq:job:{job_id}:immersal", "step") == "submit", 60,
               "the workspace cleared (the build at its submit step)", interval=0.05)
    vendor = ImmersalClient(f"{sandbox.url}/immersal", token=DEFAULT_TOKEN)
    for row in (rows[i] for i in arrived):
        vendor.capture(store.read(parse_ref(images, prefix=True).child(row["file"])), run=0, index=row["index"],
                       position=(row["px"], row["py"], row["pz"]), intrinsics=tuple(INTRINSICS.values()))
    job = queue.wait(job_id, timeout=60)
    assert map_images(store, job.result["map"]) == image_digests(store, images, rows)
    return job


def test_of_two_cut_off_captures_the_one_whose_request_left_is_not_sent_again(queue, store, stack, sandbox):
    """Chunks capture in parallel, so the order of their marks says nothing of what arrived: here the
    newer call reached Immersal (its marker says its request left) and the older never left its worker."""
    now = time.time()
    job = build_with_cut_off_calls(queue, store, stack, sandbox, {6: {"at": now, "seq": 1},
                                                                  7: {"at": now, "seq": 2, "sent": now}}, arrived=[7])
    assert job.result["cut_off_calls"] == {"count": 2, "arrived": 1, "sent_again": 1}
    assert len(sandbox.captures()) == 8 and set(sandbox.captures().values()) == {1}, sandbox.captures()


def test_cut_off_captures_that_left_are_sent_again_one_at_a_time_until_the_count_is_complete(queue, store, stack,
                                                                                               sandbox):
    """Four requests left whole and their worker died: three arrived, one was refused (a 5xx it never read).
    Only the count can tell which: the likeliest missing go again one at a time, and once the workspace
    is complete nothing more is sent. One image that had arrived is replaced by itself, not three."""
    now = time.time()
    job = build_with_cut_off_calls(queue, store, stack, sandbox, {4: {"at": now, "seq": 4, "sent": now},
                                                                  5: {"at": now, "seq": 3, "sent": now},
                                                                  6: {"at": now, "seq": 2, "sent": now},
                                                                  7: {"at": now, "seq": 1, "sent": now}},
                                   arrived=[4, 6, 7])
    assert job.result["cut_off_calls"] == {"count": 4, "arrived": 3, "sent_again": 2}
    assert sandbox.captures() == {**{f"capture:0:0:{i}": 1 for i in range(8)}, "capture:0:0:4": 2}


def capture_answer_gaps(sandbox) -> list[float]:
    times = sorted(e["time"] for e in sandbox.journal("immersal") if e["path"] == "/immersal/capture")
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


def test_an_exact_build_sends_no_image_twice_when_a_kill_cuts_off_captures_the_vendor_refused(queue, store, stack,
                                                                                              sandbox):
    """Parallel chunks of an exact build capture one image at a time, so a kill cuts off at most one
    capture, and the workspace's count settles it whatever the vendor did with the refused ones."""
    images, rows = put_site(store, 40, seed=8)
    sandbox.faults("immersal", latency_ms=150, error_rate=0.3, seed=8, paths="/immersal/capture")
    job_id = queue.submit("immersal.build_map", {"images": images, "name": "Exact", "chunk_size": 5,
                                                 "max_parallel": 4, "exact_captures": True})
    wait_for_done(queue, job_id, 10)
    stack.replace_worker("transfer")
    job = queue.wait(job_id, timeout=180)
    assert job.state == "succeeded", job.error
    assert len(sandbox.captures()) == 40
    assert {k: v for k, v in sandbox.captures().items() if v != 1} == {}
    assert map_images(store, job.result["map"]) == image_digests(store, images, rows)
    assert min(capture_answer_gaps(sandbox)) >= 0.14       # one capture served after another, never two at once
    assert job.result.get("cut_off_calls", {}).get("count", 0) <= 1     # so one kill cuts off one at most


@pytest.mark.parametrize("arrived", [True, False])
def test_an_exact_build_settles_the_capture_its_killed_holder_left_by_the_workspace_count(queue, store, stack,
                                                                                            sandbox, arrived):
    """A worker died holding the workspace's capture gate, its capture of image 7 cut off: whoever takes
    the gate next counts the workspace and records the image, or sends it, once."""
    images, rows = put_site(store, 8, seed=10)
    job_id = uuid.uuid4().hex
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    then = time.time() - 60
    r.hset(f"gq:job:{job_id}:once:captures", "0:7", json.dumps({"at": then, "seq": 1, "sent": then}))
    gate = "gq:immersal:capture-gate:default:0"
    r.set(f"{gate}:pending", json.dumps({"job": job_id, "image": "0:7"}))
    r.set(gate, "a-killed-worker", px=5000)                # its gate expires in 5 s
    queue.submit("immersal.build_map", {"images": images, "name": "Holder", "exact_captures": True},
                 job_id=job_id)
    wait_until(lambda: r.hget(f"gq:job:{job_id}:immersal", "step") == "submit", 60,
               "the workspace cleared (the build at its submit step)", interval=0.05)
    if arrived:
        vendor = ImmersalClient(f"{sandbox.url}/immersal", token=DEFAULT_TOKEN)
        row = rows[7]
        vendor.capture(store.read(parse_ref(images, prefix=True).child(row["file"])), run=0, index=row["index"],
                       position=(row["px"], row["py"], row["pz"]), intrinsics=tuple(INTRINSICS.values()))
    assert r.exists(gate), "the build went on before the killed holder's gate expired"
    job = queue.wait(job_id, timeout=60)
    assert map_images(store, job.result["map"]) == image_digests(store, images, rows)
    assert sandbox.captures() == {f"capture:0:0:{i}": 1 for i in range(8)}
    assert job.result["cut_off_calls"] == {"count": 1, "arrived": int(arrived), "sent_again": int(not arrived)}
    assert not r.exists(f"{gate}:pending")


def test_jobs_on_one_workspace_take_turns_without_mixing(queue, store, sandbox):
    first_images, first_rows = put_site(store, 24, run=0, seed=1)
    second_images, second_rows = put_site(store, 24, run=1, seed=2)
    third_images, _ = put_site(store, 4, run=2, seed=3)
    # Every call slowed down, so that a build lasts long enough for the others to be seen waiting.
    sandbox.faults("immersal", latency_ms=300)
    both = [queue.submit("immersal.build_map", {"images": images, "name": name, "chunk_size": 6})
            for images, name in ((first_images, "First"), (second_images, "Second"))]

    def one_waiting() -> list[str]:     # both wait for an instant before the first is granted the workspace
        waiting = [j for j in both if queue.status(j).phase == WAITING_PHASE]
        return waiting if len(waiting) == 1 else []

    [waiting] = wait_until(one_waiting, 60, "one of the two builds waiting for the workspace", interval=0.05)
    [working] = [j for j in both if j != waiting]
    assert queue.status(waiting).state == "queued" and not queue.status(working).finished

    third = queue.submit("immersal.build_map", {"images": third_images, "name": "Third"})
    wait_until(lambda: queue.status(third).phase == WAITING_PHASE, 60, "the third build waiting for the workspace",
               interval=0.05)
    assert queue.cancel(third)

    first, second = (queue.wait(job_id, timeout=90).result for job_id in both)
    assert map_images(store, first["map"]) == image_digests(store, first_images, first_rows)
    assert map_images(store, second["map"]) == image_digests(store, second_images, second_rows)
    assert queue.status(third).state == "canceled"
    assert len(sandbox.captures()) == 48 and set(sandbox.captures().values()) == {1}    # none of the third's images


def test_a_build_whose_workspace_grant_a_failover_lost_makes_no_capture_once_it_is_granted_again(
        queue, store, stack, sandbox):
    """A Redis failover lost the build's grant of its workspace: on the new primary the workspace is free
    and the build first in line, so the poller grants it again, and that grant's start would clear the
    workspace. The chunks still at work under the lost grant must not go on capturing into it."""
    from runtime.lease import Lease

    images, _ = put_site(store, 40, seed=11)
    sandbox.faults("immersal", latency_ms=200, paths="/immersal/capture")
    job_id = queue.submit("immersal.build_map", {"images": images, "name": "Fenced", "chunk_size": 5,
                                                 "max_parallel": 2})
    wait_for_done(queue, job_id, 4)
    lease = Lease(redis.Redis.from_url(stack.redis_url, decode_responses=True), "gq:immersal:workspace:default:0", 600)
    lease.redis.delete(lease.name, lease.fence_key)          # the grant the failover lost
    lease.wait(job_id)
    assert lease.grant_next().owner == job_id                # granted again, as the poller would
    captured = len(sandbox.captures())
    job = queue.wait(job_id, timeout=60, raise_on_failure=False)
    assert (job.state, (job.error or {}).get("type")) == ("failed", "WorkspaceLost"), job
    assert len(sandbox.captures()) <= captured + 2, "captures went on after the grant was lost"   # 2 were in flight


def test_construction_failure_fails_the_job_with_the_vendor_reason(queue, store, sandbox):
    images, _ = put_site(store, 6)
    sandbox.configure("immersal", fail_constructions=True)
    with pytest.raises(JobFailed) as failed:
        queue.wait(queue.submit("immersal.build_map", {"images": images, "name": "Doomed"}), timeout=60)
    error = failed.value.job.error
    assert error["type"] == "ConstructionFailed"
    assert error["vendor_message"] == "failed" and error["errno"] == 1
    assert f"map {error['map_id']} (Doomed)" in error["message"]


def test_refused_credentials_fail_at_once(queue, store, sandbox):
    images, _ = put_site(store, 4)
    sandbox.configure("immersal", accounts={"someone@example.com": {"password": "other", "token": "f" * 64}})
    with pytest.raises(JobFailed) as failed:
        queue.wait(queue.submit("immersal.build_map", {"images": images, "name": "NoAuth"}), timeout=30, poll=0.1)
    error = failed.value.job.error
    assert error["type"] == "ImmersalAuthError" and error["vendor_message"] == "auth"
    assert sandbox.counters("immersal") == {"/login": 1}                     # refused once, not retried


def test_a_list_refused_while_maps_are_built_fails_the_waiting_builds_naming_the_refusal(queue, store, sandbox):
    """Two builds waiting on construction in one workspace: the poller asks /list once for both. When the
    account's token and password stop working, /list answers "auth" (and so does the login after it): both
    builds fail with the vendor's refusal rather than wait on a list that can never come."""
    sandbox.configure("immersal", construct_seconds=600)
    builds = [queue.submit("immersal.build_map", {"images": put_site(store, 4, run=run, seed=20 + run)[0],
                                                  "name": f"Waiting{run}"}) for run in (0, 1)]
    wait_until(lambda: all(queue.status(j).state == "waiting" for j in builds), 60,
               "both builds waiting on construction", interval=0.1)
    sandbox.configure("immersal", accounts={DEFAULT_LOGIN: {"password": "changed", "token": "f" * 64}})
    for job_id in builds:
        error = failed_with(queue, job_id, "ImmersalAuthError", None)
        assert error["vendor"] == "immersal" and error["vendor_message"] == "auth", error
    served = sandbox.counters("immersal")
    assert served.get("auth_refused:/list", 0) >= 1 and "auth_refused:/metadataget" not in served, served


def test_bad_inputs_fail_with_errors_naming_the_input(queue, store, sandbox):
    sandbox.configure("immersal", image_max=10)
    not_an_image, _ = put_site(store, 3)
    store.write(parse_ref(not_an_image + "img-001.jpg"), b"just some notes, not a photo")
    missing_field, rows = put_site(store, 3)
    rows[1]["fy"] = ""
    write_manifest(store, parse_ref(missing_field, prefix=True).key, rows)
    stray, _ = put_site(store, 2)
    store.write(parse_ref(stray + "extra.png"), scene(99, 32, 24, "PNG"))
    too_many, _ = put_site(store, 12)
    cases = {
        "non-image": ("immersal.build_map", {"images": not_an_image, "name": "A"},
                      "images", f"{not_an_image}img-001.jpg is not a PNG or JPEG image"),
        "row missing a field": ("immersal.build_map", {"images": missing_field, "name": "B"},
                                "manifest", "line 3 (img-001.jpg): fy is missing"),
        "not in manifest": ("immersal.build_map", {"images": stray, "name": "C"},
                            "images", f"{stray}extra.png is not in the manifest"),
        "imageMax": ("immersal.build_map", {"images": too_many, "name": "D"},
                     "images", "12 images, but an Immersal workspace holds at most 10 (imageMax)"),
    }
    refused = {
        "map name": ("immersal.build_map", {"images": too_many, "name": "my-map 1"}, "name", "'my-map 1'"),
        "option": ("immersal.build_map", {"images": too_many, "name": "E", "options": {"featureCont": 1}},
                   "options.featureCont", "featureCont"),
        "9 map ids": ("immersal.localize", {"image": f"{too_many}img-000.jpg", "intrinsics": INTRINSICS,
                                            "map_ids": list(range(1001, 1010))}, "map_ids", "at most 8"),
        "intrinsics": ("immersal.visual_gps", {"image": f"{too_many}img-000.jpg", "intrinsics": [60, 60],
                                               "map_ids": [1001]}, "intrinsics", "{fx, fy, ox, oy}"),
        "focal length": ("immersal.visual_gps", {"image": f"{too_many}img-000.jpg", "intrinsics": [0, 60, 1, 1],
                                                 "map_ids": [1001]}, "intrinsics", "positive focal lengths"),
    }
    for label, (name, params, field, expected) in refused.items():
        with pytest.raises(InvalidParams) as refusal:
            queue.submit(name, params)
        assert refusal.value.field == field and expected in str(refusal.value), (label, refusal.value)
    submitted = {label: queue.submit(name, params) for label, (name, params, _, _) in cases.items()}
    for label, (_, _, field, expected) in cases.items():
        with pytest.raises(JobFailed) as failed:
            queue.wait(submitted[label], timeout=30, poll=0.1)
        error = failed.value.job.error
        assert (error["type"], error.get("field")) == ("InvalidInput", field), (label, error)
        assert expected in error["message"], (label, error["message"])
    served = sandbox.counters("immersal")
    assert served.get("/status") == 1                           # only the imageMax case asked the vendor
    assert not {"/clear", "/capture", "/construct", "/localize"} & set(served)


# --- localization and Visual GPS ---
def reference_wgs84(position, ecef13) -> tuple[float, float, float]:
    """The vendor doc's MapPosToEcef (a row vector times a 4x4 matrix), then pyproj to WGS84."""
    e = np.asarray(ecef13, dtype=float)
    s = e[12]
    m = np.array([[s * e[3], s * e[6], s * e[9], 0.0], [s * e[4], s * e[7], s * e[10], 0.0],
                  [s * e[5], s * e[8], s * e[11], 0.0], [e[0], e[1], e[2], 1.0]])
    x, y, z, _ = np.array([-position[1], -position[0], position[2], 1.0]) @ m
    longitude, latitude, altitude = ECEF_TO_GEOGRAPHIC.transform(x, y, z)
    return latitude, longitude, altitude


def test_a_truncated_jpeg_is_refused_as_no_whole_image_not_answered_not_localized(queue, store, sandbox):
    """A query cut short would reach the vendor as a picture of nothing it knows ("not localized"):
    it is refused, naming the image, and nothing is sent."""
    picture = scene(4243, 64, 48)
    assert picture.startswith(b"\xff\xd8\xff") and picture.rstrip(b"\x00").endswith(b"\xff\xd9")
    cut = S3Ref(BUCKET, f"queries/{uuid.uuid4().hex[:8]}-cut.jpg")
    store.write(cut, picture[: len(picture) * 2 // 3])
    job_id = queue.submit("immersal.localize", {"image": cut.uri, "intrinsics": INTRINSICS, "map_ids": [1]})
    error = failed_with(queue, job_id, "InvalidInput", "image")
    assert cut.uri in error["message"] and "not a whole JPEG image" in error["message"]
    assert "/localize" not in sandbox.counters("immersal")


def test_localize_visual_gps_and_map_lists(queue, store, sandbox):
    images, rows = put_site(store, 6, gps=True, seed=3)
    built = queue.wait(queue.submit("immersal.build_map", {"images": images, "name": "Senate"}), timeout=60)
    map_id = built.result["map_id"]
    query = {"image": f"{images}img-004.jpg", "intrinsics": INTRINSICS, "map_ids": [map_id]}

    pose = queue.wait(queue.submit("immersal.localize", query), timeout=30).result
    assert pose["localized"] and pose["map_id"] == map_id
    assert pose["position"] == [rows[4]["px"], rows[4]["py"], rows[4]["pz"]]

    gps = queue.wait(queue.submit("immersal.visual_gps", query), timeout=30).result
    ecef = requests.post(f"{sandbox.url}/immersal/ecef", json={"token": DEFAULT_TOKEN, "id": map_id},
                         timeout=10).json()["ecef"]
    latitude, longitude, altitude = reference_wgs84(pose["position"], ecef)
    assert abs(gps["latitude"] - latitude) < 1e-6 and abs(gps["longitude"] - longitude) < 1e-6
    assert abs(gps["altitude"] - altitude) < 1e-3
    assert abs(gps["latitude"] - HELSINKI[0]) < 1e-3 and abs(gps["longitude"] - HELSINKI[1]) < 1e-3

    stranger = S3Ref(BUCKET, f"queries/{uuid.uuid4().hex[:8]}.jpg")
    store.write(stranger, scene(4242, 64, 48))
    lost = queue.wait(queue.submit("immersal.visual_gps", {**query, "image": stranger.uri}), timeout=30).result
    assert lost["localized"] is False and "not localized" in lost["message"] and "latitude" not in lost

    near = queue.wait(queue.submit("immersal.maps_near", {
        "latitude": HELSINKI[0], "longitude": HELSINKI[1], "radius": 200}), timeout=30).result
    assert map_id in [m["id"] for m in near["maps"]]
    far = queue.wait(queue.submit("immersal.maps_near", {"latitude": 61.4978, "longitude": 23.761, "radius": 200}),
                     timeout=30).result
    assert far["maps"] == []
    listed = queue.wait(queue.submit("immersal.list_maps", {}), timeout=30).result
    assert {"id": map_id, "name": "Senate"}.items() <= next(m for m in listed["maps"] if m["id"] == map_id).items()


# --- stitch, restore, extend ---
def test_stitch_restore_and_extend_a_map(queue, store, sandbox):
    west_images, west_rows = put_site(store, 4, run=0, seed=11)
    east_images, east_rows = put_site(store, 4, run=1, seed=12)
    west, east = (queue.submit("immersal.build_map", {"images": i, "name": n})
                  for i, n in ((west_images, "West"), (east_images, "East")))
    west, east = (queue.wait(j, timeout=60).result for j in (west, east))
    maps = [str(west["map_id"]), str(east["map_id"])]
    wait_until(lambda: all(sandbox.status("immersal")["maps"][m]["status"] == "done" for m in maps), 30,
               f"maps {', '.join(maps)} done at the vendor", interval=0.2)

    both = queue.wait(queue.submit("immersal.stitch", {"name": "Both", "map_ids": [west["map_id"], east["map_id"]]}),
                      timeout=60).result
    assert map_images(store, both["map"]) == (image_digests(store, west_images, west_rows)
                                              | image_digests(store, east_images, east_rows))
    assert both["map_ids"] == [west["map_id"], east["map_id"]]

    restored = queue.wait(queue.submit("immersal.restore", {"map_id": west["map_id"]}), timeout=30).result
    assert restored["workspace_images"] == 4

    more_images, more_rows = put_site(store, 3, run=2, seed=13)
    for row in more_rows:
        row["anchor"] = 0                       # the west map keeps its anchor
    write_manifest(store, parse_ref(more_images, prefix=True).key, more_rows)
    extended = queue.wait(queue.submit("immersal.build_map", {
        "images": more_images, "name": "WestMore", "extend": [west["map_id"]]}), timeout=60).result
    assert extended["extended"] == [west["map_id"]]
    assert map_images(store, extended["map"]) == (image_digests(store, west_images, west_rows)
                                                  | image_digests(store, more_images, more_rows))
