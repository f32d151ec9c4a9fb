"""The HTTP API under abuse, as an operator would try it: many open event streams, bodies of any
size and shape, stolen or replayed job-page cookies, a slow Flower, and `python -m api --help`.
Everything runs against real API processes of the stack (a second one where a setting differs)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.local_stack import REPO_ROOT, free_port
from tests.http_helpers import api

# --- JSON bodies ---


def nested(depth: int) -> str:
    return '{"name": "immersity.disparity", "params": {"image": ' + "[" * depth + "]" * depth + "}}"


@pytest.mark.parametrize("body, status", [
    (nested(100_000), 400),
    (nested(500), 400),
    ('{"name": "immersity.disparity", "params": {"image": ' + "1" * 5000 + "}}", 400),
    ('{"name": "immersity.disparity", "params": {"image": NaN}}', 400),
])
def test_json_of_any_shape_gets_a_4xx_never_a_500(stack, body, status):
    refused = api(stack, "POST", "/v1/jobs", data=body.encode(), headers={"content-type": "application/json"})
    assert refused.status_code == status, refused.text
    assert refused.json()["error"] == "MalformedJSON"


# --- cursors ---


@pytest.mark.parametrize("cursor", ["nan:page-1", "NaN:page-1", "-nan:x", "inf:page-1", "nan"])
def test_a_cursor_that_is_no_number_gets_422(stack, cursor):
    for path in ("/v1/jobs", "/ui/jobs"):
        refused = api(stack, "GET", path, params={"cursor": cursor})
        assert refused.status_code == 422, (path, refused.text)
        assert refused.json()["field"] == "cursor"


# --- the command ---


def test_python_m_api_help_prints_usage_and_serves_nothing():
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "GEOQUEUE_API_ADDRESS": "127.0.0.1", "GEOQUEUE_API_PORT": str(port)}
    shown = subprocess.run([sys.executable, "-m", "api", "--help"], cwd=REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=15)
    assert shown.returncode == 0 and shown.stdout.startswith("usage: python -m api")
    assert "GEOQUEUE_API_ADDRESS" in shown.stdout and "GEOQUEUE_API_PORT" in shown.stdout
    wrong = subprocess.run([sys.executable, "-m", "api", "--prot", "1"], cwd=REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=30)
    assert wrong.returncode == 2 and "usage:" in wrong.stderr
