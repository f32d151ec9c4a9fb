"""ImmersalClient against the Immersal stand-in, over real HTTP on loopback."""
import base64
import hashlib
import json
import pickle

import numpy as np
import pytest
import requests
from pyproj import Transformer

from devstack.waiting import wait_until
from sandbox.immersal import DEFAULT_LOGIN, DEFAULT_PASSWORD, DEFAULT_TOKEN
from tests.inputs import CLIENT_INTRINSICS, HELSINKI, image_bytes
from vendors.errors import AuthError, InputError, NotFound, RateLimited, TransientError
from vendors.geodesy import map_to_wgs84
from vendors.http import Retries
from vendors.immersal import (
    DONE,
    FAILED,
    FINISHED,
    PENDING,
    PROCESSING,
    SPARSE,
    ImmersalAuthError,
    ImmersalClient,
    ImmersalConflict,
    ImmersalError,
    ImmersalInputError,
    ImmersalNotFound,
)
from vendors.tokens import MemoryTokenStore

# These tests look at how one answer is classified; tests/clients/test_call_retries.py, at the retries.
ONE_TRY = Retries(attempts=1)

TAMPERE = (61.4978, 23.7610, 110.0)
WRONG_TOKEN = "0" * 64
GEOGRAPHIC_TO_ECEF = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True)
ECEF_TO_GEOGRAPHIC = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


# --- the sandbox ---
@pytest.fixture(autouse=True)
def quick_construction(sandbox):
    sandbox.configure("immersal", construct_seconds=0.2)


@pytest.fixture
def base_url(server):
    return f"{server.url}/immersal"


@pytest.fixture
def client(base_url):
    return ImmersalClient(base_url, token=DEFAULT_TOKEN, timeout=10, retries=ONE_TRY)


def gps_of(position, origin=HELSINKI):
    """WGS84 of a map position when map +X is east, +Y up, +Z north of `origin` (the stand-in's frame)."""
    lat, lon = np.radians(origin[:2])
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    up = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    centre = np.array(GEOGRAPHIC_TO_ECEF.transform(origin[1], origin[0], origin[2]))
    x, y, z = position
    lon_deg, lat_deg, height = ECEF_TO_GEOGRAPHIC.transform(*(centre + x * east + y * up + z * north))
    return lat_deg, lon_deg, height


