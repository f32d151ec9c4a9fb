"""The Mapillary client against the Mapillary stand-in, over real HTTP on loopback.

Ground truth comes from sandbox.mapillary_world, built from the same seed the stand-in serves.
"""
from __future__ import annotations

import io
import random
import time
import uuid

import pytest
import requests
from PIL import Image as PILImage

from sandbox.mapillary import SANDBOX_CLIENT_TOKEN, SANDBOX_USER_TOKEN
from sandbox.mapillary_world import build_world, organization_images_in_bbox
from vendors.errors import AuthError, InputError, NotFound, RateLimited, TransientError
from vendors.http import Retries
from vendors.mapillary.client import MapillaryClient
from vendors.mapillary.errors import (
    ExpiredUrl,
    MapillaryAuthError,
    MapillaryInputError,
    MapillaryNotFound,
    MapillaryRateLimited,
    MapillaryTransientError,
    legacy_error_from_response,
)
from vendors.mapillary.legacy_upload import LegacyUploadCredentials
from vendors.mapillary.resumable_upload import upload_session_key
from vendors.mapillary.tiles import lonlat_to_tile, tile_bounds, tile_local_to_lonlat, tiles_covering_bbox

# These tests look at how one answer is classified; tests/clients/test_call_retries.py, at the retries.
ONE_TRY = Retries(attempts=1)

LEGACY_BUCKET = "mapillary.uploads.manual.images"
LEGACY_CREDENTIALS = LegacyUploadCredentials("sandbox_uploader", "sandbox-permission-hash", "sandbox-signature-hash")


def make_client(server, token: str = SANDBOX_CLIENT_TOKEN) -> MapillaryClient:
    base = f"{server.url}/mapillary"
    return MapillaryClient(f"{base}/graph", f"{base}/tiles", f"{base}/rupload", token, timeout=30,
                           legacy_upload_url=f"{base}/s3/{LEGACY_BUCKET}", retries=ONE_TRY)


@pytest.fixture
def client(server) -> MapillaryClient:
    return make_client(server)


@pytest.fixture
def uploader(server) -> MapillaryClient:
    return make_client(server, SANDBOX_USER_TOKEN)


@pytest.fixture(scope="module")
def world():
    return build_world()


@pytest.fixture(scope="module")
def city(world):
    return world.largest_organization()


def jpeg_bytes(color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (64, 48), color).save(out, format="JPEG")
    return out.getvalue()


# --- tiles ---

def test_tile_math_round_trips():
    assert lonlat_to_tile(0.0, 0.0, 1) == (1, 1)
    west, south, east, north = tile_bounds(0, 0, 0)
    assert (west, east) == (-180.0, 180.0) and north == pytest.approx(85.0511, abs=1e-4) and south == -north
    x, y = lonlat_to_tile(33.365, 35.17, 14)
    lon, lat = tile_local_to_lonlat(2048, 2048, 14, x, y)           # the middle of that tile
    w, s, e, n = tile_bounds(14, x, y)
    assert lon == pytest.approx((w + e) / 2) and s < lat < n
    covering = tiles_covering_bbox((w + 1e-6, s + 1e-6, e + (e - w) / 2, n - 1e-6), 14)
    assert covering == [(14, x, y), (14, x + 1, y)]


def test_sequence_tile_decodes_to_sequences_in_the_region(sandbox, client, world):
    x, y = lonlat_to_tile(*world.center, 12)
    tile = client.coverage_tile(12, x, y)
    assert tile.sequences and not tile.images and not tile.overview   # z12: sequence layer only
    known = set(world.sequences)
    assert {s.id for s in tile.sequences} <= known
    first = tile.sequences[0]
    truth = world.sequences[first.id]
    assert first.image_id == truth.image_ids[0] and first.organization_id == truth.organization_id
    region = world.bbox
    lon, lat = first.lines[0][0]
    assert region[0] - 0.01 < lon < region[2] + 0.01 and region[1] - 0.01 < lat < region[3] + 0.01
    # Independent uploaders' sequences carry no organization_id at all.
    assert any(s.organization_id is None for s in tile.sequences)
    assert sandbox.counters("mapillary")[f"tile:12/{x}/{y}"] == 1


def test_overview_layer_has_no_organization(client, world):
    x, y = lonlat_to_tile(*world.center, 5)
    tile = client.coverage_tile(5, x, y)
    assert tile.overview and not tile.sequences
    assert all(p.organization_id is None for p in tile.overview)
    with pytest.raises(ValueError):
        next(client.walk_coverage(world.bbox, "123", start_zoom=5))


