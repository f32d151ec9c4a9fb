"""The DroneMapper client against the sandbox stand-in, over real HTTP on loopback."""
from __future__ import annotations

import hashlib
import io
import math
import time
import zipfile

import pytest
import requests
from PIL import Image

from devstack.waiting import wait_until
from tests.inputs import noise_jpeg
from vendors.dronemapper.client import DroneMapperClient
from vendors.dronemapper.states import PendingAction, Status
from vendors.dronemapper.tokens import token_expiry
from vendors.errors import AuthError, InputError, NotFound, RateLimited, TransientError
from vendors.http import Retries

# These tests look at how one answer is classified; tests/clients/test_call_retries.py, at the retries.
ONE_TRY = Retries(attempts=1)

# A short task clock and small assets keep the suite quick.
FAST = {"upload_to_node_s": 0.1, "queued_s": 0.2, "running_s": 1.0, "action_delay_s": 0.1,
        "orthophoto_px": 512, "dsm_px": 128, "pointcloud_points": 20_000}


@pytest.fixture(autouse=True)
def fresh_vendor(sandbox):
    sandbox.configure("dronemapper", **FAST)


@pytest.fixture
def client(server):
    return DroneMapperClient(f"{server.url}/dronemapper", "sandbox", "sandbox-password", timeout=10, retries=ONE_TRY)


@pytest.fixture
def project(client):
    return client.create_project("Survey", "north field")


def jpeg(seed: int) -> bytes:
    return noise_jpeg(seed, (256, 192))


def photos(count: int, first: int = 1) -> list[tuple[str, io.BytesIO, int]]:
    """(filename, file-like, size) triples, as the client takes images."""
    images = []
    for i in range(first, first + count):
        data = jpeg(i)
        images.append((f"DJI_{i:04d}.JPG", io.BytesIO(data), len(data)))
    return images


def wait_for(client, project_id, task_id, statuses, timeout=10.0) -> tuple[dict, list[dict]]:
    """Poll like a user would; the final task and every task seen on the way. While an action is
    pending the status is stale (a FAILED task being restarted still says FAILED), so wait it out."""
    seen: list[dict] = []

    def settled() -> dict | None:
        seen.append(client.get_task(project_id, task_id))
        return seen[-1] if seen[-1]["status"] in statuses and seen[-1]["pending_action"] is None else None

    return wait_until(settled, timeout, f"task {task_id} at one of {sorted(statuses)}", interval=0.05), seen


def processed_task(client, project, **kwargs) -> dict:
    task = client.create_task(project["id"], photos(3), **kwargs)
    return wait_for(client, project["id"], task["id"], {Status.COMPLETED})[0]


# --- auth ---

def test_login_gives_a_jwt_that_expires_and_a_wrong_password_is_an_auth_error(sandbox, server, client):
    token = client.login()
    assert 6 * 3600 - 5 < token_expiry(token) - time.time() <= 6 * 3600
    wrong = DroneMapperClient(f"{server.url}/dronemapper", "sandbox", "guess")
    with pytest.raises(AuthError) as failure:
        wrong.list_projects()
    assert failure.value.vendor_message == "Unable to log in with provided credentials."
    assert sandbox.counters("dronemapper").get("token:sandbox") == 1


def test_calls_without_a_valid_token_are_refused_with_the_vendors_detail(server):
    projects_url = f"{server.url}/dronemapper/api/projects/"
    missing = requests.get(projects_url, timeout=5)
    garbage = requests.get(projects_url, headers={"Authorization": "JWT abc.def.ghi"}, timeout=5)
    assert (missing.status_code, missing.json()) == (401, {"detail": "Authentication credentials were not provided."})
    assert (garbage.status_code, garbage.json()) == (403, {"detail": "Error decoding signature."})



def test_a_token_renews_early_from_its_exp_claim(sandbox, client):
    sandbox.configure("dronemapper", token_lifetime_s=1)
    project = client.create_project("short-lived tokens")
    time.sleep(1.3)  # past the token's exp: the client must not send it again
    assert client.get_project(project["id"])["name"] == "short-lived tokens"
    seen = sandbox.counters("dronemapper")
    assert seen["token:sandbox"] == 2
    assert seen.get("auth_rejected:expired", 0) == 0


