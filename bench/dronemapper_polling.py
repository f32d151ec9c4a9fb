"""Tracking DroneMapper tasks: geoqueue's beat-driven poller vs the vendor doc's loop, one sleeping
poller per task (`while True: GET task; time.sleep(3)`), against the same sandbox in one run.

Each side gets N tasks in flight at once (spread over P projects), then for a window in which all
of them are still processing we count the HTTP requests the vendor served for status and console,
and the worker slots held; then every task completes and we measure how long after the vendor's
completion each side noticed it.

    python bench/dronemapper_polling.py [--tasks 500] [--projects 5] [--running-s 150] [--window 60]
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.local_stack import LocalStack  # noqa: E402
from devstack.samples import scene  # noqa: E402
from geoqueue import GeoQueue  # noqa: E402
from geoqueue.s3ref import S3Ref  # noqa: E402
from vendors.dronemapper.client import DroneMapperClient  # noqa: E402
from vendors.dronemapper.states import Status  # noqa: E402

DOC_SLEEP_S = 3.0  # the vendor doc's polling loop
STATUS_PATH = re.compile(r"/api/projects/\d+/tasks/(\d+/)?$")
CONSOLE_PATH = re.compile(r"/api/projects/\d+/tasks/\d+/output/$")
COMMIT_PATH = re.compile(r"/api/projects/\d+/tasks/(\d+)/commit/$")
POLL_LINE = re.compile(r"^\[(.+?): INFO/[^\]]+\] Task dronemapper\.poll\[[^\]]+\] succeeded in ([0-9.e-]+)s")
SETTINGS = {"GEOQUEUE_CONTROL_CONCURRENCY": "2", "GEOQUEUE_TRANSFER_CONCURRENCY": "4"}


def vendor_config(stack: LocalStack, **values) -> None:
    stack.sandbox("POST", "/_sandbox/config/dronemapper", json=values)


def requests_in(stack: LocalStack, start: float, end: float) -> dict[str, int]:
    entries = [e for e in stack.sandbox("GET", "/_sandbox/journal/dronemapper") if start <= e["time"] < end]
    status = sum(1 for e in entries if e["method"] == "GET" and STATUS_PATH.search(e["path"]))
    console = sum(1 for e in entries if e["method"] == "GET" and CONSOLE_PATH.search(e["path"]))
    return {"status": status, "console": console, "all": len(entries)}


def poll_busy_seconds(stack: LocalStack, start: float, end: float) -> float:
    """Time the poll tasks held a control worker slot in the window, from Celery's own log lines."""
    busy = 0.0
    for line in stack.logs("control").splitlines():
        match = POLL_LINE.match(line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if start <= when < end:
                busy += float(match.group(2))
    return busy


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.5)


# --- geoqueue: process_survey jobs, followed by dronemapper.poll ---
def run_geoqueue(stack: LocalStack, tasks: int, projects: list[int], window: float, finish_s: float) -> dict:
    queue = GeoQueue(stack.redis_url)
    store = stack.object_store()
    for i in range(2):
        store.write(S3Ref("geoqueue", f"bench-polling/DJI_{i:04d}.JPG"), scene(i, 64, 48), "image/jpeg")
    job_ids = [queue.submit("dronemapper.process_survey", {"images": "s3://geoqueue/bench-polling/",
                                                           "project": projects[i % len(projects)]})
               for i in range(tasks)]
    started = time.time()
    wait_for(lambda: all(queue.status(j).state == "waiting" for j in job_ids), 900, f"{tasks} surveys processing")
    in_flight = time.time()
    print(f"  geoqueue: {tasks} surveys submitted, uploaded and committed in {in_flight - started:.0f}s")
    commits = {m.group(1): e["time"] for e in stack.sandbox("GET", "/_sandbox/journal/dronemapper")
               if e["method"] == "POST" and (m := COMMIT_PATH.search(e["path"]))}
    first_done = min(commits.values()) + finish_s
    if in_flight + window > first_done:
        raise SystemExit(f"the first task completes {first_done - in_flight:.0f}s into the window: "
                         f"give more --running-s (setup took {in_flight - started:.0f}s)")
    time.sleep(window)
    counted = requests_in(stack, in_flight, in_flight + window)
    busy = poll_busy_seconds(stack, in_flight, in_flight + window)
    wait_for(lambda: all(queue.status(j).finished for j in job_ids), 900, "every survey finished")
    states = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    delays = []
    for job_id in job_ids:
        job = queue.status(job_id)
        assert job.state == "succeeded", job.error
        noticed = float(states.hget(f"gq:job:{job_id}:dronemapper", "step_at"))  # moved to deliver by the poller
        delays.append(noticed - (commits[str(job.result["task"])] + finish_s))
    return {"requests": counted, "slots": busy / window, "delays": delays}


