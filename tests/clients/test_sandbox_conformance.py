"""The vendors' own sample requests (their documents: docs/vendors/), sent to the sandbox as the
documents send them (plain requests, no geoqueue client), and answered as the documents say."""
from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest
import requests
from botocore.client import Config
from PIL import Image

from sandbox.mapillary_world import build_world
from tests.inputs import noise_jpeg

# A short task clock keeps the quickstart quick; nothing here changes what is answered.
DRONEMAPPER_FAST = {"upload_to_node_s": 0.05, "queued_s": 0.05, "running_s": 0.3, "orthophoto_px": 256,
                    "dsm_px": 64, "pointcloud_points": 1000}
COMPLETED, FAILED = 40, 30


# --- DroneMapper: dronemapper-cloud-api.txt ---

@pytest.fixture
def dronemapper(sandbox, server):
    sandbox.configure("dronemapper", **DRONEMAPPER_FAST)
    return f"{server.url}/dronemapper"


def dm_token(base: str) -> str:
    res = requests.post(f"{base}/api/token-auth/",
                        data={"username": "sandbox", "password": "sandbox-password"}, timeout=5).json()
    return res["token"]


def test_dronemapper_quickstart_runs_as_written(dronemapper, tmp_path):
    """"Getting Started / Processing Imagery", step by step, options=[{"name": "null", "value": "null"}] included."""
    base = dronemapper
    token = dm_token(base)
    res = requests.post(f"{base}/api/projects/", headers={"Authorization": f"JWT {token}"},
                        data={"name": "My First Project"}, timeout=5).json()
    project_id = res["id"]

    for name, seed in (("DJI_0001.JPG", 1), ("DJI_0002.JPG", 2)):
        (tmp_path / name).write_bytes(noise_jpeg(seed))
    with open(tmp_path / "DJI_0001.JPG", "rb") as first, open(tmp_path / "DJI_0002.JPG", "rb") as second:
        images = [
            ("images", ("DJI_0001.JPG", first, "image/jpg")),
            ("images", ("DJI_0002.JPG", second, "image/jpg")),
        ]
        options = json.dumps([
            {"name": "null", "value": "null"}
        ])
        response = requests.post(f"{base}/api/projects/{project_id}/tasks/",
                                 headers={"Authorization": f"JWT {token}"},
                                 files=images, data={"options": options, "name": "Optional Task Name"}, timeout=10)
    assert response.status_code == 201, response.text
    res = response.json()
    task_id = res["id"]
    assert res["options"] == [{"name": "null", "value": "null"}] and res["images_count"] == 2

    deadline = time.monotonic() + 20
    while True:
        res = requests.get(f"{base}/api/projects/{project_id}/tasks/{task_id}/",
                           headers={"Authorization": f"JWT {token}"}, timeout=5).json()
        assert res["status"] != FAILED, res
        if res["status"] == COMPLETED:
            break
        assert time.monotonic() < deadline, res
        time.sleep(0.05)

    res = requests.get(f"{base}/api/projects/{project_id}/tasks/{task_id}/download/ORT-DrnMppr.tif",
                       headers={"Authorization": f"JWT {token}"}, stream=True, timeout=10)
    assert res.status_code == 200
    with open(tmp_path / "orthophoto.tif", "wb") as f:
        for chunk in res.iter_content(chunk_size=1024):
            if chunk:
                f.write(chunk)
    with Image.open(tmp_path / "orthophoto.tif") as tif:
        assert tif.format == "TIFF"


def test_dronemapper_authentication_basics(dronemapper):
    """"Authentication Basics": the token by form post; then by header and by querystring, {"count": ...}."""
    base = dronemapper
    res = requests.post(f"{base}/api/token-auth/", data="username=sandbox&password=sandbox-password",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5)
    token = res.json()["token"]
    by_header = requests.get(f"{base}/api/projects/", headers={"Authorization": f"JWT {token}"}, timeout=5)
    by_query = requests.get(f"{base}/api/projects/?jwt={token}", timeout=5)
    for answer in (by_header, by_query):
        assert answer.status_code == 200 and answer.json()["count"] == 0


