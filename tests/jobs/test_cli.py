"""The `geoqueue` command's machine-readable output, refusals and shell completion."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.probes import enqueued, geoqueue


def test_status_list_and_items_print_json_with_o_json(stack, queue):
    job_id = f"cli-{stack.api_port}"
    queue.ledger.create(job_id, "immersity.batch", {"prefix": "s3://geoqueue/x/"})
    queue.ledger.record_item(job_id, "a.jpg", {"state": "succeeded"})
    queue.ledger.transition(job_id, "canceled")
    status = json.loads(geoqueue(stack, "status", job_id, "-o", "json").stdout)
    assert status["id"] == job_id and status["state"] == "canceled"
    assert "canceled" in geoqueue(stack, "status", job_id).stdout.splitlines()[0]
    listed = json.loads(geoqueue(stack, "list", "--state", "canceled", "--vendor", "immersity", "-o", "json",
                                 "--limit", "500").stdout)
    assert job_id in [j["id"] for j in listed] and {j["state"] for j in listed} == {"canceled"}
    assert json.loads(geoqueue(stack, "items", job_id, "-o", "json").stdout) == {"a.jpg": {"state": "succeeded"}}


def test_unknown_states_and_job_ids_are_refused(stack):
    bad_state = geoqueue(stack, "list", "--state", "finished")
    assert bad_state.returncode == 2 and "invalid choice: 'finished'" in bad_state.stderr
    unknown = geoqueue(stack, "items", "no-such-job")
    assert unknown.returncode == 2 and "no job no-such-job" in unknown.stderr and unknown.stdout == ""


# What a vendor's message may carry: colours and a screen clear (ANSI CSI), a window title (OSC), a
# carriage return that writes over the line, a bell, and a right-to-left override that reverses text.
HOSTILE = "\x1b[2J\x1b[31mdone\x1b]0;owned\x07\rOK: all good\u202egnp.exe\x7f\x9b1m"


def test_vendor_text_reaches_the_terminal_with_control_characters_escaped(stack, queue):
    job_id = f"cli-hostile-{stack.api_port}"
    queue.ledger.create(job_id, "immersity.batch", {"prefix": "s3://geoqueue/x/"})
    queue.ledger.record_item(job_id, f"a{HOSTILE}.jpg", {"error": {"type": "VendorError", "message": HOSTILE}})
    queue.ledger.transition(job_id, "failed", error={"type": "VendorError", "message": f"Immersity: {HOSTILE}",
                                                     "vendor_message": HOSTILE})
    runs = [geoqueue(stack, "status", job_id), geoqueue(stack, "items", job_id),
            geoqueue(stack, "status", job_id, "-o", "json"), geoqueue(stack, "items", job_id, "-o", "json"),
            geoqueue(stack, "list", "--state", "failed", "-o", "json", "--limit", "500")]
    for run in runs:
        assert run.returncode == 0, run.stderr
        shown = run.stdout + run.stderr
        assert not [c for c in shown if not c.isprintable() and c != "\n"], repr(shown)
    status = runs[0].stdout
    assert "Immersity: \\x1b[2J\\x1b[31mdone\\x1b]0;owned\\x07\\rOK: all good\\u202egnp.exe\\x7f\\x9b1m" in status
    assert "a\\x1b[2J" in runs[1].stdout and "VendorError: \\x1b[2J" in runs[1].stdout
    assert json.loads(runs[2].stdout)["error"]["vendor_message"] == HOSTILE   # JSON keeps the text, escaped


def refused_in_one_line(run) -> str:
    """A refusal as the command gives it: exit status 2, one line on stderr, no traceback."""
    assert run.returncode == 2 and run.stdout == "", (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    return run.stderr


@pytest.mark.parametrize("args, says", [
    (["--json", '{"image": "s3://geoqueue/a.jpg"'], "--json is not JSON"),
    (["--json", "[1,2]"], "--json must be one JSON object"),
    (["--json", "null"], "--json must be one JSON object"),
    (["--param", "image"], "--param takes key=value"),
])
def test_submit_refuses_parameters_that_are_not_an_object(stack, args, says):
    before = enqueued(stack)
    stderr = refused_in_one_line(geoqueue(stack, "submit", "immersity.disparity", *args))
    assert "params" in stderr and says in stderr
    assert enqueued(stack) == before


@pytest.mark.parametrize("limit", ["-5", "0"])
def test_list_refuses_a_limit_below_one(stack, limit):
    stderr = refused_in_one_line(geoqueue(stack, "list", "--limit", limit))
    assert "limit" in stderr and "at least 1" in stderr


def test_shell_completion_offers_commands_and_job_names(tmp_path):
    out = tmp_path / "completions"
    line = "geoqueue submit immersity."
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "_ARGCOMPLETE_IFS": "\n"}
    subprocess.run([sys.executable, "-m", "geoqueue.cli"], env=env, capture_output=True, timeout=60)
    assert set(out.read_text().split()) >= {"immersity.batch", "immersity.disparity", "immersity.animation"}


def test_the_command_acts_as_an_app_over_redis_and_as_its_keys_app_over_http(stack, queue):
    own, other = f"cli-own-{stack.api_port}", f"cli-other-{stack.api_port}"
    queue.ledger.create(own, "immersity.batch", {"prefix": "s3://geoqueue/own/"})
    queue.ledger.create(queue.as_app("app-cli").stored(other), "immersity.batch", {"prefix": "s3://geoqueue/o/"})
    for job_id in (own, queue.as_app("app-cli").stored(other)):
        queue.ledger.transition(job_id, "canceled")
    as_app = json.loads(geoqueue(stack, "--app", "app-cli", "status", other, "-o", "json").stdout)
    assert (as_app["id"], as_app["app"], as_app["state"]) == (other, "app-cli", "canceled")
    assert geoqueue(stack, "status", other).returncode == 2          # not the default app's
    over_http = subprocess.run([sys.executable, "-m", "geoqueue.cli", "--url", stack.api_url, "list", "--state",
                                "canceled", "--limit", "500", "-o", "json"], capture_output=True, text=True,
                               timeout=60, env={**os.environ, "GEOQUEUE_API_KEY": stack.api_key})
    listed = [job["id"] for job in json.loads(over_http.stdout)]
    assert own in listed and other not in listed  # the stack's key is of the default app