# --- the vendor doc's loop: one sleeping poller per task ---
def run_doc_loop(stack: LocalStack, tasks: int, projects: list[int], window: float, finish_s: float) -> dict:
    client = DroneMapperClient(f"{stack.sandbox_url}/dronemapper", "sandbox", "sandbox-password", timeout=60)
    images = [(f"DJI_{i:04d}.JPG", scene(i, 64, 48), len(scene(i, 64, 48))) for i in range(2)]
    created = []
    for i in range(tasks):
        project = projects[i % len(projects)]
        task = client.create_task(project, images, name=f"doc-loop-{i}")
        created.append((project, task["id"], time.time()))
    token = client.login()
    noticed: dict[int, float] = {}

    def poller(project: int, task_id: int) -> None:
        url = f"{stack.sandbox_url}/dronemapper/api/projects/{project}/tasks/{task_id}/"
        while True:
            res = requests.get(url, headers={"Authorization": f"JWT {token}"}, timeout=60).json()
            if res["status"] in (Status.COMPLETED, Status.FAILED):
                noticed[task_id] = time.time()
                return
            time.sleep(DOC_SLEEP_S)

    threads = [threading.Thread(target=poller, args=(p, t), daemon=True) for p, t, _ in created]
    for thread in threads:
        thread.start()
    polling = time.time()
    time.sleep(window)
    counted = requests_in(stack, polling, polling + window)
    for thread in threads:
        thread.join()
    delays = [noticed[t] - (made + finish_s) for _p, t, made in created]
    return {"requests": counted, "slots": float(tasks), "delays": delays}


def summary(name: str, result: dict, window: float) -> str:
    per_minute = {k: v * 60 / window for k, v in result["requests"].items()}
    delays = sorted(result["delays"])
    p95 = delays[int(0.95 * (len(delays) - 1))]
    return (f"| {name} | {per_minute['status']:.0f} | {per_minute['console']:.0f} | {result['slots']:.2f} | "
            f"{statistics.mean(delays):.2f} | {p95:.2f} | {delays[-1]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--projects", type=int, default=5)
    parser.add_argument("--running-s", type=float, default=150.0, help="vendor processing time of every task")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of steady state that are counted")
    args = parser.parse_args()

    stack = LocalStack(settings_env=SETTINGS, isolated=True, flower=False).start()
    try:
        finish_s = 0.2 + 0.5 + args.running_s  # upload_to_node_s + queued_s + running_s: the sandbox's task clock
        vendor_config(stack, upload_to_node_s=0.2, queued_s=0.5, running_s=args.running_s, console_lines=200,
                      orthophoto_px=64, dsm_px=32, pointcloud_points=500, assets=["orthophoto.tif", "dsm.tif",
                                                                                  "pointcloud.ply"])
        client = DroneMapperClient(f"{stack.sandbox_url}/dronemapper", "sandbox", "sandbox-password")
        projects = [client.create_project(f"bench {i}")["id"] for i in range(args.projects)]
        print(f"{args.tasks} tasks in {args.projects} projects, {args.running_s:g}s of processing each, "
              f"{args.window:g}s counted")
        ours = run_geoqueue(stack, args.tasks, projects, args.window, finish_s)
        doc = run_doc_loop(stack, args.tasks, projects, args.window, finish_s)
        print("| poller | status requests/min | console requests/min | worker slots held | "
              "detection delay mean (s) | p95 (s) | max (s) |")
        print("|---|---|---|---|---|---|---|")
        print(summary("geoqueue `dronemapper.poll` (beat, 5 s)", ours, args.window))
        print(summary("vendor doc loop, one per task (sleep 3 s)", doc, args.window))
        ratio = doc["requests"]["status"] / max(1, ours["requests"]["status"] + ours["requests"]["console"])
        print(f"requests ratio doc loop / geoqueue (status + console): {ratio:.0f}x")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