def test_drilling_to_z14_image_layer_matches_ground_truth(sandbox, client, world, city):
    whole = (world.bbox[0] - 0.002, world.bbox[1] - 0.002, world.bbox[2] + 0.002, world.bbox[3] + 0.002)
    harvested = client.images_in_bbox(whole, city.id, start_zoom=11)
    truth = organization_images_in_bbox(city.id, whole)
    assert len(truth) >= 5000 and len({i.sequence_id for i in truth}) >= 100
    assert {i.id for i in harvested} == {i.id for i in truth}
    assert {i.sequence_id for i in harvested} == {i.sequence_id for i in truth}
    tiles = {k: v for k, v in sandbox.counters("mapillary").items() if k.startswith("tile:")}
    assert set(tiles.values()) == {1}, "a tile was fetched twice"
    assert any(k.startswith("tile:14/") for k in tiles)

    # A bbox inside the region: the same up to points within a metre of its edges (tile quantization).
    w, s, e, n = world.bbox
    inner = (w + (e - w) * 0.3, s + (n - s) * 0.25, w + (e - w) * 0.7, s + (n - s) * 0.6)
    got = {i.id for i in client.images_in_bbox(inner, city.id)}
    want = {i.id for i in organization_images_in_bbox(city.id, inner)}
    assert len(want) > 500
    margin = 1e-5
    for image_id in got ^ want:
        image = world.images[image_id]
        near_edge = min(abs(image.lon - inner[0]), abs(image.lon - inner[2]),
                        abs(image.lat - inner[1]), abs(image.lat - inner[3]))
        assert near_edge < margin, f"{image_id} misplaced by the harvest"


# --- Graph metadata ---

def test_single_image_returns_only_requested_fields(client, world):
    image = next(i for i in world.images.values() if i.computed_compass_angle is None)
    meta = client.get_image(image.id, ["geometry", "sequence", "captured_at", "creator", "computed_compass_angle"])
    assert set(meta) == {"id", "geometry", "sequence", "captured_at", "creator"}   # missing field left out
    assert meta["geometry"] == {"type": "Point", "coordinates": [image.lon, image.lat]}
    assert meta["sequence"] == image.sequence_id and meta["captured_at"] == image.captured_at
    assert meta["creator"] == {"id": image.creator.id, "username": image.creator.username}
    assert client.get_image(image.id, []) == {"id": image.id}
    with pytest.raises(MapillaryNotFound) as caught:
        client.get_image("1")
    assert caught.value.missing_ids == ["1"] and caught.value.code == 100


def test_metadata_in_batches_of_50(sandbox, client, world):
    ids = [i for s in list(world.sequences.values())[:3] for i in s.image_ids][:120]
    assert len(ids) == 120
    merged = {}
    for start in range(0, len(ids), 50):
        merged.update(client.get_images(ids[start:start + 50], ["captured_at", "sequence"]))
    assert set(merged) == set(ids)
    assert all(merged[i]["captured_at"] == world.images[i].captured_at for i in ids)
    seen = sandbox.counters("mapillary")
    assert seen["graph_batch"] == 3 and seen["graph_batch_ids:50"] == 2 and seen["graph_batch_ids:20"] == 1
    with pytest.raises(MapillaryInputError):
        client.get_images(ids[:51])
    assert sandbox.counters("mapillary")["graph_batch"] == 3   # refused before any call


def test_batch_with_one_missing_id_fails_as_a_whole(client, world):
    ids = list(world.images)[:50]
    ids[17] = "404404404404404"
    with pytest.raises(NotFound) as caught:
        client.get_images(ids)
    assert caught.value.code == 803 and caught.value.missing_ids == ["404404404404404"]
    found, missing = client.get_images_skipping_missing(ids, ["sequence"])
    assert missing == ["404404404404404"] and len(found) == 49


def test_image_ids_of_a_sequence_in_capture_order(client, world):
    sequence = next(iter(world.sequences.values()))
    assert client.image_ids_of_sequence(sequence.id) == sequence.image_ids
    captured = [world.images[i].captured_at for i in sequence.image_ids]
    assert captured == sorted(captured)
    with pytest.raises(NotFound):
        client.image_ids_of_sequence("NoSuchSequence00000000")


# --- downloads ---