def submit(client, count, *, seed=0, run=0, gps=True, origin=HELSINKI, binary=True):
    """Capture `count` distinct images along a walk; returns [(image, position, gps)]."""
    submitted = []
    for index in range(count):
        image = image_bytes(seed + index)
        position = (1.5 * index, 0.1 * index, -0.7 * index)
        location = gps_of(position, origin) if gps else None
        capture = client.capture if binary else client.capture_b64
        capture(image, run=run, index=index, position=position, intrinsics=CLIENT_INTRINSICS, gps=location,
                rotation=((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (-1.0, 0.0, 0.0)))
        submitted.append((image, position, location))
    return submitted


def wait_until_finished(client, map_id, timeout=10.0) -> list[str]:
    """The distinct statuses seen while polling /metadataget, in order."""
    seen: list[str] = []

    def finished() -> bool:
        status = client.map_status(map_id)
        if not seen or seen[-1] != status:
            seen.append(status)
        return status in FINISHED

    wait_until(finished, timeout, f"map {map_id} finished", interval=0.02)
    return seen


def build_map(client, name="Street1", count=3, **kwargs) -> int:
    submit(client, count, **kwargs)
    map_id = client.construct(name)["id"]
    assert wait_until_finished(client, map_id)[-1] == DONE
    return map_id


# --- account and tokens ---
def test_login_gets_the_token_once_and_shares_it_through_the_store(sandbox, base_url):
    store = MemoryTokenStore()
    first = ImmersalClient(base_url, login=DEFAULT_LOGIN, password=DEFAULT_PASSWORD, token_store=store)
    second = ImmersalClient(base_url, login=DEFAULT_LOGIN, password=DEFAULT_PASSWORD, token_store=store)

    assert first.status()["imageMax"] == 250
    assert second.status()["imageCount"] == 0
    assert store.get(first.token_cache_key) == DEFAULT_TOKEN
    assert sandbox.counters("immersal")["/login"] == 1


def test_wrong_password_is_an_auth_error(sandbox, base_url):
    client = ImmersalClient(base_url, login=DEFAULT_LOGIN, password="nope")
    with pytest.raises(ImmersalAuthError) as caught:
        client.status()
    assert isinstance(caught.value, AuthError) and caught.value.code == "auth"
    assert not isinstance(caught.value, TransientError)
    assert sandbox.counters("immersal") == {"/login": 1}


def test_wrong_token_is_an_auth_error_and_is_not_retried(sandbox, base_url):
    with pytest.raises(ImmersalAuthError):
        ImmersalClient(base_url, token=WRONG_TOKEN).status()
    assert sandbox.counters("immersal") == {"/status": 1, "auth_refused": 1, "auth_refused:/status": 1}


def test_a_refused_cached_token_is_replaced_by_one_new_login(sandbox, base_url):
    store = MemoryTokenStore()
    client = ImmersalClient(base_url, login=DEFAULT_LOGIN, password=DEFAULT_PASSWORD, token_store=store)
    store.put(client.token_cache_key, WRONG_TOKEN, 3600)   # e.g. regenerated in the portal since

    assert client.status()["eulaAccepted"] is True
    assert store.get(client.token_cache_key) == DEFAULT_TOKEN
    assert sandbox.counters("immersal") == {"/status": 2, "/login": 1, "auth_refused": 1, "auth_refused:/status": 1}


def test_a_token_revoked_at_the_vendor_is_renewed_once_through_login(sandbox, base_url):
    store = MemoryTokenStore()
    client = ImmersalClient(base_url, login=DEFAULT_LOGIN, password=DEFAULT_PASSWORD, token_store=store)
    assert client.status()["imageCount"] == 0
    sandbox.configure("immersal", revoke_tokens=True)                  # regenerated in the portal, say

    assert client.status()["imageCount"] == 0
    renewed = store.get(client.token_cache_key)
    assert renewed and renewed != DEFAULT_TOKEN
    seen = sandbox.counters("immersal")
    assert (seen["/login"], seen["/status"], seen["auth_refused"]) == (2, 3, 1)


def test_a_revoked_login_token_that_the_new_login_cannot_cure_fails_after_one_renewal(sandbox, base_url):
    store = MemoryTokenStore()
    client = ImmersalClient(base_url, login=DEFAULT_LOGIN, password=DEFAULT_PASSWORD, token_store=store)
    client.status()
    sandbox.configure("immersal", revoke_tokens=[DEFAULT_LOGIN],
                      accounts={DEFAULT_LOGIN: {"password": "changed", "token": "x"}})
    with pytest.raises(ImmersalAuthError):
        client.status()
    seen = sandbox.counters("immersal")
    assert (seen["/login"], seen["/status"]) == (2, 2)   # one renewal tried, refused; no loop


def test_a_configured_developer_token_that_is_revoked_fails_at_once(sandbox, base_url):
    client = ImmersalClient(base_url, token=DEFAULT_TOKEN, login=DEFAULT_LOGIN, password=DEFAULT_PASSWORD)
    client.status()
    sandbox.configure("immersal", revoke_tokens=True)
    with pytest.raises(ImmersalAuthError) as caught:
        client.status()
    assert caught.value.code == "auth" and not isinstance(caught.value, TransientError)
    assert "/login" not in sandbox.counters("immersal")                  # a configured token is not ours to renew


def test_vendor_errors_come_in_the_body_with_http_200(base_url):
    answer = requests.post(f"{base_url}/status", data=json.dumps({"token": WRONG_TOKEN}), timeout=5)
    assert answer.status_code == 200 and answer.json() == {"error": "auth"}


def test_an_unlisted_error_string_stays_a_plain_vendor_error(client):
    with pytest.raises(ImmersalError) as caught:
        client.status(bank=1)                       # the account has one bank
    assert type(caught.value) is ImmersalError and caught.value.code == "query"
    assert not isinstance(caught.value, TransientError)


def test_errors_survive_pickling_for_celery():
    error = ImmersalAuthError("immersal /status: auth", code="auth", status=200)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, AuthError) and copy.code == "auth" and copy.status == 200


