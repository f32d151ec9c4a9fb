"""The S3 stand-in checks presigned URLs as S3 does: moto's real server behind sandbox.s3, over
HTTP on loopback, with URLs presigned by geoqueue's own ObjectStore (services/storage.py)."""
from __future__ import annotations

import io
import time
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import pytest
import requests
from botocore.client import Config
from PIL import Image

from config.settings import Settings
from geoqueue.s3ref import S3Ref
from services.storage import ObjectStore
from vendors.errors import InputError
from vendors.immersity import ImmersityClient

BUCKET = "presign-tests"
KEY, SECRET = "sandbox-access-key", "sandbox-secret-key"


@pytest.fixture(scope="module")
def store(s3) -> ObjectStore:
    store = ObjectStore(Settings(s3_endpoint_url=s3.url, s3_access_key_id=KEY, s3_secret_access_key=SECRET,
                                 s3_region="us-east-1", s3_bucket=BUCKET))
    store.ensure_bucket(BUCKET)
    return store


def fresh_ref(name: str = "out.png") -> S3Ref:
    return S3Ref(BUCKET, f"t/{uuid.uuid4().hex[:8]}/{name}")


def error_code(response: requests.Response) -> str:
    return response.text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in response.text else ""


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


# --- what S3 accepts still works ---

def test_a_presigned_put_then_get_round_trips(store):
    ref = fresh_ref()
    put = requests.put(store.presign_put(ref), data=b"disparity bytes", timeout=10)
    assert put.status_code == 200, put.text
    got = requests.get(store.presign_get(ref), timeout=10)
    assert (got.status_code, got.content) == (200, b"disparity bytes")


def test_the_fleets_own_header_signed_calls_go_through(store):
    ref = fresh_ref("data.bin")
    store.write(ref, b"x" * 1000)
    store.upload_stream(fresh_ref("stream.bin"), io.BytesIO(b"y" * 10_000))
    assert store.read(ref) == b"x" * 1000 and store.size(ref) == 1000
    assert [r.key for r, _ in store.list(S3Ref(BUCKET, ref.key.rsplit("/", 1)[0] + "/"))] == [ref.key]


def test_a_key_with_spaces_and_unicode_is_signed_and_checked_alike(store):
    ref = fresh_ref("dépôt final (1).png")
    assert requests.put(store.presign_put(ref), data=b"ok", timeout=10).status_code == 200
    assert requests.get(store.presign_get(ref), timeout=10).content == b"ok"


# --- what S3 refuses, the stand-in refuses ---

def test_a_url_presigned_for_get_is_refused_for_put(store):
    ref = fresh_ref()
    response = requests.put(store.presign_get(ref), data=b"sneaky", timeout=10)
    assert response.status_code == 403 and error_code(response) == "SignatureDoesNotMatch"
    assert store.size(ref) is None


def test_an_expired_url_is_refused(store):
    ref = fresh_ref()
    url = store.presign_put(ref, expires=1)
    time.sleep(2.1)
    response = requests.put(url, data=b"late", timeout=10)
    assert response.status_code == 403 and error_code(response) == "AccessDenied"
    assert "Request has expired" in response.text
    assert store.size(ref) is None


def test_a_wrong_signature_is_refused(store):
    ref = fresh_ref()
    url = store.presign_put(ref)
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    forged = with_query(url, **{"X-Amz-Signature": ("0" if signature[0] != "0" else "1") + signature[1:]})
    response = requests.put(forged, data=b"forged", timeout=10)
    assert response.status_code == 403 and error_code(response) == "SignatureDoesNotMatch"
    assert store.size(ref) is None


def test_a_url_used_for_another_key_or_a_longer_life_is_refused(store):
    ref, other = fresh_ref(), fresh_ref()
    url = store.presign_put(ref)
    elsewhere = url.replace(ref.key, other.key)
    assert requests.put(elsewhere, data=b"x", timeout=10).status_code == 403
    longer = with_query(url, **{"X-Amz-Expires": "7200"})
    assert error_code(requests.put(longer, data=b"x", timeout=10)) == "SignatureDoesNotMatch"
    assert store.size(ref) is None and store.size(other) is None


def test_a_secret_that_is_not_the_servers_or_an_unknown_key_is_refused(s3):
    ref = fresh_ref()
    for key, secret, code in ((KEY, "not-the-secret", "SignatureDoesNotMatch"),
                              ("AKIAUNKNOWN", SECRET, "InvalidAccessKeyId")):
        client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1", aws_access_key_id=key,
                              aws_secret_access_key=secret,
                              config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        url = client.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": ref.key})
        response = requests.put(url, data=b"x", timeout=10)
        assert (response.status_code, error_code(response)) == (403, code)


def test_more_than_seven_days_is_refused_as_s3_does(s3):
    client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1", aws_access_key_id=KEY,
                          aws_secret_access_key=SECRET, config=Config(signature_version="s3v4"))
    url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "k"},
                                        ExpiresIn=8 * 24 * 3600)  # botocore does not check it
    response = requests.get(url, timeout=10)
    assert (response.status_code, error_code(response)) == (400, "AuthorizationQueryParametersError")


def test_sigv2_urls_as_botocore_makes_them_in_us_east_1_are_checked_too(s3, store):
    client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1", aws_access_key_id=KEY,
                          aws_secret_access_key=SECRET, config=Config(signature_version="s3"))
    ref = fresh_ref()
    url = client.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": ref.key})
    assert "Signature=" in url and "X-Amz-Signature" not in url
    assert requests.get(url, timeout=10).status_code == 403          # presigned for PUT
    assert requests.put(url, data=b"v2", timeout=10).status_code == 200
    assert store.read(ref) == b"v2"


# --- the Immersity stand-in writes through exactly the URL it is given ---

@pytest.fixture
def immersity(sandbox_url) -> ImmersityClient:
    base = f"{sandbox_url}/immersity"
    return ImmersityClient(base, f"{base}/auth/realms/immersity/protocol/openid-connect/token",
                           "sandbox-client", "sandbox-secret", timeout=30)


def put_image(store) -> S3Ref:
    ref = fresh_ref("photo.jpg")
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(out, format="JPEG")
    store.write(ref, out.getvalue(), "image/jpeg")
    return ref


def test_immersity_writes_the_result_through_a_good_put_url(store, immersity, sandbox):
    image, out = put_image(store), fresh_ref()
    immersity.disparity(store.presign_get(image), store.presign_put(out))
    assert store.read(out)[:8] == b"\x89PNG\r\n\x1a\n"


def test_immersity_given_a_url_presigned_for_get_reports_the_refused_write(store, immersity, sandbox):
    image, out = put_image(store), fresh_ref()
    with pytest.raises(InputError) as refused:
        immersity.disparity(store.presign_get(image), store.presign_get(out))
    message = refused.value.vendor_message
    assert refused.value.status == 400
    assert "resultPresignedUrl" in message and "403 SignatureDoesNotMatch" in message
    assert store.size(out) is None
    assert sandbox.status("immersity")["spent"] == {}  # a failed call costs nothing
