"""Running the fleet: metrics for Prometheus, deploy-time shutdowns, one beat at a time."""
from __future__ import annotations

import time

import requests

from devstack.commands import local_argv
from devstack.processes import PROCESSES
from tests.conftest import start_stack, wait_for_done, wait_until
from tests.inputs import prefix_of, put_images
from tests.probes import scrape, sends


def test_metrics_show_queue_depth_and_jobs_by_state_during_a_run(stack, store, queue, sandbox):
    refs = put_images(store, 6)
    sandbox.configure("immersity", processing_delay_s=0.5)
    before = scrape(stack.metrics_url).get('geoqueue_jobs{state="succeeded",vendor="immersity"}', 0)
    job_id = queue.submit("immersity.batch", {"prefix": prefix_of(refs), "max_parallel": 2})

    def with_a_job_running() -> dict[str, float] | None:
        metrics = scrape(stack.metrics_url)
        return metrics if metrics.get('geoqueue_jobs{state="running",vendor="immersity"}', 0) >= 1 else None

    during = wait_until(with_a_job_running, 30, "an Immersity job running in the metrics", interval=0.2)
    assert 'geoqueue_queue_depth{queue="transfer"}' in during and 'geoqueue_queue_depth{queue="control"}' in during
    queue.wait(job_id, timeout=120)
    after = scrape(stack.metrics_url)
    assert after['geoqueue_jobs{state="succeeded",vendor="immersity"}'] == before + 1
    flower = requests.get(stack.flower_url + "/metrics", timeout=10).text  # exempt from auth, as scrapers need
    assert "flower_events_total" in flower and 'task="immersity.item"' in flower


def test_sigterm_finishes_running_work_and_loses_nothing(stack, store, queue, sandbox):
    refs = put_images(store, 10)
    sandbox.configure("immersity", processing_delay_s=0.8)
    job_id = queue.submit("immersity.batch", {"prefix": prefix_of(refs), "max_parallel": 4})
    wait_for_done(queue, job_id, 1)
    assert stack.processes["transfer"].terminate() == 0  # a deploy: warm shutdown
    stopped_at = queue.status(job_id).done
    stack.start_worker("transfer")
    stack.wait_for_workers(["transfer"])
    job = queue.wait(job_id, timeout=60)  # well under the visibility timeout: nothing waited for redelivery
    assert job.state == "succeeded" and job.result["succeeded"] == 10
    assert stopped_at < 10
    for outcome in queue.items(job_id).values():
        assert sandbox.disparity_calls_for(outcome["disparity"]) == 1
    assert sandbox.counters("immersity")["disparity"] == 10


def test_two_beats_dispatch_once_and_the_standby_takes_over():
    stack = start_stack(flower=False, beat=False, GEOQUEUE_BEAT_LOCK_TIMEOUT="6", GEOQUEUE_BEAT_MAX_LOOP_INTERVAL="1")
    try:
        beats = {name: stack.spawn(name, local_argv(PROCESSES["beat"], stack.env)) for name in ("beat-a", "beat-b")}
        time.sleep(16)
        first = {name: sends(stack.logs(name)) for name in beats}
        leader = max(first, key=lambda name: len(first[name]))
        standby = next(name for name in beats if name != leader)
        assert len(first[leader]) >= 2 and first[standby] == []
        gaps = [b - a for a, b in zip(first[leader], first[leader][1:], strict=False)]
        assert all(gap > 4 for gap in gaps), gaps  # once per 5 s interval

        beats[leader].kill()
        killed_at = time.time()
        took_over = wait_until(lambda: sends(stack.logs(standby)), 30, "the standby beat taking over", interval=0.5)
        # lock timeout (6 s) + a loop interval + the 5 s schedule, with slack for a busy machine
        assert took_over[0] - killed_at < 16
    finally:
        stack.stop()