# --- workspace ---
def test_capture_binary_and_b64_store_png_and_jpeg(sandbox, client):
    png_path = client.capture(image_bytes(1), run=0, index=0, intrinsics=CLIENT_INTRINSICS)
    jpeg_path = client.capture_b64(image_bytes(2, "JPEG"), run=0, index=1, intrinsics=CLIENT_INTRINSICS, gps=HELSINKI)

    assert png_path.endswith(".png") and jpeg_path.endswith(".jpg")
    assert client.status()["imageCount"] == 2
    counts = sandbox.counters("immersal")
    assert counts["capture:0:0:0"] == 1 and counts["capture:0:0:1"] == 1
    assert counts["/capture"] == 1 and counts["/captureb64"] == 1


def test_resubmitting_a_run_and_index_replaces_the_image(sandbox, client):
    client.capture(image_bytes(1), run=2, index=5, intrinsics=CLIENT_INTRINSICS)
    client.capture(image_bytes(1), run=2, index=5, intrinsics=CLIENT_INTRINSICS)
    assert client.status()["imageCount"] == 1
    assert sandbox.counters("immersal")["capture:0:2:5"] == 2


def test_a_capture_says_when_its_request_left_whole_and_when_its_answer_came(sandbox, base_url, client):
    flight = []
    client.capture(image_bytes(1), run=0, index=0, intrinsics=CLIENT_INTRINSICS, in_flight=flight.append)
    assert flight == [True, False]                           # the whole request went, then the answer came
    sandbox.faults("immersal", fail_next=1)
    with pytest.raises(TransientError):                      # refused: it left, and its answer says no
        client.capture(image_bytes(1), run=0, index=1, intrinsics=CLIENT_INTRINSICS, in_flight=flight.append)
    assert flight == [True, False] * 2
    unreachable = ImmersalClient("http://127.0.0.1:9/immersal", token=DEFAULT_TOKEN, timeout=2, retries=ONE_TRY)
    with pytest.raises(TransientError):
        unreachable.capture(image_bytes(2), run=0, index=2, intrinsics=CLIENT_INTRINSICS, in_flight=flight.append)
    assert flight == [True, False] * 2                       # a request that never left says nothing


def test_a_full_workspace_refuses_new_images_but_takes_replacements(sandbox, client):
    sandbox.configure("immersal", image_max=2)
    submit(client, 2)
    with pytest.raises(ImmersalConflict) as caught:
        client.capture(image_bytes(9), run=0, index=2, intrinsics=CLIENT_INTRINSICS)
    assert caught.value.code == "image limit"
    client.capture(image_bytes(9), run=0, index=1, intrinsics=CLIENT_INTRINSICS)
    assert client.status()["imageCount"] == 2


def test_clear_keeps_the_anchor_image_unless_asked(client):
    client.capture(image_bytes(1), run=0, index=0, intrinsics=CLIENT_INTRINSICS, anchor=True)
    submit(client, 2, seed=10, run=1)
    client.clear(anchor=False)
    assert client.status()["imageCount"] == 1
    client.clear(anchor=True)
    assert client.status()["imageCount"] == 0


