"""Immersal tokens that the vendor stops accepting, end to end: real workers, Redis, moto S3 and the
Immersal stand-in over HTTP. A token geoqueue got through /login is renewed once through /login;
a configured developer token that is refused fails the job at once."""
from __future__ import annotations

import pytest

from geoqueue import GeoQueue, JobFailed
from sandbox.immersal import DEFAULT_TOKEN
from tests.conftest import SandboxControl, start_stack, wait_for_done
from tests.inputs import put_site


@pytest.fixture(autouse=True)
def quick_construction(sandbox):
    sandbox.configure("immersal", construct_seconds=1.0)


def test_a_login_token_revoked_mid_job_is_renewed_and_the_map_still_builds(queue, store, sandbox):
    images, _rows = put_site(store, 24)
    job_id = queue.submit("immersal.build_map", {"images": images, "name": "Renewed", "chunk_size": 4,
                                                 "max_parallel": 2})
    wait_for_done(queue, job_id, 4)
    sandbox.configure("immersal", revoke_tokens=True)
    job = queue.wait(job_id, timeout=90)
    assert job.state == "succeeded", job.error
    assert job.result["images"] == 24
    seen = sandbox.counters("immersal")
    assert seen["token_revoked"] == 1
    assert seen.get("auth_refused", 0) >= 1          # the old token was refused at least once...
    assert seen["/login"] >= 2                        # ...and renewed through /login
    assert sorted(sandbox.captures().values()) == [1] * 24              # no image submitted twice


def test_a_configured_developer_token_that_is_revoked_fails_the_job_at_once():
    stack = start_stack(flower=False, beat=False, GEOQUEUE_IMMERSAL_TOKEN=DEFAULT_TOKEN)
    try:
        queue, sandbox = GeoQueue(stack.redis_url), SandboxControl(stack.sandbox_url)
        sandbox.configure("immersal", revoke_tokens=True)
        with pytest.raises(JobFailed) as failed:
            queue.wait(queue.submit("immersal.list_maps", {}), timeout=30, poll=0.1)
        error = failed.value.job.error
        assert error["type"] == "ImmersalAuthError" and error["vendor_message"] == "auth"
        seen = sandbox.counters("immersal")
        assert "/login" not in seen and seen["auth_refused"] == 1   # not renewed, not retried
    finally:
        stack.stop()
