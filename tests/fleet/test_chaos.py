"""The chaos run (bench/chaos.py): every fault at once, and still every job right, none lost, no
vendor side effect twice. Here: the sandbox's means of aiming a fault at one call."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox.immersal import DEFAULT_TOKEN
from sandbox.server import SandboxServer
from tests.inputs import CLIENT_INTRINSICS, image_bytes
from vendors.errors import TransientError
from vendors.http import Retries
from vendors.immersal import ImmersalClient

CHAOS = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


@pytest.fixture(scope="module")
def server():
    server = SandboxServer().start()
    yield server
    server.stop()


@pytest.fixture
def sandbox_url(server) -> str:
    """The shared `sandbox` fixture controls this module's stand-alone server."""
    return server.url


def test_a_slowed_path_widens_one_call_and_a_late_answer_lands_its_effect(server, sandbox):
    sandbox.reset()
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


@pytest.mark.slow
def test_the_small_chaos_run_meets_the_goal():
    """bench/chaos.py --small: the baseline, then one job of each kind through 3 kills (one mid Immersal
    capture, one mid DroneMapper task creation, one mid Mapillary upload), a Redis restart, 20% 5xx and
    5% 429 from every vendor and tokens that stop working. Every job right, no duplicate, none lost."""
    finished = subprocess.run([sys.executable, str(CHAOS), "--small"], cwd=CHAOS.parent.parent, capture_output=True,
                              text=True, timeout=540)
    print(finished.stdout[-6000:], finished.stderr[-3000:])
    assert finished.returncode == 0, finished.stdout[-3000:]
    assert "goal met" in finished.stdout
    assert "MISSED" not in finished.stdout and "NOT" not in finished.stdout    # every fault was delivered