# --- construction and download ---
def test_construct_moves_through_the_states_and_the_map_downloads_intact(sandbox, client):
    submit(client, 3)
    started = client.construct("Street1", window_size=4, dense=0, preservePoses=True)
    assert started["size"] == 3
    received = sandbox.status("immersal")["maps"][str(started["id"])]["options"]
    assert received["windowSize"] == 4 and received["dense"] == 0 and received["preservePoses"] is True

    seen = wait_until_finished(client, started["id"])
    assert seen[-1] == DONE
    order = [PENDING, PROCESSING, SPARSE, DONE]
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)

    data = client.download_map(started["id"])
    digest = hashlib.sha256(data).hexdigest()
    assert digest == client.metadata(started["id"])["sha256_al"]
    [job] = client.list_jobs()
    assert job["id"] == started["id"] and job["name"] == "Street1" and job["sha256_al"] == digest


def test_map_bytes_follow_the_images(client):
    first = build_map(client, "Same1")
    again = client.construct("Same2")["id"]     # same workspace, same images
    wait_until_finished(client, again)
    client.clear(anchor=True)
    other = build_map(client, "Other1", seed=50)
    assert client.download_map(first) == client.download_map(again)
    assert client.download_map(first) != client.download_map(other)


def test_a_map_cannot_be_downloaded_before_it_is_built(sandbox, client):
    sandbox.configure("immersal", construct_seconds=60)
    submit(client, 2)
    map_id = client.construct("Slow1")["id"]
    assert client.map_status(map_id) == PENDING
    with pytest.raises(ImmersalNotFound) as caught:
        client.download_map(map_id)
    assert caught.value.code == "not found" and isinstance(caught.value, NotFound)


def test_one_image_is_not_enough_for_a_map(client):
    submit(client, 1)
    started = client.construct("Lonely1")
    assert started["size"] == 1
    assert wait_until_finished(client, started["id"])[-1] == FAILED
    assert client.metadata(started["id"])["errno"] != 0
    with pytest.raises(ImmersalNotFound):
        client.download_map(started["id"])


def test_configured_construction_failure(sandbox, client):
    sandbox.configure("immersal", fail_constructions=True)
    submit(client, 3)
    assert wait_until_finished(client, client.construct("Doomed1")["id"])[-1] == FAILED


def test_capitalised_status_strings_are_understood(sandbox, server, client):
    sandbox.configure("immersal", status_case="capitalized")
    submit(client, 2)
    map_id = client.construct("Caps1")["id"]
    assert wait_until_finished(client, map_id)[-1] == DONE
    raw = requests.post(f"{server.url}/immersal/metadataget",
                        data=json.dumps({"token": DEFAULT_TOKEN, "id": map_id}), timeout=5).json()
    assert raw["status"] == "Done"
    assert client.list_jobs()[0]["status"] == DONE


def test_bad_map_names_are_refused_before_any_call(sandbox, client):
    for name in ("my map", "my-map", "my_map", "map/1", "", "kartta\u00e4"):
        with pytest.raises(InputError) as caught:
            client.construct(name)
        assert caught.value.field == "name"
    with pytest.raises(InputError) as caught:
        client.construct("Fine1", featureCont=1024)   # a typo in an option name
    assert caught.value.field == "featureCont"
    assert sandbox.counters("immersal") == {}


def test_the_vendor_refuses_a_bad_name_with_name(base_url):
    answer = requests.post(f"{base_url}/construct",
                           data=json.dumps({"token": DEFAULT_TOKEN, "name": "my map"}), timeout=5).json()
    assert answer == {"error": "name"}


# --- localization and ECEF ---
@pytest.mark.parametrize("binary", [True, False], ids=["localize", "localizeb64"])
def test_localize_finds_an_image_of_the_map(client, binary):
    images = submit(client, 3)
    map_id = client.construct("Street1")["id"]
    wait_until_finished(client, map_id)
    image, position, _ = images[1]

    localize = client.localize if binary else client.localize_b64
    found = localize(image, [map_id], CLIENT_INTRINSICS)
    assert found["success"] is True and found["map"] == map_id
    assert (found["px"], found["py"], found["pz"]) == pytest.approx(position)
    assert [found[f"r{i}{j}"] for i in range(3) for j in range(3)] == [0, 0, 1, 0, 1, 0, -1, 0, 0]

    missed = localize(image_bytes(999), [map_id], CLIENT_INTRINSICS)
    assert missed["success"] is False and missed["map"] == -1 and missed["px"] == 0