def test_signature_expired_mid_sequence_logs_in_once_and_retries(sandbox, client, project):
    client.get_project(project["id"])
    sandbox.configure("dronemapper", clock_offset_s=86400)  # the vendor's clock jumps: our cached token is now expired
    images = photos(3)
    task = client.create_task(project["id"], images, name="after expiry")
    assert client.get_task(project["id"], task["id"])["images_count"] == 3
    seen = sandbox.counters("dronemapper")
    assert seen["auth_rejected:expired"] == 1
    assert seen["token:sandbox"] == 2
    assert seen["task_create"] == 1  # the rejected attempt created nothing; the retry once
    stored = sandbox.status("dronemapper")["tasks"][str(task["id"])]["images"]
    assert {name: info["sha256"] for name, info in stored.items()} == {
        name: hashlib.sha256(f.getvalue()).hexdigest() for name, f, _ in images}


def test_an_expired_token_during_a_one_shot_stream_is_transient(sandbox, client, project):
    client.get_project(project["id"])
    sandbox.configure("dronemapper", clock_offset_s=86400)
    once = [(name, iter([data]), len(data)) for name, data in (("a.jpg", jpeg(1)), ("b.jpg", jpeg(2)))]
    with pytest.raises(TransientError, match="cannot be sent again"):
        client.create_task(project["id"], once)
    assert sandbox.counters("dronemapper").get("task_create", 0) == 0


def test_a_refusal_that_is_not_about_the_token_is_an_auth_error_without_a_new_login(sandbox, client, project):
    client.get_project(project["id"])
    sandbox.configure("dronemapper", users={"someone-else": "pw"})  # our account is gone
    with pytest.raises(AuthError) as failure:
        client.get_project(project["id"])
    assert failure.value.status == 403 and failure.value.vendor_message == "Invalid signature."
    assert sandbox.counters("dronemapper")["token:sandbox"] == 1


# --- projects ---

def test_project_create_update_get_delete(client):
    project = client.create_project("Quarry", "east pit")
    assert project["permissions"] and project["tasks"] == []
    client.update_project(project["id"], description="east pit, 2 flights")
    assert client.get_project(project["id"])["description"] == "east pit, 2 flights"
    client.delete_project(project["id"])
    with pytest.raises(NotFound) as failure:
        client.get_project(project["id"])
    assert failure.value.vendor_message == "Not found."


@pytest.mark.parametrize("pagination", ["always", "when_asked"])  # the document's, and WebODM's own
def test_project_list_follows_pages_filters_and_orders(sandbox, client, pagination):
    sandbox.configure("dronemapper", projects_pagination=pagination)
    created = [client.create_project(f"site-{i:02d}")["id"] for i in range(23)]
    first = client.projects_page(1, ordering="id")
    assert (first["count"], len(first["results"])) == (23, 10) and first["next"]
    assert [p["id"] for p in client.list_projects(ordering="id")] == created
    assert [p["id"] for p in client.list_projects(ordering="-id")] == created[::-1]
    assert [p["name"] for p in client.list_projects(name="site-07")] == ["site-07"]
    with pytest.raises(InputError):
        client.list_projects(colour="red")


def test_a_missing_project_or_task_is_not_found(client, project):
    with pytest.raises(NotFound):
        client.get_project(9999)
    with pytest.raises(NotFound):
        client.create_task(9999, photos(2))  # refused after the upload, answered as 404
    with pytest.raises(NotFound):
        client.get_task(project["id"], 9999)


# --- creating tasks ---