def test_dronemapper_error_status_codes(sandbox, dronemapper):
    """"Handling Errors": 401 without credentials; "Token Expiration": 403 Signature has expired."""
    base = dronemapper
    missing = requests.get(f"{base}/api/projects/", timeout=5)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Authentication credentials were not provided."}
    token = dm_token(base)
    sandbox.configure("dronemapper", clock_offset_s=7 * 3600)  # past the token's exp on the vendor's clock
    expired = requests.get(f"{base}/api/projects/", headers={"Authorization": f"JWT {token}"}, timeout=5)
    assert (expired.status_code, expired.json()) == (403, {"detail": "Signature has expired."})
    bad = requests.post(f"{base}/api/projects/", headers={"Authorization": f"JWT {dm_token(base)}"},
                        data={"description": "no name"}, timeout=5)
    assert bad.status_code == 400 and "name" in bad.json()
    assert requests.get(f"{base}/api/projects/999/", headers={"Authorization": f"JWT {dm_token(base)}"},
                        timeout=5).status_code == 404


def test_dronemapper_project_list_is_the_documents_paginated_object(dronemapper):
    """"Get list of projects": {count, next, previous, results}, filters and ordering as in the examples."""
    base = dronemapper
    auth = {"Authorization": f"JWT {dm_token(base)}"}
    ids = [requests.post(f"{base}/api/projects/", headers=auth, data={"name": name}, timeout=5).json()["id"]
           for name in ("hello", "world")]
    listed = requests.get(f"{base}/api/projects/", headers=auth, timeout=5).json()
    assert set(listed) == {"count", "next", "previous", "results"}
    assert (listed["count"], listed["next"], listed["previous"]) == (2, None, None)
    named = requests.get(f"{base}/api/projects/?name=hello", headers=auth, timeout=5).json()
    assert [p["name"] for p in named["results"]] == ["hello"]
    ordered = requests.get(f"{base}/api/projects/?ordering=-id", headers=auth, timeout=5).json()
    assert [p["id"] for p in ordered["results"]] == ids[::-1]
    tasks = requests.get(f"{base}/api/projects/{ids[0]}/tasks/", headers=auth, timeout=5).json()
    assert tasks == []  # "Get list of tasks": a bare list


# --- Mapillary: mapillary-api-v4-toolset-readme.md ---

MAPILLARY_TOKEN = "MLY|4242424242424242|sandbox-client-token"


def test_mapillary_toolset_csv_of_thumbnail_urls_downloads_later(server, tmp_path):
    """get_images.py, get_images_metadata.py and download_images.py as the README chains them:
    URLs stored in a CSV stay good for days (its sample URLs' `oe`), so a later run downloads them."""
    graph = f"{server.url}/mapillary/graph"
    sequence = next(iter(build_world().sequences.values()))
    ids = requests.get(f"{graph}/image_ids?access_token={MAPILLARY_TOKEN}&sequence_id={sequence.id}",
                       timeout=10).json()["data"]
    batch = ",".join(row["id"] for row in ids[:50])
    fields = "sequence,id,captured_at,compass_angle,thumb_256_url,thumb_original_url,width,height"
    meta = requests.get(f"{graph}?ids={batch}&fields={fields}&access_token={MAPILLARY_TOKEN}", timeout=10).json()
    assert set(meta) == {row["id"] for row in ids[:50]}
    rows = [(image["id"], image["thumb_256_url"]) for image in meta.values()]
    (tmp_path / "img_meta_dataset.csv").write_text("\n".join(f"{i},{url}" for i, url in rows))

    for _image_id, url in rows:
        expires = int(dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))["oe"], 16)
        assert expires - time.time() > 86400, url         # days ahead, as in the README's sample CSV
    for line in (tmp_path / "img_meta_dataset.csv").read_text().splitlines()[:3]:  # "later": a re-run
        image_id, url = line.split(",", 1)
        picture = requests.get(url, timeout=10)
        assert picture.status_code == 200 and picture.content[:2] == b"\xff\xd8", image_id