def test_localize_against_no_valid_map_is_map_count(sandbox, client):
    sandbox.configure("immersal", construct_seconds=60)
    submit(client, 2)
    pending = client.construct("Slow1")["id"]
    for map_ids in ([pending], [424242]):
        with pytest.raises(ImmersalInputError) as caught:
            client.localize(image_bytes(0), map_ids, CLIENT_INTRINSICS)
        assert caught.value.code == "map count"


def test_localize_input_is_checked_before_any_call(sandbox, client):
    for map_ids, field in ((list(range(1, 10)), "map_ids"), ([], "map_ids"), ([0], "map_ids")):
        with pytest.raises(InputError) as caught:
            client.localize(image_bytes(0), map_ids, CLIENT_INTRINSICS)
        assert caught.value.field == field
    with pytest.raises(InputError) as caught:
        client.localize(b"GIF89a....", [1001], CLIENT_INTRINSICS)
    assert caught.value.field == "image"
    with pytest.raises(InputError) as caught:
        client.localize(image_bytes(0), [1001], (0.0, 120.0, 32.0, 24.0))
    assert caught.value.field == "intrinsics"
    assert sandbox.counters("immersal") == {}


def test_localized_pose_converts_to_the_images_gps_position(client):
    images = submit(client, 4)
    map_id = client.construct("Street1")["id"]
    wait_until_finished(client, map_id)
    ecef = client.ecef(map_id)
    assert len(ecef) == 13 and ecef[12] == 1.0
    rotation = np.array(ecef[3:12]).reshape(3, 3)
    assert np.allclose(rotation @ rotation.T, np.eye(3)) and np.linalg.det(rotation) == pytest.approx(1.0)

    for image, _, (lat, lon, height) in (images[0], images[3]):
        found = client.localize(image, [map_id], CLIENT_INTRINSICS)
        got_lat, got_lon, got_height = map_to_wgs84([found["px"], found["py"], found["pz"]], ecef)
        metres_north = (got_lat - lat) * 111_000
        metres_east = (got_lon - lon) * 111_000 * np.cos(np.radians(lat))
        assert abs(metres_north) < 0.01 and abs(metres_east) < 0.01 and abs(got_height - height) < 0.01


def test_ecef_of_a_map_without_gps_is_not_found(client):
    map_id = build_map(client, gps=False)
    with pytest.raises(ImmersalNotFound) as caught:
        client.ecef(map_id)
    assert caught.value.code == "not found"


def test_another_account_cannot_see_a_private_map_until_it_is_public(base_url, client):
    map_id = build_map(client)
    image = image_bytes(0)
    anonymous = ImmersalClient(base_url)              # the vendor's samples send an empty token
    stranger = ImmersalClient(base_url, token=WRONG_TOKEN)

    with pytest.raises(ImmersalNotFound):
        anonymous.download_map(map_id)
    with pytest.raises(ImmersalInputError):
        anonymous.localize(image, [map_id], CLIENT_INTRINSICS)
    with pytest.raises(ImmersalNotFound):             # the doc: "incorrect map id or invalid token"
        stranger.download_map(map_id)
    with pytest.raises(ImmersalAuthError):
        stranger.localize(image, [map_id], CLIENT_INTRINSICS)

    client.set_privacy(map_id, public=True)
    assert anonymous.download_map(map_id) == client.download_map(map_id)
    assert anonymous.localize(image, [map_id], CLIENT_INTRINSICS)["success"] is True
    assert len(anonymous.ecef(map_id)) == 13