def test_thumbnail_download_is_a_real_jpeg(sandbox, client, world, tmp_path):
    image = next(iter(world.images.values()))
    target = tmp_path / f"{image.id}_256.jpg"
    written = client.download_image(image.id, target, "256")
    assert written == target.stat().st_size > 0
    with PILImage.open(target) as picture:
        assert picture.format == "JPEG"
        assert picture.size == (256, round(image.camera.height * 256 / image.camera.width))
    assert sandbox.counters("mapillary")[f"thumbnail:{image.id}"] == 1


def test_expired_thumbnail_url_is_refused_and_fresh_metadata_gives_a_fresh_url(sandbox, client, world):
    sandbox.configure("mapillary", thumbnail_lifetime_s=1)
    image = list(world.images.values())[5]
    stale = client.get_image(image.id, ["thumb_1024_url"])["thumb_1024_url"]
    time.sleep(2.1)
    with pytest.raises(ExpiredUrl):
        client.download(stale, io.BytesIO())
    assert requests.get(stale, timeout=10).status_code == 403
    fresh = client.get_image(image.id, ["thumb_1024_url"])["thumb_1024_url"]
    assert fresh != stale
    out = io.BytesIO()
    assert client.download(fresh, out) > 0 and out.getvalue()[:2] == b"\xff\xd8"
    assert sandbox.counters("mapillary")["cdn_refused:expired"] == 2


# --- errors ---

def test_graph_rate_limit_becomes_rate_limited_with_retry_after(sandbox, client, world):
    sandbox.configure("mapillary", graph_rate_limit=2, rate_limit_window_s=30)
    image_id = next(iter(world.images))
    client.get_image(image_id)
    client.get_image(image_id)
    with pytest.raises(MapillaryRateLimited) as caught:
        client.get_image(image_id)
    error = caught.value
    assert error.status == 429 and error.code == 4 and isinstance(error, TransientError)
    assert 0 < error.retry_after <= 30
    # By Facebook convention the same code can come with HTTP 400: still a rate limit, not bad input.
    sandbox.configure("mapillary", rate_limit_http_status=400)
    with pytest.raises(RateLimited) as caught:
        client.get_image(image_id)
    assert caught.value.status == 400


def test_upload_rate_limit_backoff_body_sets_retry_after(sandbox, uploader, server):
    sandbox.configure("mapillary", upload_rate_limit=1, rate_limit_window_s=20)
    data = jpeg_bytes()
    key = upload_session_key(data, ".jpg")
    uploader.fetch_upload_offset(key)                      # uses the one allowed request
    raw = requests.get(f"{server.url}/mapillary/rupload/mapillary_public_uploads/{key}",
                       headers={"Authorization": f"OAuth {SANDBOX_USER_TOKEN}"}, timeout=10)
    assert raw.status_code == 429 and raw.json()["debug_info"]["type"] == "RequestRateLimitedError"
    with pytest.raises(MapillaryRateLimited) as caught:
        uploader.upload(key, data)
    # backoff is in milliseconds and wins over the rounded-up Retry-After header.
    assert 0 < caught.value.retry_after <= raw.json()["backoff"] / 1000 < 20
    assert sandbox.counters("mapillary").get(f"upload:{key}", 0) == 0


def test_code_190_on_http_500_is_an_auth_error(sandbox, server, world):
    sandbox.configure("mapillary", auth_error_http_status=500)
    stranger = make_client(server, "MLY|1|not-a-token")
    with pytest.raises(MapillaryAuthError) as caught:
        stranger.get_image(next(iter(world.images)))
    error = caught.value
    assert isinstance(error, AuthError) and not isinstance(error, TransientError)
    assert error.status == 500 and error.code == 190 and error.fbtrace_id
    with pytest.raises(AuthError):
        stranger.coverage_tile(14, *lonlat_to_tile(*world.center, 14))
    # A plain outage is HTTP 500 too, but without code 190 it is worth retrying.
    sandbox.configure("mapillary", graph_unavailable_next=1)
    with pytest.raises(MapillaryTransientError) as caught:
        make_client(server).get_image(next(iter(world.images)))
    assert isinstance(caught.value, TransientError) and caught.value.status == 500


def test_injected_faults_map_to_transient_errors(sandbox, client, world):
    sandbox.faults("mapillary", fail_next=1, rate_limit_next=1, retry_after_s=3)
    image_id = next(iter(world.images))
    with pytest.raises(TransientError) as caught:       # fault order: failures first
        client.get_image(image_id)
    assert not isinstance(caught.value, RateLimited)
    with pytest.raises(RateLimited) as caught:
        client.get_image(image_id)
    assert caught.value.retry_after == 3
    assert client.get_image(image_id)["id"] == image_id


# --- uploads ---

