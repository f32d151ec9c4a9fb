"""Presigned URLs end to end: the stack's S3 (moto behind sandbox.s3, started by `python -m sandbox`)
checks them as S3 does, so a job whose URL S3 would refuse fails here too, with a clear error."""
from __future__ import annotations

import uuid

import pytest
import requests

from devstack.samples import scene
from geoqueue import GeoQueue, JobFailed
from geoqueue.s3ref import S3Ref
from tests.conftest import start_stack
from tests.inputs import BUCKET


def put_image(store) -> S3Ref:
    ref = S3Ref(BUCKET, f"presign/{uuid.uuid4().hex[:8]}/photo.jpg")
    store.write(ref, scene(7, 160, 120), "image/jpeg")
    return ref


def test_the_stacks_s3_refuses_a_get_url_used_to_put(store, stack):
    ref = S3Ref(BUCKET, f"presign/{uuid.uuid4().hex[:8]}/out.png")
    response = requests.put(store.presign_get(ref), data=b"x", timeout=10)
    assert response.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in response.text
    assert requests.put(store.presign_put(ref), data=b"x", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def short_lived():
    """A stack whose presigned URLs die after 3 s, used with an Immersity that takes 5 s: the URL the
    job hands over has expired by the time the vendor writes through it (S3 answers 403)."""
    stack = start_stack(flower=False, beat=False, GEOQUEUE_PRESIGN_EXPIRES="3")
    yield stack
    stack.stop()


def failed_disparity(stack, sandbox) -> tuple[dict, S3Ref]:
    sandbox.reset()
    sandbox.configure("immersity", processing_delay_s=5.0)
    store, queue = stack.object_store(), GeoQueue(stack.redis_url)
    image = put_image(store)
    output = S3Ref(BUCKET, f"presign/{uuid.uuid4().hex[:8]}/depth.png")
    with pytest.raises(JobFailed) as failed:
        queue.wait(queue.submit("immersity.disparity", {"image": image.uri, "output": output.uri}), timeout=60)
    return failed.value.job.error, output


class TestShortLivedUrls:
    """Tests on the short-lived stack: their `sandbox` controls its stand-ins (failed_disparity resets them)."""

    @pytest.fixture
    def sandbox_url(self, short_lived) -> str:
        return short_lived.sandbox_url

    def test_a_write_refused_by_s3_fails_the_job_with_the_vendors_reason_and_no_charge(self, short_lived, sandbox):
        error, output = failed_disparity(short_lived, sandbox)
        assert error["type"] == "InputError", error
        assert "resultPresignedUrl" in error["message"] and "403 AccessDenied" in error["message"], error
        assert "Request has expired" in error["message"]
        assert short_lived.object_store().size(output) is None
        assert sandbox.status("immersity")["spent"] == {}

    def test_a_write_refused_by_s3_fails_the_job_naming_the_output(self, short_lived, sandbox):
        error, output = failed_disparity(short_lived, sandbox)
        assert output.uri in error["message"], error