def test_task_creation_streams_each_image_from_its_own_source(sandbox, client, project, tmp_path):
    events = []

    def chunked(name, data):  # a source that is only pulled when the upload reaches it
        events.append(f"start {name}")
        for i in range(0, len(data), 7000):
            yield data[i:i + 7000]
        events.append(f"end {name}")

    on_disk = tmp_path / "DJI_0004.JPG"
    on_disk.write_bytes(jpeg(4))
    sent = {"DJI_0001.JPG": jpeg(1), "DJI_0002.JPG": jpeg(2), "DJI_0003.JPG": jpeg(3),
            "DJI_0004.JPG": on_disk.read_bytes()}
    progress = []
    task = client.create_task(project["id"], [
        ("DJI_0001.JPG", io.BytesIO(sent["DJI_0001.JPG"]), len(sent["DJI_0001.JPG"])),
        ("DJI_0002.JPG", chunked("2", sent["DJI_0002.JPG"]), len(sent["DJI_0002.JPG"])),
        ("DJI_0003.JPG", chunked("3", sent["DJI_0003.JPG"]), len(sent["DJI_0003.JPG"])),
        on_disk,
    ], name="streamed", options={"dsm": True, "orthophoto-resolution": 2.5},
        progress=lambda done, total: progress.append((done, total)))

    assert events == ["start 2", "end 2", "start 3", "end 3"]
    assert progress[-1][0] == progress[-1][1] > sum(map(len, sent.values()))
    assert task["images_count"] == 4 and task["name"] == "streamed" and task["status"] is None
    assert {o["name"]: o["value"] for o in task["options"]} == {"dsm": True, "orthophoto-resolution": 2.5}
    stored = sandbox.status("dronemapper")["tasks"][str(task["id"])]["images"]
    assert {n: i["sha256"] for n, i in stored.items()} == {n: hashlib.sha256(d).hexdigest() for n, d in sent.items()}
    assert sandbox.counters("dronemapper")["task_create:streamed"] == 1


def test_a_task_runs_queued_running_completed_with_growing_progress(client, project):
    task = client.create_task(project["id"], photos(3), name="progress")
    final, seen = wait_for(client, project["id"], task["id"], {Status.COMPLETED})
    statuses = [t["status"] for t in seen]
    order = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    assert order == [None, Status.QUEUED, Status.RUNNING, Status.COMPLETED]
    progress = [t["running_progress"] for t in seen]
    assert progress == sorted(progress) and 0 < progress[-2] < 1 and final["running_progress"] == 1
    assert final["processing_node"] == 1 and final["uuid"] and final["processing_time"] > 0
    assert {"orthophoto.tif", "dsm.tif", "pointcloud.ply", "all.zip"} <= set(final["available_assets"])


def test_console_output_is_read_incrementally_from_line_n(client, project):
    task = client.create_task(project["id"], photos(3))
    lines, status = [], None
    while status not in (Status.COMPLETED, Status.FAILED):
        status = client.get_task(project["id"], task["id"])["status"]
        lines += client.output(project["id"], task["id"], line=len(lines))
        time.sleep(0.1)
    lines += client.output(project["id"], task["id"], line=len(lines))
    everything = client.output(project["id"], task["id"])
    assert lines == everything and len(everything) > 20
    assert client.output(project["id"], task["id"], line=12) == everything[12:]
    assert any("Loaded DJI_0001.JPG" in line for line in everything)


def test_one_image_is_an_input_error_before_any_call(sandbox, server):
    client = DroneMapperClient(f"{server.url}/dronemapper", "sandbox", "sandbox-password")
    with pytest.raises(InputError, match="at least 2 images") as failure:
        client.create_task(1, photos(1))
    assert failure.value.field == "images"
    assert sandbox.counters("dronemapper") == {}  # not even a login


def test_a_non_jpeg_image_is_refused_naming_the_file(sandbox, client, project):
    sandbox.configure("dronemapper", jpeg_only=True)  # stricter than the document, to see the client name the file
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, format="PNG")
    with pytest.raises(InputError) as failure:
        client.create_task(project["id"], photos(2) + [("field-notes.png", io.BytesIO(png.getvalue()), png.tell())])
    assert failure.value.field == "images" and "field-notes.png" in failure.value.vendor_message
    assert client.list_tasks(project["id"]) == []


def test_an_unknown_option_is_taken_as_the_document_says_and_a_stricter_server_names_it(sandbox, client, project):
    task = client.create_task(project["id"], photos(2), options={"dsm": True, "turbo-mode": 1})
    assert {o["name"]: o["value"] for o in task["options"]} == {"dsm": True, "turbo-mode": 1}
    sandbox.configure("dronemapper", option_checks="odm")
    with pytest.raises(InputError) as failure:
        client.create_task(project["id"], photos(2), options={"dsm": True, "turbo-mode": 1})
    assert failure.value.field == "options" and "turbo-mode" in failure.value.vendor_message