def test_legacy_upload_answers_204_and_stores_the_key(sandbox, client):
    sequence_uuid = uuid.uuid4()
    key = client.legacy_upload(jpeg_bytes(), "IMG_0001.jpg", LEGACY_CREDENTIALS, sequence_uuid)
    assert key == f"sandbox_uploader/{sequence_uuid}/IMG_0001.jpg"
    done = client.legacy_finish_sequence(LEGACY_CREDENTIALS, sequence_uuid)
    stored = sandbox.status("mapillary")["legacy_objects"]
    assert stored[key]["is_jpeg"] and stored[done]["done_marker"]
    wrong = LegacyUploadCredentials("sandbox_uploader", "sandbox-permission-hash", "not-the-signature")
    with pytest.raises(MapillaryAuthError):
        client.legacy_upload(jpeg_bytes(), "IMG_0002.jpg", wrong, sequence_uuid)
    assert "not-the-signature" not in repr(wrong)


def test_legacy_upload_with_fields_out_of_order_is_rejected(sandbox, server):
    key = f"sandbox_uploader/{uuid.uuid4()}/IMG_0001.jpg"
    fields = {  # a dict sent through `data=`/`files=`: requests puts the file last but key before acl
        "AWSAccessKeyId": (None, "AKIAI2X3BJAT2W75HILA"), "key": (None, key), "acl": (None, "private"),
        "signature": (None, "sandbox-signature-hash"), "policy": (None, "sandbox-permission-hash"),
        "Content-Type": (None, "image/jpeg"), "file": ("IMG_0001.jpg", jpeg_bytes(), "image/jpeg"),
    }
    response = requests.post(f"{server.url}/mapillary/s3/{LEGACY_BUCKET}", files=fields, timeout=10)
    assert response.status_code == 400 and b"InvalidArgument" in response.content
    error = legacy_error_from_response(response)
    assert isinstance(error, MapillaryInputError) and "order of the fields" in error.vendor_message
    assert sandbox.status("mapillary")["legacy_objects"] == {}


def test_offset_upload_resumes_after_a_dropped_connection(sandbox, uploader, server):
    data = random.Random(7).randbytes(1_500_000)
    key = upload_session_key(data, ".zip")
    sandbox.configure("mapillary", drop_upload_after_bytes=600_000, drop_upload_next=1)
    uploader.retries = Retries(base_seconds=0.01)     # the default rule: a try after a dropped connection resumes
    progress = []
    handle = uploader.upload(key, data, progress=lambda done, total: progress.append(done))
    stand_in = next(s for s in server.stand_ins if s.name == "mapillary")
    assert stand_in.stored_upload(key) == data
    seen = sandbox.counters("mapillary")
    assert seen[f"upload_dropped:{key}"] == 1 and seen[f"upload:{key}"] == 2 and seen[f"upload_offset:{key}"] == 2
    assert 600_000 in progress, "the second POST started from the server's offset"
    # Asking again costs no bytes: the server already holds everything and answers the same handle.
    assert uploader.upload(key, data) == handle
    assert stand_in.stored_upload(key) == data


def test_images_bundle_upload_and_finish(sandbox, uploader, world, city):
    handles = []
    for color in ((10, 20, 30), (40, 50, 60)):
        picture = jpeg_bytes(color)
        handles.append(uploader.upload(upload_session_key(picture, ".jpg"), picture))
    cluster_id = uploader.upload_image_bundle(handles, organization_id=city.id)
    assert cluster_id.isdigit()
    clusters = sandbox.status("mapillary")["clusters"]
    assert [c["images"] for c in clusters.values()] == [2]
    assert uploader.upload_image_bundle(handles, organization_id=city.id) == cluster_id   # a repeat finds the same
    with pytest.raises(InputError):
        uploader.finish_upload("no-such-handle", "mly_bundle_manifest")


def test_offset_mismatch_is_refused_with_412(uploader, server):
    data = jpeg_bytes()
    key = upload_session_key(data, ".jpg")
    response = requests.post(f"{server.url}/mapillary/rupload/mapillary_public_uploads/{key}", data=data[10:],
                             headers={"Authorization": f"OAuth {SANDBOX_USER_TOKEN}", "Offset": "10",
                                      "X-Entity-Name": key}, timeout=10)
    assert response.status_code == 412 and response.json()["debug_info"]["type"] == "OffsetInvalidError"
    assert uploader.fetch_upload_offset(key) == 0
    with pytest.raises(AuthError):                      # uploads need a user token
        make_client(server).fetch_upload_offset(key)
