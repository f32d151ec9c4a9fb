"""Redis restarts are routine: a real redis-server (AOF on) is stopped with SIGTERM or SIGKILL while
Immersity batches have vendor calls under way, left down 5 s or 60 s, and started again on the same
port and data. Every job still succeeds, each paid call is made once, no worker or beat exits, and
work moves again within seconds of Redis coming back; the visibility timeout is an hour here, so
nothing can come back through it. And when a process of the stack dies anyway, the stack restarts it."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime

import pytest
import redis
from celery import Celery
from kombu import Connection

from devstack.loopback import free_port
from devstack.redis_service import redis_answers, redis_server_binary
from geoqueue import GeoQueue
from tests.conftest import start_stack, wait_until
from tests.inputs import prefix_of, put_images
from tests.probes import sends

VISIBILITY_TIMEOUT = 3600
IMAGES_PER_JOB = 6
RECOVERY_BOUND = 60  # seconds: generous, and far below the visibility timeout


@pytest.fixture(scope="module")
def stack():
    """This module's own stack (the conftest fixtures clean its sandbox): an hour-long visibility
    timeout, and a short beat lock so that a restarted beat leads again within seconds."""
    stack = start_stack(flower=False, GEOQUEUE_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
                        GEOQUEUE_TASK_TIME_LIMIT="600", GEOQUEUE_IMMERSITY_TIMEOUT="60",
                        GEOQUEUE_BEAT_LOCK_TIMEOUT="6", GEOQUEUE_BEAT_MAX_LOOP_INTERVAL="1")
    yield stack
    stack.stop()


def active_items(control: Celery) -> int:
    """What `celery inspect active` shows running (0 when the answer was cut: asked again)."""
    try:
        replies = control.control.inspect(timeout=1).active() or {}
    except redis.ConnectionError:  # a pooled connection that outlived an earlier restart
        return 0
    return sum(1 for tasks in replies.values() for task in tasks if task["name"] == "immersity.item")


def progress(queue: GeoQueue, job_ids: list[str]) -> list[tuple[str, int]]:
    return [(job.state, job.done) for job in map(queue.status, job_ids)]


@pytest.mark.parametrize("sig, outage", [
    pytest.param(signal.SIGTERM, 5, id="sigterm-5s"),
    pytest.param(signal.SIGKILL, 5, id="sigkill-5s"),
    pytest.param(signal.SIGKILL, 60, id="sigkill-60s", marks=pytest.mark.slow),
])
def test_a_redis_restart_stops_nothing_and_loses_nothing(stack, store, queue, sandbox, sig, outage):
    workers = {name: stack.processes[name].popen.pid for name in ("control", "transfer", "beat")}
    sandbox.configure("immersity", processing_delay_s=3)
    job_ids = []
    for _ in range(2):
        refs = put_images(store, IMAGES_PER_JOB)
        job_ids.append(queue.submit("immersity.batch", {"prefix": prefix_of(refs),
                                                        "max_parallel": 3}))
    # Six items dispatched for four transfer slots: four vendor calls under way, two messages waiting.
    control = Celery(broker=stack.redis_url)
    wait_until(lambda: active_items(control) >= 4, 60, "the vendor calls under way", interval=0.2)
    control.close()

    stack.stop_redis(sig)
    time.sleep(outage)
    stack.start_redis()
    back, back_wall = time.monotonic(), time.time()
    before = progress(queue, job_ids)
    moved = None

    def all_succeeded() -> bool:
        nonlocal moved
        now = progress(queue, job_ids)
        if moved is None and now != before:
            moved = time.monotonic() - back
        return all(state == "succeeded" for state, _ in now)

    wait_until(all_succeeded, 180, "every job succeeded")
    finished = time.monotonic() - back
    print(f"\n{signal.Signals(sig).name}, {outage}s down: jobs moved again {moved:.1f}s after Redis was back, "
          f"all {len(job_ids)} succeeded after {finished:.1f}s (visibility timeout {VISIBILITY_TIMEOUT}s)")
    assert moved is not None and moved < RECOVERY_BOUND

    for job_id in job_ids:
        job = queue.status(job_id)
        assert job.result["succeeded"] == IMAGES_PER_JOB, job.result
        for outcome in queue.items(job_id).values():
            assert sandbox.disparity_calls_for(outcome["disparity"]) == 1, outcome
    assert sandbox.counters("immersity")["disparity"] == 2 * IMAGES_PER_JOB

    # Nobody exited, nobody was restarted, and no message is left held or waiting.
    for name, pid in workers.items():
        process = stack.processes[name]
        assert process.alive() and process.popen.pid == pid, f"{name} exited; see {process.log}"
        assert "Unrecoverable error" not in stack.logs(name)
    broker = redis.Redis.from_url(stack.redis_url)
    wait_until(lambda: not (broker.hlen("unacked") or broker.llen("transfer")), 10,
               "no message held unacked or waiting in the transfer queue", interval=0.2)
    # Beat dispatches again once Redis is back.
    wait_until(lambda: [at for at in sends(stack.logs("beat")) if at > back_wall], 20,
               "beat sending after Redis came back", interval=0.5)


def test_the_stack_restarts_a_process_that_dies(stack, store, queue):
    beat, transfer = stack.processes["beat"], stack.processes["transfer"]
    os.kill(beat.popen.pid, signal.SIGKILL)          # as the OOM killer would: nobody asked it to stop
    os.kill(transfer.popen.pid, signal.SIGKILL)      # the worker's main process; its pool is orphaned
    killed_at = time.time()
    wait_until(lambda: stack.processes["beat"] is not beat and stack.processes["transfer"] is not transfer, 30,
               "the stack restarting beat and the transfer worker", interval=0.2)
    stack.wait_for_workers(["transfer"])
    notes = (stack.run_dir / "stack.log").read_text()
    assert "beat exited with code -9" in notes and "transfer restarted" in notes, notes

    [image] = put_images(store, 1)
    job = queue.wait(queue.submit("immersity.disparity", {"image": image.uri}), timeout=60)
    assert job.state == "succeeded"
    # The new beat takes the leader lock once the dead one's expires (6 s here) and dispatches.
    wait_until(lambda: [at for at in sends(stack.logs("beat")) if at > killed_at], 30,
               "the restarted beat sending", interval=0.5)
    assert stack.processes["beat"].alive()
    assert datetime.now().timestamp() - killed_at < 60


def test_prefork_children_are_recycled():
    stack = start_stack(flower=False, beat=False, worker_queues=(), GEOQUEUE_WORKER_MAX_TASKS_PER_CHILD="2",
                        GEOQUEUE_WORKER_MAX_MEMORY_PER_CHILD="300000")
    stack.start_worker("transfer", pool="prefork")     # the transfer queue runs threads by default
    stack.wait_for_workers(["transfer"])
    control = Celery(broker=stack.redis_url)
    try:
        [stats] = control.control.inspect(timeout=5).stats().values()
        [conf] = control.control.inspect(timeout=5).conf().values()
        assert stats["pool"]["max-tasks-per-child"] == 2
        assert conf["worker_max_memory_per_child"] == 300000
        children = set(stats["pool"]["processes"])
        queue = GeoQueue(stack.redis_url)
        images = put_images(stack.object_store(), 6)
        job_ids = [queue.submit("immersity.disparity", {"image": image.uri}) for image in images]
        assert all(queue.wait(job_id, timeout=60).state == "succeeded" for job_id in job_ids)

        def pool() -> set[int]:
            return set(next(iter(control.control.inspect(timeout=5).stats().values()))["pool"]["processes"])

        # Six tasks on four children: one ran two at least, and was replaced.
        wait_until(lambda: not pool() >= children, 15, "a child replaced", interval=0.5)
    finally:
        control.close()
        stack.stop()

# --- the transport alone (workers/broker.py), on a redis-server of its own ---

class RedisServer:
    def __init__(self, data_dir) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "yes", "--dir", str(data_dir)]
        self.process = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL)
        wait_until(lambda: redis_answers(self.url), 20, "redis-server")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


@pytest.fixture
def server(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def held(server: RedisServer) -> tuple[int, int]:
    """(messages held unacked, messages waiting in the queue)"""
    client = redis.Redis.from_url(server.url)
    return client.hlen("unacked"), client.llen("q")


def take_one(server: RedisServer):
    connection = Connection(server.url, transport="workers.broker:Transport")
    queue = connection.SimpleQueue("q")
    queue.put({"job": 1})
    return connection, queue.get(timeout=5)


def test_a_connection_loss_leaves_a_held_message_held_until_its_task_acks_it(server):
    connection, message = take_one(server)
    assert held(server) == (1, 0)
    # What Celery's consumer does on a connection error (on_connection_error_after_connected).
    connection.collect()
    connection.close()
    assert held(server) == (1, 0)  # stock kombu puts it back on the queue here, its task still running
    message.ack()                  # the task ends after the reconnection
    assert held(server) == (0, 0)


def test_an_ack_that_meets_no_redis_is_settled_when_the_worker_reconnects(server):
    connection, message = take_one(server)
    server.stop()
    connection.collect()
    connection.close()
    message.ack()                  # Redis is down: kept (stock kombu logs it and the message waits an hour)
    server.start()
    assert held(server) == (1, 0)
    _ = Connection(server.url, transport="workers.broker:Transport").default_channel  # the reconnection
    assert held(server) == (0, 0)