def test_false_and_zero_options_survive_webodms_falsy_value_check(sandbox, client, project):
    sandbox.configure("dronemapper", option_checks="webodm")
    task = client.create_task(project["id"], photos(2), options={"fast-orthophoto": False, "pc-sample": 0})
    assert {o["name"]: o["value"] for o in task["options"]} == {"fast-orthophoto": "false", "pc-sample": "0"}


def test_an_image_shorter_than_its_stated_size_is_an_input_error(client, project):
    name, data = "DJI_0009.JPG", jpeg(9)
    with pytest.raises(InputError, match="DJI_0009.JPG ended after"):
        client.create_task(project["id"], photos(1) + [(name, io.BytesIO(data), len(data) + 100)])


# --- the partial upload flow ---

def test_partial_upload_then_commit_processes_the_task(sandbox, client, project):
    assert client.supports_partial_upload()
    task = client.create_task(project["id"], partial=True, name="field by field", options={"dsm": True})
    assert task["partial"] and task["status"] is None and task["images_count"] == 0
    images = photos(3)
    for name, fileobj, size in images:
        assert client.upload_image(project["id"], task["id"], name, fileobj, size)["uploaded"] == {name: size}
    images[0][1].seek(0)
    client.upload_image(project["id"], task["id"], images[0][0], images[0][1])  # a retried upload replaces
    with pytest.raises(NotFound):
        client.upload_image(project["id"], 9999, "DJI_0001.JPG", jpeg(1))
    committed = client.commit(project["id"], task["id"])
    assert not committed["partial"] and committed["images_count"] == 3
    client.commit(project["id"], task["id"])  # committing again changes nothing
    final, _ = wait_for(client, project["id"], task["id"], {Status.COMPLETED})
    assert final["images_count"] == 3
    seen = sandbox.counters("dronemapper")
    assert seen["image_upload:1/DJI_0001.JPG"] == 2 and seen["image_upload:1/DJI_0002.JPG"] == 1
    assert seen["task_create"] == 1


def test_commit_needs_two_images(client, project):
    task = client.create_task(project["id"], partial=True)
    client.upload_image(project["id"], task["id"], "DJI_0001.JPG", jpeg(1))
    with pytest.raises(InputError, match="at least 2 images"):
        client.commit(project["id"], task["id"])


def test_a_server_without_the_partial_flow_is_detected(sandbox, client):
    sandbox.configure("dronemapper", partial_upload=False)
    assert client.supports_partial_upload() is False


# --- assets ---

def test_assets_download_whole_and_valid(client, project, tmp_path):
    task = processed_task(client, project)
    ortho = io.BytesIO()
    size = client.download_asset(project["id"], task["id"], "orthophoto.tif", ortho)
    assert size == len(ortho.getvalue()) > 512 * 512 * 4
    with Image.open(io.BytesIO(ortho.getvalue())) as tif:
        assert (tif.mode, tif.size) == ("RGBA", (512, 512))
        assert tif.tag_v2[33550][:2] == (0.05, 0.05)        # ModelPixelScale: 5 cm
        assert 32601 <= tif.tag_v2[34735][-1] <= 32660      # GeoKey ProjectedCSType: a UTM zone
    path = tmp_path / "all.zip"
    client.download_asset(project["id"], task["id"], "all.zip", path)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert "odm_orthophoto/odm_orthophoto.tif" in archive.namelist()
        assert archive.read("odm_orthophoto/odm_orthophoto.tif") == ortho.getvalue()
    raw = b"".join(client.iter_raw_asset(project["id"], task["id"], "odm_dem/dsm.tif"))
    assert raw == b"".join(client.iter_asset(project["id"], task["id"], "dsm.tif"))
    with pytest.raises(NotFound):
        client.download_asset(project["id"], task["id"], "textured_model.zip", io.BytesIO())


def test_a_short_download_is_transient_and_leaves_no_file(sandbox, client, project, tmp_path):
    task = processed_task(client, project)
    sandbox.configure("dronemapper", short_download_next=1)
    dest = tmp_path / "pointcloud.ply"
    with pytest.raises(TransientError):
        client.download_asset(project["id"], task["id"], "pointcloud.ply", dest)
    assert list(tmp_path.iterdir()) == []
    assert client.download_asset(project["id"], task["id"], "pointcloud.ply", dest) == dest.stat().st_size
    assert dest.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")


