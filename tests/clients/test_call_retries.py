"""Each vendor call retries its own transient failures where it failed (5xx, 429 with its
Retry-After, timeouts, dropped connections), bounded in tries and time; a call that creates
something is tried again only when the vendor answered. Real clients against the stand-ins."""
from __future__ import annotations

import doctest
import io
import time

import pytest
import requests

import vendors.http
from sandbox.immersal import DEFAULT_TOKEN
from sandbox.mapillary import SANDBOX_CLIENT_TOKEN
from sandbox.mapillary_world import build_world
from tests.inputs import CLIENT_INTRINSICS, image_bytes
from vendors.dronemapper.client import DroneMapperClient
from vendors.errors import RateLimited, TransientError
from vendors.http import Retries
from vendors.immersal import ImmersalClient
from vendors.mapillary.client import MapillaryClient

FAST = Retries(attempts=6, total_seconds=30, base_seconds=0.01, cap_seconds=0.1)


def journal(sandbox, vendor: str, path_end: str) -> list[dict]:
    """The requests the vendor's stand-in served on paths ending `path_end`."""
    return [e for e in sandbox.journal(vendor) if e["path"].endswith(path_end)]


def test_the_retry_rule():
    assert doctest.testmod(vendors.http).failed == 0


def test_a_read_retries_server_errors_and_dropped_connections_where_it_failed(sandbox, server):
    client = ImmersalClient(f"{server.url}/immersal", token=DEFAULT_TOKEN, timeout=10, retries=FAST)
    sandbox.faults("immersal", fail_next=2, drop_next=1)
    assert client.status()["imageCount"] == 0
    assert [e["status"] for e in journal(sandbox, "immersal", "/status")][-1] == 200
    assert len(journal(sandbox, "immersal", "/status")) >= 3     # a dropped connection leaves no journal line


def test_a_capture_cut_off_is_sent_again_because_a_second_one_replaces_it(sandbox, server):
    client = ImmersalClient(f"{server.url}/immersal", token=DEFAULT_TOKEN, timeout=10, retries=FAST)
    sandbox.faults("immersal", drop_next=1)
    client.capture(image_bytes(1), run=0, index=0, intrinsics=CLIENT_INTRINSICS)
    assert client.status()["imageCount"] == 1


def test_a_creating_call_cut_off_is_not_repeated_blindly(sandbox, server):
    client = ImmersalClient(f"{server.url}/immersal", token=DEFAULT_TOKEN, timeout=10, retries=FAST)
    for index in range(3):
        client.capture(image_bytes(index), run=0, index=index, intrinsics=CLIENT_INTRINSICS)
    sandbox.faults("immersal", drop_next=1, paths="/construct")
    with pytest.raises(TransientError) as cut:
        client.construct("CutOff")
    assert cut.value.status is None                # no answer: whether it took effect is for the caller to find out
    assert len(journal(sandbox, "immersal", "/construct")) == 1
    sandbox.faults("immersal", rate_limit_next=1, retry_after_s=0.2, paths="/construct")
    started = time.monotonic()
    assert client.construct("Answered")["id"]      # a 429 took no effect: tried again, after its Retry-After
    assert time.monotonic() - started >= 0.2
    assert [e["status"] for e in journal(sandbox, "immersal", "/construct")][1:] == [429, 200]


def test_a_project_creation_answered_500_is_retried_and_creates_one_project(sandbox, server):
    client = DroneMapperClient(f"{server.url}/dronemapper", "sandbox", "sandbox-password", timeout=10, retries=FAST)
    client.login()
    sandbox.faults("dronemapper", fail_next=2, paths="/api/projects/")
    project = client.create_project("Retried", "answered twice with 500 first")
    assert [p["id"] for p in client.list_projects()] == [project["id"]]


def test_retries_stop_at_their_time_bound(sandbox, server):
    client = ImmersalClient(f"{server.url}/immersal", token=DEFAULT_TOKEN, timeout=10,
                            retries=Retries(attempts=1000, total_seconds=1.0, base_seconds=0.05, cap_seconds=0.2))
    sandbox.faults("immersal", error_rate=1.0)
    started = time.monotonic()
    with pytest.raises(TransientError):
        client.status()
    assert time.monotonic() - started < 3
    sandbox.faults("immersal", error_rate=0.0, rate_limit_rate=1.0, retry_after_s=5)
    with pytest.raises(RateLimited):                # a Retry-After past the bound is not waited for
        client.status()
    assert len(journal(sandbox, "immersal", "/status")) < 1000


def test_a_thumbnail_download_that_breaks_off_starts_again_into_a_clean_buffer(sandbox, server):
    base = f"{server.url}/mapillary"
    client = MapillaryClient(f"{base}/graph", f"{base}/tiles", f"{base}/rupload", SANDBOX_CLIENT_TOKEN, timeout=10,
                             retries=FAST)
    image = next(iter(build_world().images.values()))
    url = client.get_image(image.id, ["thumb_256_url"])["thumb_256_url"]
    expected = requests.get(url, timeout=10).content
    buffer = io.BytesIO(b"already here|")
    buffer.seek(0, io.SEEK_END)
    sandbox.faults("mapillary", fail_next=1, drop_next=1)
    client.download(url, buffer)
    assert buffer.getvalue() == b"already here|" + expected


# --- aiming a fault at one call (the chaos run widens a call's window with these) ---

def test_a_slowed_path_widens_one_call_and_a_late_answer_lands_its_effect(server, sandbox):
    client = ImmersalClient(f"{server.url}/immersal", token=DEFAULT_TOKEN, timeout=0.5, retries=Retries(attempts=1))
    sandbox.faults("immersal", answer_delay_ms=1500, latency_paths="/capture$")
    started = time.monotonic()
    assert client.status()["imageCount"] == 0                # other paths answer at once
    assert time.monotonic() - started < 0.5
    with pytest.raises(TransientError):                      # the answer comes too late for the client...
        client.capture(image_bytes(0), run=0, index=0, intrinsics=CLIENT_INTRINSICS)
    assert client.status()["imageCount"] == 1                # ...but the image reached the workspace

    sandbox.faults("immersal", answer_delay_ms=0, latency_ms=1500)
    with pytest.raises(TransientError):                      # slowed before it is served: still in flight...
        client.capture(image_bytes(1), run=0, index=1, intrinsics=CLIENT_INTRINSICS)
    assert client.status()["imageCount"] == 1
    time.sleep(1.5)
    assert client.status()["imageCount"] == 2                # ...it lands after its client gave up