# --- listing ---
def test_list_and_geolist(client):
    near = build_map(client, "Helsinki1", origin=HELSINKI)
    client.clear(anchor=True)
    far = build_map(client, "Tampere1", seed=20, origin=TAMPERE)

    assert [job["id"] for job in client.list_jobs()] == [far, near]      # newest first
    close_by = client.geolist(HELSINKI[0], HELSINKI[1], 200.0)
    assert [job["id"] for job in close_by] == [near]
    assert close_by[0]["latitude"] == pytest.approx(HELSINKI[0], abs=1e-4)
    assert [job["id"] for job in client.geolist(TAMPERE[0], TAMPERE[1], 300_000.0)] == [far, near]
    with pytest.raises(InputError):
        client.geolist(HELSINKI[0], HELSINKI[1], 0.0)


# --- fuse and restore ---
def test_fuse_builds_a_map_that_localizes_images_of_both(client):
    first_images = submit(client, 2)
    first = client.construct("PartA")["id"]
    client.clear(anchor=True)
    second_images = submit(client, 2, seed=30)
    second = client.construct("PartB")["id"]
    wait_until_finished(client, first)
    wait_until_finished(client, second)

    fused = client.fuse("Whole1", [first, second])
    assert fused["size"] == 2
    assert wait_until_finished(client, fused["id"])[-1] == DONE
    for image, _, _ in (first_images[0], second_images[1]):
        found = client.localize(image, [fused["id"]], CLIENT_INTRINSICS)
        assert found["success"] is True and found["map"] == fused["id"]
    assert client.metadata(fused["id"])["type"] == 1


def test_fuse_refuses_unfinished_unknown_or_single_maps(sandbox, client):
    done = build_map(client)
    sandbox.configure("immersal", construct_seconds=60)
    pending = client.construct("Slow1")["id"]
    for map_ids in ([done, pending], [done, 424242], [done]):
        with pytest.raises(ImmersalInputError) as caught:
            client.fuse("Whole1", map_ids)
        assert caught.value.code == "map count"
    with pytest.raises(InputError) as caught:
        client.fuse("Whole 1", [done, pending])
    assert caught.value.field == "name"


def test_restore_puts_the_map_images_back(client):
    map_id = build_map(client, count=3)
    client.clear(anchor=True)
    client.capture(image_bytes(77), run=9, index=0, intrinsics=CLIENT_INTRINSICS)

    client.restore(map_id)
    assert client.status()["imageCount"] == 4
    client.restore(map_id, clear=True)
    assert client.status()["imageCount"] == 3

    with pytest.raises(ImmersalNotFound) as caught:
        client.restore(424242)
    assert caught.value.code == "job"


# --- transport faults ---
def test_a_server_error_is_transient(sandbox, client):
    sandbox.faults("immersal", fail_next=1)
    with pytest.raises(TransientError) as caught:
        client.status()
    assert caught.value.status == 500
    assert not isinstance(caught.value, ImmersalError)
    assert client.status()["imageCount"] == 0


def test_a_dropped_connection_is_transient(sandbox, client):
    sandbox.faults("immersal", drop_next=1)
    with pytest.raises(TransientError):
        client.capture(image_bytes(1), run=0, index=0, intrinsics=CLIENT_INTRINSICS)
    assert "capture:0:0:0" not in sandbox.counters("immersal")


def test_throttling_is_rate_limited_with_the_vendors_hint(sandbox, client):
    sandbox.faults("immersal", rate_limit_next=1, retry_after_s=3)
    with pytest.raises(RateLimited) as caught:
        client.list_jobs()
    assert caught.value.retry_after == 3.0


def test_a_map_download_that_does_not_match_its_hash_is_transient(client, monkeypatch):
    map_id = build_map(client)
    real_send = client.session.request

    def corrupting(method, url, **kwargs):
        response = real_send(method, url, **kwargs)
        if url.endswith("/mapb64"):
            body = response.json()
            body["b64"] = base64.b64encode(b"truncated").decode()
            response._content = json.dumps(body).encode()
        return response

    monkeypatch.setattr(client.session, "request", corrupting)
    with pytest.raises(TransientError) as caught:
        client.download_map(map_id)
    assert caught.value.code == "conn"