def test_tiles_json_and_a_tile(client, project):
    task = processed_task(client, project)
    tiles = client.tiles_json(project["id"], task["id"], "orthophoto")
    west, south, east, north = tiles["bounds"]
    assert west < east and south < north and tiles["minzoom"] <= tiles["maxzoom"]
    z = tiles["maxzoom"] - 2  # the XYZ tile over the middle of the site
    x = int((west + east) / 2 / 360 * 2 ** z + 2 ** (z - 1))
    lat = math.radians((south + north) / 2)
    y = int((1 - math.asinh(math.tan(lat)) / math.pi) / 2 * 2 ** z)
    url = client.tile_url_template(tiles).format(z=z, x=x, y=y)
    tile = requests.get(url, params={"jwt": client.login()}, timeout=5)
    assert tile.status_code == 200 and tile.content.startswith(b"\x89PNG")
    with pytest.raises(NotFound):
        client.tiles_json(project["id"], task["id"], "dtm")  # no DTM was asked for


# --- failures and actions ---

def test_a_failed_task_reports_last_error_and_restart_with_new_options_reruns(sandbox, client, project):
    sandbox.configure("dronemapper", fail_tasks_named=["bad-survey"])
    task = client.create_task(project["id"], photos(3), name="bad-survey")
    failed, _ = wait_for(client, project["id"], task["id"], {Status.FAILED, Status.COMPLETED})
    assert failed["status"] == Status.FAILED and failed["last_error"] == "Cannot process dataset"
    assert failed["available_assets"] == [] and 0 < failed["running_progress"] < 1
    assert client.output(project["id"], task["id"])[-3].startswith("[ERROR]")
    client.restart(project["id"], task["id"], options={"pc-quality": "low"})
    restarting = client.get_task(project["id"], task["id"])
    assert restarting["pending_action"] == PendingAction.RESTART and restarting["last_error"] is None
    done, _ = wait_for(client, project["id"], task["id"], {Status.COMPLETED, Status.FAILED})
    assert done["status"] == Status.COMPLETED and done["options"] == [{"name": "pc-quality", "value": "low"}]


def test_cancel_then_restart_then_remove(sandbox, client, project):
    task = client.create_task(project["id"], photos(2))
    wait_for(client, project["id"], task["id"], {Status.RUNNING})
    client.cancel(project["id"], task["id"])
    assert client.get_task(project["id"], task["id"])["pending_action"] == PendingAction.CANCEL
    canceled, _ = wait_for(client, project["id"], task["id"], {Status.CANCELED})
    assert canceled["pending_action"] is None and canceled["available_assets"] == []
    client.restart(project["id"], task["id"])
    wait_for(client, project["id"], task["id"], {Status.QUEUED, Status.RUNNING})
    client.remove(project["id"], task["id"])
    assert client.get_task(project["id"], task["id"])["pending_action"] == PendingAction.REMOVE
    time.sleep(0.2)
    with pytest.raises(NotFound):
        client.get_task(project["id"], task["id"])
    assert client.list_tasks(project["id"]) == []
    assert sandbox.counters("dronemapper")["cancel"] == sandbox.counters("dronemapper")["remove"] == 1


# --- transient failures ---

def test_server_errors_throttling_and_dropped_connections_are_transient(sandbox, client, project):
    sandbox.faults("dronemapper", fail_next=1)
    with pytest.raises(TransientError) as failure:
        client.get_project(project["id"])
    assert failure.value.status == 500
    sandbox.faults("dronemapper", rate_limit_next=1, retry_after_s=3)
    with pytest.raises(RateLimited) as throttled:
        client.get_project(project["id"])
    assert throttled.value.retry_after == 3
    sandbox.faults("dronemapper", drop_next=1)
    with pytest.raises(TransientError):
        client.get_project(project["id"])
    assert client.get_project(project["id"])["id"] == project["id"]


def test_a_connection_dropped_mid_upload_is_transient_and_creates_nothing(sandbox, client, project):
    sandbox.configure("dronemapper", upload_drop_next=1, upload_drop_after_bytes=50_000)
    with pytest.raises(TransientError):
        client.create_task(project["id"], photos(4), name="dropped")
    seen = sandbox.counters("dronemapper")
    assert seen["upload_dropped"] == 1 and seen.get("task_create", 0) == 0
    assert client.create_task(project["id"], photos(4), name="dropped")["images_count"] == 4
