"""The `geoqueue` command's machine-readable output, refusals and shell completion."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.probes import geoqueue


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


def test_shell_completion_offers_commands_and_job_names(tmp_path):
    out = tmp_path / "completions"
    line = "geoqueue submit immersity."
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "_ARGCOMPLETE_IFS": "\n"}
    subprocess.run([sys.executable, "-m", "geoqueue.cli"], env=env, capture_output=True, timeout=60)
    assert set(out.read_text().split()) >= {"immersity.batch", "immersity.disparity", "immersity.animation"}