def test_mapillary_short_lived_thumbnail_urls_are_an_injected_fault(sandbox, server):
    graph = f"{server.url}/mapillary/graph"
    image_id = next(iter(build_world().images))
    sandbox.configure("mapillary", thumbnail_lifetime_s=1)
    url = requests.get(f"{graph}/{image_id}?fields=thumb_256_url&access_token={MAPILLARY_TOKEN}",
                       timeout=10).json()["thumb_256_url"]
    time.sleep(2.1)
    refused = requests.get(url, timeout=10)
    assert (refused.status_code, refused.text) == (403, "URL signature expired")



# --- Immersal: immersal-rest-api-python-examples.txt ---

def test_immersal_login_status_and_list_as_the_python_examples_send_them(server):
    url = f"{server.url}/immersal"
    r = requests.post(url + "/login", data=json.dumps({"login": "sandbox@example.com",
                                                       "password": "sandbox-password"}), timeout=5)
    login = r.json()
    assert (r.status_code, login["error"], login["banks"]) == (200, "none", 1)
    token = login["token"]
    status = requests.post(url + "/status", data=json.dumps({"token": token, "bank": 0}), timeout=5).json()
    assert status["error"] == "none" and (status["bankMax"], status["imageMax"]) == (1, 250)
    assert status["eulaAccepted"] is True and status["imageCount"] == 0
    jobs = requests.post(url + "/list", data=json.dumps({"token": token, "bank": 0}), timeout=5).json()
    assert (jobs["error"], jobs["count"], jobs["jobs"]) == ("none", 0, [])
    wrong = requests.post(url + "/login", data=json.dumps({"login": "sandbox@example.com", "password": "no"}),
                          timeout=5)
    assert (wrong.status_code, wrong.json()) == (200, {"error": "auth"})  # "Token authentication error"


def test_immersal_a_revoked_token_answers_auth_and_login_gives_the_new_one(sandbox, server):
    url = f"{server.url}/immersal"
    credentials = json.dumps({"login": "sandbox@example.com", "password": "sandbox-password"})
    old = requests.post(url + "/login", data=credentials, timeout=5).json()["token"]
    sandbox.configure("immersal", revoke_tokens=True)
    refused = requests.post(url + "/status", data=json.dumps({"token": old, "bank": 0}), timeout=5)
    assert (refused.status_code, refused.json()) == (200, {"error": "auth"})
    new = requests.post(url + "/login", data=credentials, timeout=5).json()["token"]
    assert new != old
    status = requests.post(url + "/status", data=json.dumps({"token": new, "bank": 0}), timeout=5)
    assert status.json()["error"] == "none"


# --- Immersity AI: immersity-ai-api-getting-started.txt ---

def test_immersity_python_snippet_writes_the_disparity_through_the_presigned_put_url(server, s3):
    storage = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1",
                           aws_access_key_id="sandbox-access-key", aws_secret_access_key="sandbox-secret-key",
                           config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    storage.create_bucket(Bucket="samples")
    storage.put_object(Bucket="samples", Key="original.jpg", Body=noise_jpeg(5))
    ORIGINAL_IMAGE_URL = storage.generate_presigned_url(
        "get_object", Params={"Bucket": "samples", "Key": "original.jpg"}, ExpiresIn=86400)
    put_disparity_presigned_url = storage.generate_presigned_url(
        "put_object", Params={"Bucket": "samples", "Key": "disparity.png"}, ExpiresIn=86400)

    correlation_id = str(uuid.uuid4())
    token_response = requests.post(
        f"{server.url}/immersity/auth/realms/immersity/protocol/openid-connect/token",
        data={"client_id": "sandbox-client", "client_secret": "sandbox-secret",
              "grant_type": "client_credentials"}, timeout=10).json()
    access_token = token_response["access_token"]
    response = requests.post(
        f"{server.url}/immersity/api/v1/disparity",
        headers={"Authorization": f"Bearer {access_token}"},
        json={"correlationId": correlation_id, "inputImageUrl": ORIGINAL_IMAGE_URL,
              "resultPresignedUrl": put_disparity_presigned_url},
        timeout=5 * 60)
    assert 200 <= response.status_code < 300, response.text  # "Check if the response code is 2XX"
    assert response.json()["correlationId"] == correlation_id
    written = storage.get_object(Bucket="samples", Key="disparity.png")["Body"].read()
    assert written[:8] == b"\x89PNG\r\n\x1a\n"
