"""Client tests talk to the stand-ins alone: one sandbox server and one S3 for the session, no stack."""
from __future__ import annotations

import pytest

from sandbox.s3 import S3StandIn
from sandbox.server import SandboxServer


@pytest.fixture(scope="session")
def server():
    server = SandboxServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3():
    """S3's stand-in: moto's server, checking presigned URLs as S3 does."""
    server = S3StandIn().start()
    yield server
    server.stop()


@pytest.fixture
def sandbox_url(server) -> str:
    return server.url


@pytest.fixture(autouse=True)
def clean_sandbox(sandbox):
    """Every test starts with the vendors' default options, no faults and zero counters."""
    sandbox.reset()
