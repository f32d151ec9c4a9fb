"""Mapillary jobs end to end: real workers, Redis, moto S3 and the Mapillary stand-in over HTTP.

Ground truth comes from sandbox.mapillary_world, built from the seed the stand-in serves.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import piexif
import pytest
import redis
from PIL import Image

from geoqueue import GeoQueue, InvalidParams
from geoqueue.s3ref import S3Ref, parse_ref
from sandbox.mapillary_world import EARTH_M_PER_DEG, LONG_SEQUENCE_PLAN, build_world, organization_images_in_bbox
from services.rate_limit import Budget, FleetLimitReached, FleetRateLimiter, Rate
from tasks.mapillary.exif import Geotag
from tasks.mapillary.records import HarvestCheckpoints
from tasks.mapillary.sequences import Placed, split_sequences
from tests.conftest import start_stack, wait_until
from tests.inputs import BUCKET
from tests.probes import failed_with
from vendors.errors import TransientError
from vendors.mapillary.graph import MAX_IDS_PER_BATCH
from vendors.mapillary.resumable_upload import upload_session_key

WORLD = build_world()
CITY = WORLD.largest_organization()                       # 8,969 images in 120 sequences
FLEET = WORLD.organization_by_slug("sandbox-fleet")       # 3,237 images in 40 sequences
WALKERS = WORLD.organization_by_slug("sandbox-walkers")   # 1,335 images in 20 sequences
REGION = (WORLD.bbox[0] - 0.002, WORLD.bbox[1] - 0.002, WORLD.bbox[2] + 0.002, WORLD.bbox[3] + 0.002)
TOOLSET_META_COLUMNS = ["seq_id", "img_id", "captured_at", "compass_angle", "thumb_256_url", "width"]
TRANSFER_PROCESSES = 4                                    # GEOQUEUE_TRANSFER_CONCURRENCY in the test stack
START = datetime(2025, 5, 1, 9, 0, 0, tzinfo=UTC)
ORIGIN = (35.17, 33.365)                                  # lat, lon of test tracks


# --- helpers ---
def settled_counters(sandbox) -> dict[str, int]:
    """The counters once the stand-in has served what killed workers had sent (it may still be
    answering requests of calls that were under way): two reads half a second apart agree."""
    reads = [sandbox.counters("mapillary")]

    def unchanged() -> bool:
        reads.append(sandbox.counters("mapillary"))
        return reads[-2] == reads[-1]

    time.sleep(0.5)
    wait_until(unchanged, 60, "the Mapillary counters to settle", interval=0.5)
    return reads[-1]


def destination() -> str:
    return f"s3://{BUCKET}/harvest-{uuid.uuid4().hex[:8]}/"


def harvest_params(organization, dest: str, **extra) -> dict:
    return {"organization_id": organization.id, "bbox": list(REGION), "destination": dest, **extra}


def wait_watching(queue: GeoQueue, job_id: str, timeout: float = 240):
    """Wait for the job; returns it and every progress phase seen on the way."""
    phases = set()

    def finished():
        job = queue.status(job_id)
        phases.add(job.phase)
        return job if job.finished else None

    return wait_until(finished, timeout, f"job {job_id} to finish", interval=0.3), phases


def kill_mid_work(stack, *names: str) -> None:
    """SIGKILL workers a moment after progress was seen: killed right at an item's recording, the
    fan-out's next dispatch is lost too, and only the sweeper resends it (90 s later in tests)."""
    time.sleep(0.3)
    for name in names:
        stack.processes[name].kill()


def read_csv(store, uri: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.reader(io.StringIO(store.read(parse_ref(uri)).decode()))
    header = next(reader)
    return header, [dict(zip(header, row, strict=True)) for row in reader]


def ground_truth(organization) -> tuple[set[str], set[str]]:
    """The organization's image and sequence ids in the region; its sequences lie wholly inside,
    so the toolset's whole-sequence harvest and the bbox query agree."""
    images = organization_images_in_bbox(organization.id, REGION)
    sequences = {i.sequence_id for i in images}
    assert {i for s in sequences for i in WORLD.sequences[s].image_ids} == {i.id for i in images}
    return {i.id for i in images}, sequences


def expected_batches(sequences: set[str]) -> int:
    return sum(math.ceil(len(WORLD.sequences[s].image_ids) / MAX_IDS_PER_BATCH) for s in sequences)


def assert_harvest_matches_ground_truth(store, job, organization, dest: str) -> None:
    image_ids, sequences = ground_truth(organization)
    outputs = job.result["outputs"]

    header, rows = read_csv(store, outputs["seq_dataset.csv"])
    assert header == ["org_id", "seq_id"]
    assert {r["org_id"] for r in rows} == {organization.id}
    assert sorted(r["seq_id"] for r in rows) == sorted(sequences)               # each once

    header, rows = read_csv(store, outputs["img_dataset.csv"])
    assert header == ["seq_id", "img_id"]
    assert sorted(r["img_id"] for r in rows) == sorted(image_ids)               # none missing, none twice
    for sequence_id in sequences:                                               # capture order per sequence
        assert [r["img_id"] for r in rows if r["seq_id"] == sequence_id] == WORLD.sequences[sequence_id].image_ids

    header, rows = read_csv(store, outputs["img_meta_dataset.csv"])
    assert header == TOOLSET_META_COLUMNS
    assert sorted(r["img_id"] for r in rows) == sorted(image_ids)
    for row in rows[::97]:
        image = WORLD.images[row["img_id"]]
        assert row["seq_id"] == image.sequence_id and row["captured_at"] == str(image.captured_at)
        assert row["width"] == str(image.camera.width) and row["thumb_256_url"].startswith("http")

    images = parse_ref(dest, prefix=True).child("downloaded_images/")
    stored = {ref.name: size for ref, size in store.list(images)}
    assert set(stored) == {f"{i}_256.jpg" for i in image_ids} and all(stored.values())
    some = next(iter(stored))
    assert store.head_bytes(images.child(some), 3) == b"\xff\xd8\xff"
    assert job.result["images_listed"] == job.result["metadata_fetched"] == len(image_ids)
    assert job.result["sequences"] == len(sequences) and job.result["images_missing"] == 0


# --- harvest ---
def test_the_tile_drill_fetches_the_tiles_of_a_zoom_level_at_once(queue, sandbox):
    """A tile's children are all known when it is read: they are fetched together, so the drill
    waits one round trip per zoom level, not one per tile."""
    latency = 1.0
    sandbox.faults("mapillary", latency_ms=latency * 1000, latency_paths="/tiles/")
    job = queue.wait(queue.submit("mapillary.harvest", harvest_params(WALKERS, destination())), timeout=240)
    assert job.state == "succeeded", job.error
    served = [(int(e["path"].split("/")[-3]), e["time"])
              for e in sandbox.journal("mapillary") if "/tiles/" in e["path"]]
    levels = len({z for z, _ in served})
    assert len(served) > 2 * levels + 1, f"too few tiles to tell: {served}"
    span = max(t for _, t in served) - min(t for _, t in served)
    # One after another they take (tiles - 1) x latency from first to last; level by level about
    # (levels - 1) x latency and the stand-in's CPU, which a loaded machine stretches: half the first.
    assert span < (len(served) - 1) * latency / 2, sorted((z, round(t - min(t for _, t in served), 3))
                                                         for z, t in served)


def test_harvest_matches_ground_truth_with_each_request_once(queue, store, sandbox):
    image_ids, sequences = ground_truth(CITY)
    assert len(image_ids) >= 5000 and len(sequences) >= 100
    dest = destination()
    job, phases = wait_watching(queue, queue.submit("mapillary.harvest", harvest_params(CITY, dest)))
    assert job.state == "succeeded", job.error
    assert_harvest_matches_ground_truth(store, job, CITY, dest)
    assert job.result["images_downloaded"] == len(image_ids)
    assert (job.done, job.total) == (len(sequences), len(sequences))
    assert any(p.startswith("tiles") for p in phases)
    assert any(f"images listed {len(image_ids)}" in p and "metadata" in p and "downloaded" in p for p in phases)

    seen = sandbox.counters("mapillary")
    tiles = {k: v for k, v in seen.items() if k.startswith("tile:")}
    assert set(tiles.values()) == {1} and any(k.startswith("tile:14/") for k in tiles)
    assert all(seen[f"image_ids:{s}"] == 1 for s in sequences) and seen["image_ids"] == len(sequences)
    assert seen["graph_batch"] == expected_batches(sequences) and "graph_batch_failed" not in seen
    assert seen["thumbnail"] == len(image_ids) and all(seen[f"thumbnail:{i}"] == 1 for i in image_ids)
    assert "graph_image" not in seen and "cdn_refused" not in seen     # the batch's own URLs served


def test_harvest_killed_midway_resumes_without_redoing_finished_work(queue, store, stack, sandbox):
    image_ids, sequences = ground_truth(WALKERS)
    sandbox.configure("mapillary", thumbnail_lifetime_s=3600)    # no URL refresh muddles the request counts
    dest = destination()
    job_id = queue.submit("mapillary.harvest", harvest_params(WALKERS, dest, max_parallel=4))
    wait_until(lambda: queue.status(job_id).done >= 4, 120, "the harvest to make progress")
    kill_mid_work(stack, "transfer", "control")
    at_kill = settled_counters(sandbox)
    done = HarvestCheckpoints(redis.Redis.from_url(stack.redis_url, decode_responses=True), job_id).counts()
    assert 0 < done["images_downloaded"] < len(image_ids)
    stack.start_worker("transfer")
    stack.start_worker("control")
    stack.wait_for_workers(["control", "transfer"])

    job, _ = wait_watching(queue, job_id, timeout=180)
    assert job.state == "succeeded", job.error
    assert_harvest_matches_ground_truth(store, job, WALKERS, dest)
    after = sandbox.counters("mapillary")

    def made_since_kill(name: str) -> int:
        return after.get(name, 0) - at_kill.get(name, 0)

    # After the restart, exactly the work without a checkpoint was done again, nothing more.
    assert made_since_kill("tile") == 0
    assert made_since_kill("image_ids") == len(sequences) - done["sequences_listed"]
    assert made_since_kill("graph_batch") == expected_batches(sequences) - done["batches"]
    assert made_since_kill("thumbnail") == len(image_ids) - done["images_downloaded"]


def test_a_harvest_killed_inside_one_long_sequence_redoes_only_its_unfinished_calls(queue, store, stack, sandbox):
    # One sequence of 1,000 images: its batches and downloads are in flight together when the worker dies.
    sandbox.configure("mapillary", long_sequence_images=1000, thumbnail_lifetime_s=3600)
    world = build_world(long_sequence=1000)
    owner = world.organization_by_slug(LONG_SEQUENCE_PLAN[0])
    [sequence] = [s for s in world.sequences.values() if s.organization_id == owner.id]
    dest = destination()
    job_id = queue.submit("mapillary.harvest", harvest_params(owner, dest))
    checkpoints = HarvestCheckpoints(redis.Redis.from_url(stack.redis_url, decode_responses=True), job_id)
    wait_until(lambda: checkpoints.counts().get("images_downloaded", 0) >= 100, 120, "100 thumbnails downloaded")
    stack.processes["transfer"].kill()
    at_kill, done = settled_counters(sandbox), checkpoints.counts()
    assert 0 < done["images_downloaded"] < 1000
    stack.start_worker("transfer")
    stack.wait_for_workers(["transfer"])

    job, _ = wait_watching(queue, job_id, timeout=180)
    assert job.state == "succeeded", job.error
    assert job.result["images_listed"] == job.result["metadata_fetched"] == 1000
    _, rows = read_csv(store, job.result["outputs"]["img_dataset.csv"])
    assert [r["img_id"] for r in rows] == sequence.image_ids
    stored = {ref.name for ref, size in store.list(parse_ref(dest, prefix=True).child("downloaded_images/")) if size}
    assert stored == {f"{i}_256.jpg" for i in sequence.image_ids}
    after = sandbox.counters("mapillary")
    # The calls that had ended were checkpointed and not made again; those cut off were made once more.
    assert after["image_ids"] - at_kill["image_ids"] == 0
    assert after["graph_batch"] - at_kill.get("graph_batch", 0) == 20 - done.get("batches", 0)
    assert after["thumbnail"] - at_kill["thumbnail"] == 1000 - done["images_downloaded"]


def test_expired_thumbnail_urls_are_refreshed(queue, store, sandbox):
    image_ids, sequences = ground_truth(WALKERS)
    sandbox.configure("mapillary", thumbnail_lifetime_s=2)
    # The first thumbnail is throttled for 3 s: its task retries with the batch's URLs expired by then.
    sandbox.faults("mapillary", rate_limit_next=1, retry_after_s=3, paths="/mapillary/cdn/")
    dest = destination()
    job = queue.wait(queue.submit("mapillary.harvest", harvest_params(WALKERS, dest)), timeout=180)
    assert job.state == "succeeded"
    assert_harvest_matches_ground_truth(store, job, WALKERS, dest)
    seen = sandbox.counters("mapillary")
    assert seen["cdn_refused:expired"] >= 1
    assert seen["graph_batch"] > expected_batches(sequences)          # fresh URLs, a batch at a time
    assert all(seen[f"thumbnail:{i}"] == 1 for i in image_ids)      # refused URLs cost no second download


def test_one_missing_image_does_not_lose_its_batch(queue, store, sandbox):
    image_ids, sequences = ground_truth(WALKERS)
    sequence = WORLD.sequences[sorted(sequences)[0]]
    gone = sequence.image_ids[len(sequence.image_ids) // 2]
    # Deleted, but its sequence's image_ids (and the tiles) still name it.
    sandbox.configure("mapillary", deleted_image_ids=[gone])
    dest = destination()
    job = queue.wait(queue.submit("mapillary.harvest", harvest_params(WALKERS, dest)), timeout=180)
    assert job.state == "succeeded"
    assert job.result["images_missing"] == 1 and job.result["missing_image_ids"] == [gone]
    _, listed = read_csv(store, job.result["outputs"]["img_dataset.csv"])
    assert gone in {r["img_id"] for r in listed}                   # image_ids still names it
    _, meta = read_csv(store, job.result["outputs"]["img_meta_dataset.csv"])
    assert {r["img_id"] for r in meta} == image_ids - {gone}       # its batch mates are all there
    assert store.size(parse_ref(f"{dest}downloaded_images/{gone}_256.jpg")) is None
    seen = sandbox.counters("mapillary")
    assert seen["graph_batch_failed"] == 1
    assert seen["graph_batch"] == expected_batches(sequences)      # the rest of the batch: one more call


@pytest.mark.parametrize("params, field", [
    ({"organization_id": "1", "creator_id": "2"}, "organization_id"),
    ({"organization_id": "1", "bbox": [33.3, 35.1, 33.2]}, "bbox"),
    ({"organization_id": "1", "bbox": [33.4, 35.1, 33.3, 35.2]}, "bbox"),
    ({"organization_id": "1", "quality": "512"}, "quality"),
    ({"organization_id": "1", "fields": ["captured_at", "nope"]}, "fields[1]"),
    ({"organization_id": "1", "destination": "/tmp/out"}, "destination"),
    ({"organization_id": "org-1"}, "organization_id"),
    ({"organization_id": "1", "captured_since": "2025-06-01T00:00:00"}, "captured_since"),   # whose midnight?
    ({"organization_id": "1", "captured_since": 1748736000000}, "captured_since"),
])
def test_harvest_refuses_bad_parameters_before_anything_is_enqueued(queue, sandbox, params, field):
    full = {"bbox": list(REGION), "destination": destination(), **params}
    before = queue.list(limit=1)
    with pytest.raises(InvalidParams) as refusal:
        queue.submit("mapillary.harvest", full)
    assert refusal.value.field == field
    assert queue.list(limit=1) == before
    assert sandbox.counters("mapillary") == {}


def test_harvest_destination_outside_the_output_area_fails_naming_it(queue, sandbox):
    job_id = queue.submit("mapillary.harvest", harvest_params(WALKERS, "s3://someone-elses/harvest/"))
    error = failed_with(queue, job_id, "InvalidInput", "destination")
    assert "s3://someone-elses/harvest/" in error["message"] and "outside the fleet's output area" in error["message"]
    assert sandbox.counters("mapillary") == {}  # refused before any vendor call


def test_a_tile_that_is_no_tile_fails_the_harvest_with_internal_error(queue, sandbox):
    # The tile service answers its second request with a Graph error envelope and HTTP 200.
    sandbox.configure("mapillary", tiles_rate_limit=1, rate_limit_http_status=200)
    error = failed_with(queue, queue.submit("mapillary.harvest", harvest_params(WALKERS, destination())),
                        "InternalError", None)
    assert "DecodeError in mapillary.harvest" in error["message"]
    # Failed at once, not tried again: the drill's tiles in flight together were each asked for once.
    tiles = [e["path"] for e in sandbox.journal("mapillary") if "/tiles/" in e["path"]]
    assert sandbox.counters("mapillary")["rate_limited"] >= 1 and len(tiles) == len(set(tiles))


# --- fleet-wide limits ---
def test_fleet_limits_in_redis(stack):
    limiter = FleetRateLimiter(redis.Redis.from_url(stack.redis_url))
    name = f"test:{uuid.uuid4().hex}"
    daily = Budget(3, 86_400)
    assert [limiter.take(f"{name}:day", daily) for _ in range(3)] == [0.0, 0.0, 0.0]
    now = datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    assert limiter.take(f"{name}:day", daily) == pytest.approx((midnight - now).total_seconds(), abs=2)
    with pytest.raises(FleetLimitReached) as caught:
        limiter.acquire(f"{name}:day", daily, max_wait=5)
    assert isinstance(caught.value, TransientError) and caught.value.retry_after > 5

    rate = Rate(10, 1.0, burst=2)          # 2 at once, then one per 1/8 s: never 11 in a second
    assert [limiter.take(f"{name}:rate", rate) for _ in range(2)] == [0.0, 0.0]
    assert 0.1 < limiter.take(f"{name}:rate", rate) <= 0.125
    started = time.monotonic()
    limiter.acquire(f"{name}:rate", rate, max_wait=1)
    assert time.monotonic() - started >= 0.1


# --- uploads ---
def to_dms(value: float) -> tuple:
    value = abs(value)
    degrees, minutes = int(value), int(value * 60) % 60
    return (degrees, 1), (minutes, 1), (round((value * 3600 - degrees * 3600 - minutes * 60) * 10000), 10000)


def geotagged_jpeg(lat: float | None, lon: float | None, when: datetime | None, heading: float | None = 0.0,
                   size=(64, 48), noise: bool = False, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) if noise \
        else np.full((size[1], size[0], 3), seed % 250, dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95 if noise else 75)
    gps, exif = {}, {}
    if lat is not None:
        gps.update({piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S", piexif.GPSIFD.GPSLatitude: to_dms(lat),
                    piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W", piexif.GPSIFD.GPSLongitude: to_dms(lon)})
    if heading is not None and lat is not None:
        gps[piexif.GPSIFD.GPSImgDirection] = (round(heading * 100), 100)
    if when is not None:
        exif[piexif.ExifIFD.DateTimeOriginal] = when.strftime("%Y:%m:%d %H:%M:%S").encode()
        exif[piexif.ExifIFD.SubSecTimeOriginal] = f"{when.microsecond // 1000:03d}".encode()
    tagged = io.BytesIO()
    piexif.insert(piexif.dump({"0th": {}, "Exif": exif, "GPS": gps}), out.getvalue(), tagged)
    return tagged.getvalue()


def track_point(i: int, east_m: float = 0.0) -> tuple[float, float]:
    """A walk north, 5 m per image."""
    lat = ORIGIN[0] + 5.0 * i / EARTH_M_PER_DEG
    return lat, ORIGIN[1] + east_m / (EARTH_M_PER_DEG * math.cos(math.radians(ORIGIN[0])))


def put_objects(store, prefix: str, objects: dict[str, bytes]) -> str:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: store.write(S3Ref(BUCKET, prefix + item[0]), item[1], "image/jpeg"),
                      objects.items()))
    return f"s3://{BUCKET}/{prefix}"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_split_rules_in_isolation():
    here = Geotag(35.0, 33.0, 0.0, heading=90.0)
    turned = Geotag(35.0, 33.0, 1.0, heading=180.0)
    again = Geotag(35.0, 33.0, 2.0, heading=182.0)
    split = split_sequences([Placed("a", here), Placed("b", turned), Placed("c", again)])
    assert [[p.name for p in s] for s in split.sequences] == [["a", "b"]] and split.duplicates == {"c": "b"}
    far = Geotag(35.01, 33.0, 3.0)      # 1.1 km away
    late = Geotag(35.0, 33.0, 70.0)     # 67 s after the one before
    split = split_sequences([Placed("a", here), Placed("far", far), Placed("late", late)])
    assert [[p.name for p in s] for s in split.sequences] == [["a"], ["far"], ["late"]]


def test_upload_of_2500_images_splits_and_sends_each_once(queue, store, sandbox):
    objects, when = {}, START
    for i in range(2500):
        if i == 1200:
            when += timedelta(seconds=120)          # a pause: a new sequence
        east = 500.0 if i >= 1900 else 0.0         # a jump: a new sequence
        objects[f"img_{i:05d}.jpg"] = geotagged_jpeg(*track_point(i, east), when, seed=i)
        if i in (10, 500, 2000):                    # the same place and heading half a second later
            objects[f"dup_{i:05d}.jpg"] = geotagged_jpeg(*track_point(i, east), when + timedelta(milliseconds=500),
                                                         seed=i + 7)
        when += timedelta(seconds=1)
    prefix = put_objects(store, f"upload-{uuid.uuid4().hex[:8]}/", objects)

    job = queue.wait(queue.submit("mapillary.upload_sequence", {"images": prefix}), timeout=240)
    assert job.state == "succeeded", job.error
    result = job.result
    assert result["protocol"] == "resumable" and result["rejected"] == {} and result["uploaded"] == 2500
    assert [s["images"] for s in result["sequences"]] == [1000, 200, 700, 600]
    assert [s["first_image"].rsplit("/", 1)[1] for s in result["sequences"]] == \
        ["img_00000.jpg", "img_01000.jpg", "img_01200.jpg", "img_01900.jpg"]
    assert result["duplicates"] == {f"{prefix}dup_{i:05d}.jpg": f"near-duplicate of {prefix}img_{i:05d}.jpg"
                                    for i in (10, 500, 2000)}
    status = sandbox.status("mapillary")
    assert sorted(c["images"] for c in status["clusters"].values()) == [200, 600, 700, 1000]
    assert {s["cluster_id"] for s in result["sequences"]} == {c["cluster_id"] for c in status["clusters"].values()}
    seen = sandbox.counters("mapillary")
    for name, data in objects.items():
        key = upload_session_key(data, ".jpg")
        if name.startswith("img_"):
            assert seen[f"upload_complete:{key}"] == 1 and status["upload_sessions"][key]["md5"] == md5(data)
        else:
            assert key not in status["upload_sessions"]


def test_images_without_usable_exif_are_rejected_with_reasons_and_the_rest_upload(queue, store, sandbox):
    good = {f"ok_{i}.jpg": geotagged_jpeg(*track_point(i), START + timedelta(seconds=i), seed=i) for i in range(6)}
    lat, lon = track_point(50)
    # An Exif segment whose first directory lies beyond the segment, then a JPEG without metadata.
    broken_exif = b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff\xff\xff" + geotagged_jpeg(None, None, None)[2:]
    bad = {
        "no_exif.jpg": geotagged_jpeg(None, None, None),
        "no_time.jpg": geotagged_jpeg(lat, lon, None),
        "no_gps.jpg": geotagged_jpeg(None, None, START),
        "null_island.jpg": geotagged_jpeg(0.0, 0.0, START),
        "corrupt.jpg": bytes(range(256)) * 8,
        "empty.jpg": b"",
        "broken_exif.jpg": broken_exif,
        "truncated.jpg": good["ok_0.jpg"][:200],
    }
    prefix = put_objects(store, f"mixed-{uuid.uuid4().hex[:8]}/", {**good, **bad})
    job = queue.wait(queue.submit("mapillary.upload_sequence", {"images": prefix}), timeout=120)
    assert job.state == "succeeded", job.error
    reasons = {uri.rsplit("/", 1)[1]: reason for uri, reason in job.result["rejected"].items()}
    assert set(reasons) == set(bad)
    assert reasons["no_exif.jpg"] == "no EXIF metadata"
    assert reasons["no_time.jpg"].startswith("no capture time") and "DateTimeOriginal" in reasons["no_time.jpg"]
    assert reasons["no_gps.jpg"].startswith("no GPS latitude")
    assert reasons["null_island.jpg"] == "GPS position is 0,0 (no fix)"
    assert reasons["corrupt.jpg"] == "not a JPEG image" and reasons["empty.jpg"] == "empty file"
    assert reasons["broken_exif.jpg"] == "no EXIF metadata"
    assert reasons["truncated.jpg"] == "EXIF segment cut short (truncated file)"
    assert job.result["uploaded"] == 6 and [s["images"] for s in job.result["sequences"]] == [6]
    sessions = sandbox.status("mapillary")["upload_sessions"]
    assert {upload_session_key(data, ".jpg") for data in good.values()} <= set(sessions)
    assert not any(upload_session_key(data, ".jpg") in sessions for data in bad.values() if data)


def test_upload_redelivered_after_a_kill_sends_no_image_twice(queue, store, stack, sandbox):
    objects = {f"img_{i:04d}.jpg": geotagged_jpeg(*track_point(i), START + timedelta(seconds=i), seed=i)
               for i in range(120)}
    prefix = put_objects(store, f"kill-{uuid.uuid4().hex[:8]}/", objects)
    # Slow uploads, so that the kill lands in uploads rather than in the few milliseconds between two.
    sandbox.faults("mapillary", latency_ms=150, paths="/mapillary/rupload/")
    job_id = queue.submit("mapillary.upload_sequence", {"images": prefix, "max_parallel": 8})
    wait_until(lambda: queue.status(job_id).done >= 30, 120, "the upload to make progress")
    kill_mid_work(stack, "transfer")
    at_kill, recorded = sandbox.counters("mapillary"), set(queue.items(job_id))
    stack.start_worker("transfer")
    stack.wait_for_workers(["transfer"])

    job = queue.wait(job_id, timeout=180)
    assert job.state == "succeeded" and job.result["uploaded"] == 120
    after = sandbox.counters("mapillary")
    status = sandbox.status("mapillary")
    keys = {name: upload_session_key(data, ".jpg") for name, data in objects.items()}
    for name, data in objects.items():
        key = keys[name]
        assert status["upload_sessions"][key]["md5"] == md5(data)
        if f"{parse_ref(prefix, prefix=True).key}{name}" in recorded:   # done before the kill: never touched again
            for kind in ("upload", "upload_offset", "upload_complete"):
                assert after.get(f"{kind}:{key}", 0) == at_kill.get(f"{kind}:{key}", 0), (name, kind)
    # Only an image whose upload had just completed when the worker died asks again (it sends no byte).
    completions = sum(after[f"upload_complete:{key}"] for key in keys.values())
    assert len(objects) <= completions <= len(objects) + TRANSFER_PROCESSES
    [cluster] = status["clusters"].values()
    assert cluster["images"] == 120
    assert after["finish"] == 1           # closed once, though the last images may all finish the job at once


def test_upload_resumes_from_the_offset_after_a_dropped_connection(queue, store, sandbox):
    data = geotagged_jpeg(*track_point(0), START, size=(640, 480), noise=True, seed=3)
    assert len(data) > 300_000
    prefix = put_objects(store, f"drop-{uuid.uuid4().hex[:8]}/", {"big.jpg": data})
    key = upload_session_key(data, ".jpg")
    # Only this image's session loses its connection, so no other upload can take the drop (one did: the
    # kill test's second finisher, still closing its sequence again, before closings went through Once).
    sandbox.configure("mapillary", drop_upload_after_bytes=120_000, drop_upload_next=1, drop_upload_key=key)
    job = queue.wait(queue.submit("mapillary.upload_sequence", {"images": prefix}), timeout=120)
    assert job.state == "succeeded", job.error
    seen = sandbox.counters("mapillary")
    assert seen[f"upload_dropped:{key}"] == 1 and seen[f"upload:{key}"] == 2 and seen[f"upload_offset:{key}"] == 2
    assert seen[f"upload_complete:{key}"] == 1
    assert sandbox.status("mapillary")["upload_sessions"][key]["md5"] == md5(data)


def test_an_upload_from_a_bucket_that_does_not_exist_fails_naming_images(queue, stack):
    job_id = queue.submit("mapillary.upload_sequence", {"images": "s3://no-such-bucket-4711/photos/"})
    error = failed_with(queue, job_id, "InvalidInput", "images")
    assert "s3://no-such-bucket-4711/photos/" in error["message"] and "bucket does not exist" in error["message"]


def two_sequences(store, name: str) -> str:
    """Six images, a pause of five minutes after the third: two sequences."""
    objects = {f"img_{i}.jpg": geotagged_jpeg(*track_point(i), START + timedelta(seconds=i + (300 if i >= 3 else 0)),
                                              seed=i) for i in range(6)}
    return put_objects(store, f"{name}-{uuid.uuid4().hex[:8]}/", objects)


def test_a_closing_cut_off_is_made_again_and_closes_the_sequence_once(queue, store, sandbox):
    prefix = two_sequences(store, "cut")
    # The first finish_upload loses its connection before the service sees it. Nothing can tell
    # whether it took effect, so the closing is made again once it can no longer be running.
    sandbox.faults("mapillary", drop_next=1, paths="/graph/finish_upload")
    job = queue.wait(queue.submit("mapillary.upload_sequence", {"images": prefix}), timeout=120)
    assert job.state == "succeeded", job.error
    clusters = sandbox.status("mapillary")["clusters"].values()
    assert sorted(c["images"] for c in clusters) == [3, 3]
    assert {s["cluster_id"] for s in job.result["sequences"]} == {c["cluster_id"] for c in clusters}
    assert sandbox.counters("mapillary")["finish"] == 2  # one finish_upload reached the service per sequence


def test_an_unexpected_answer_to_a_closing_fails_the_upload_with_internal_error(queue, store, sandbox):
    prefix = two_sequences(store, "odd")
    # Graph answers its second request (the second sequence's finish_upload) with its error envelope
    # and HTTP 200: an answer without a cluster id.
    sandbox.configure("mapillary", graph_rate_limit=1, rate_limit_http_status=200)
    error = failed_with(queue, queue.submit("mapillary.upload_sequence", {"images": prefix}), "InternalError", None)
    assert "KeyError in mapillary.transfer.upload_image: 'cluster_id'" in error["message"]


# --- a small fleet of its own: the rate limit across processes, the legacy protocol ---
@pytest.fixture(scope="module")
def small_fleet():
    """A stack of its own: three single-process transfer workers sharing a 300/min entity limit
    (5 at once, then one per 0.2 s), and the legacy upload protocol."""
    fleet = start_stack(flower=False, beat=False, GEOQUEUE_TRANSFER_CONCURRENCY="1",
                        GEOQUEUE_MAPILLARY_ENTITY_PER_MINUTE="300", GEOQUEUE_MAPILLARY_UPLOAD_PROTOCOL="legacy")
    try:
        for name in ("transfer2", "transfer3"):
            fleet.start_worker("transfer", name=name)
        fleet.wait_for_workers(["transfer", "transfer2", "transfer3"])
        yield fleet
    finally:
        for name, process in fleet.processes.items():
            if name.startswith(("control", "transfer")):
                process.kill()                # idle by now; a warm shutdown of each would only cost time
        fleet.stop()


def most_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(np.searchsorted(times, t + window, side="right") - i for i, t in enumerate(times))


class TestOnTheSmallFleet:
    """Tests on the small fleet: their `sandbox` controls the small fleet's stand-ins. The autouse reset
    follows the session stack, not this one, so each test resets them first."""

    @pytest.fixture
    def sandbox_url(self, small_fleet) -> str:
        return small_fleet.sandbox_url

    def test_entity_rate_limit_holds_across_three_worker_processes(self, small_fleet, sandbox):
        sandbox.reset()
        # The stand-in enforces 30 per 5 s itself: one 429 would mean the fleet went over.
        sandbox.configure("mapillary", graph_rate_limit=30, rate_limit_window_s=5)
        queue = GeoQueue(small_fleet.redis_url)
        job = queue.wait(queue.submit("mapillary.harvest", harvest_params(WALKERS, destination())), timeout=180)
        assert job.state == "succeeded"
        graph = [e["time"] for e in sandbox.journal("mapillary") if e["path"].startswith("/mapillary/graph")]
        # Unthrottled, three workers send these within a few seconds, far more than one window may hold.
        assert len(graph) > 40
        assert most_in_any_window(graph, 5.0) <= 5 + 24         # burst + 5 s / 0.203 s
        assert sandbox.counters("mapillary").get("rate_limited", 0) == 0
        for worker in ("transfer", "transfer2", "transfer3"):
            assert "mapillary.transfer.sequence" in small_fleet.logs(worker), f"{worker} did no harvest work"

    def test_legacy_upload_posts_each_image_once_under_its_sequence_key(self, small_fleet, sandbox):
        sandbox.reset()
        store = small_fleet.object_store()
        objects = {}
        for i in range(12):
            pause = timedelta(seconds=300 if i >= 6 else 0)
            objects[f"img_{i:02d}.jpg"] = geotagged_jpeg(*track_point(i), START + timedelta(seconds=i) + pause, seed=i)
        prefix = put_objects(store, f"legacy-{uuid.uuid4().hex[:8]}/", objects)
        queue = GeoQueue(small_fleet.redis_url)
        job = queue.wait(queue.submit("mapillary.upload_sequence", {"images": prefix}), timeout=120)
        assert job.state == "succeeded", job.error
        sequences = job.result["sequences"]
        assert job.result["protocol"] == "legacy" and [s["images"] for s in sequences] == [6, 6]
        stored = sandbox.status("mapillary")["legacy_objects"]
        seen = sandbox.counters("mapillary")
        for number, sequence in enumerate(sequences):
            for i in range(6 * number, 6 * number + 6):
                key = f"sandbox_uploader/{sequence['uuid']}/img_{i:02d}.jpg"
                assert stored[key]["md5"] == md5(objects[f"img_{i:02d}.jpg"]) and seen[f"legacy_upload:{key}"] == 1
            assert stored[sequence["done_marker"]]["done_marker"]
            assert sequence["done_marker"] == f"sandbox_uploader/{sequence['uuid']}/DONE"
        assert len(stored) == 14
