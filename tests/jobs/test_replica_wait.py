"""What a Redis failover can lose, bounded: with a replica, a paid call's marker, a lease grant, a new
job's record and a job's end are on the replica before the call is made, the grantee or the
producer is told. A primary and a replica of their own (real redis-servers); the replica is paused
(SIGSTOP) to play one that lags, and resumed."""
from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
import uuid

import pytest
import redis

from devstack.loopback import free_port
from devstack.redis_replica import Replica
from devstack.redis_service import redis_answers, redis_server_binary
from devstack.waiting import wait_until
from geoqueue.ledger import Ledger
from geoqueue.ledger_keys import event_channel, job_key

RESUME_AFTER = 0.5


@pytest.fixture
def primary(tmp_path, monkeypatch):
    """A redis-server of its own, which the fleet's code in this process writes to."""
    from config import redis_client, settings

    port = free_port()
    server = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: redis_answers(url), 20, "redis-server")
        monkeypatch.setenv("GEOQUEUE_REDIS_URL", url)
        monkeypatch.setenv("GEOQUEUE_REDIS_REPLICA_WAIT_MS", "10000")
        settings.get_settings.cache_clear()
        redis_client.get_redis.cache_clear()
        yield port
    finally:
        settings.get_settings.cache_clear()
        redis_client.get_redis.cache_clear()
        server.terminate()
        server.wait(10)


@pytest.fixture
def replica(primary):
    with Replica(primary) as replica:
        yield replica


def lagging_for(replica: Replica, seconds: float) -> threading.Thread:
    """Pause the replica now and resume it `seconds` later; the thread's `resumed_at` says when."""
    replica.pause()

    def resume() -> None:
        time.sleep(seconds)
        thread.resumed_at = time.monotonic()
        replica.resume()

    thread = threading.Thread(target=resume)
    thread.start()
    return thread


def test_a_paid_call_is_made_only_once_a_replica_holds_its_marker(replica):
    from runtime.once import Once

    effect, seen = Once(f"job-{uuid.uuid4().hex}"), {}

    def paid_call() -> str:
        seen["at"] = time.monotonic()
        seen["marker on the replica"] = replica.client.hget(effect.key, "paid") is not None
        return "paid once"

    resumer = lagging_for(replica, RESUME_AFTER)
    assert effect.run("paid", paid_call).result == "paid once"
    resumer.join()
    assert seen["at"] >= resumer.resumed_at, "the call was made while no replica held its marker"
    assert seen["marker on the replica"]


def test_a_marker_no_replica_acknowledged_in_time_is_taken_back_and_its_call_not_made(replica, monkeypatch):
    from runtime.once import NotOnReplica, Once

    monkeypatch.setenv("GEOQUEUE_REDIS_REPLICA_WAIT_MS", "300")
    effect, calls = Once(f"job-{uuid.uuid4().hex}"), []
    replica.pause()
    try:
        with pytest.raises(NotOnReplica):
            effect.run("paid", lambda: calls.append(1))
        assert calls == [] and effect.entry("paid") is None
    finally:
        replica.resume()
    # A later attempt, the replica caught up: the call is made, once.
    assert effect.run("paid", lambda: calls.append(1) or "made").result == "made"
    assert calls == [1]


def test_a_producer_is_given_its_job_id_once_a_replica_holds_the_record(primary, replica):
    ledger, job_id = Ledger(redis.Redis(port=primary, decode_responses=True)), f"job-{uuid.uuid4().hex}"
    resumer = lagging_for(replica, RESUME_AFTER)
    ledger.create(job_id, "immersity.disparity", {"image": "s3://b/i.jpg"})
    returned_at = time.monotonic()
    resumer.join()
    assert returned_at >= resumer.resumed_at, "create returned while no replica held the record"
    assert replica.client.hget(job_key(job_id), "state") == "queued"


def test_a_producer_hears_of_a_jobs_end_only_once_a_replica_holds_it(primary, replica):
    client = redis.Redis(port=primary, decode_responses=True)
    ledger, job_id = Ledger(client), f"job-{uuid.uuid4().hex}"
    ledger.create(job_id, "immersity.disparity", {"image": "s3://b/i.jpg"})
    with client.pubsub(ignore_subscribe_messages=True) as events:
        events.subscribe(event_channel(job_id))
        while events.get_message(timeout=0.2):
            pass
        resumer = lagging_for(replica, RESUME_AFTER)
        ending = threading.Thread(target=ledger.transition, args=(job_id, "succeeded"), kwargs={"result": {"ok": 1}})
        ending.start()
        message = events.get_message(timeout=10)
        heard_at = time.monotonic()
        ending.join()
        resumer.join()
    assert message is not None and '"succeeded"' in message["data"]
    assert heard_at >= resumer.resumed_at, "the end was told while no replica held it"
    assert replica.client.hget(job_key(job_id), "state") == "succeeded"


def test_a_lease_is_granted_once_a_replica_holds_the_grant(replica):
    from config.redis_client import get_redis
    from runtime.lease import Lease

    lease = Lease(get_redis(), f"gq:test:lease:{uuid.uuid4().hex}", 30)
    lease.wait("job-a")
    resumer = lagging_for(replica, RESUME_AFTER)
    grant = lease.grant_next()
    granted_at = time.monotonic()
    resumer.join()
    assert grant is not None and grant.owner == "job-a"
    assert granted_at >= resumer.resumed_at, "the grant was handed out while no replica held it"
    assert replica.client.get(lease.name) == "job-a"


def test_a_grant_after_a_failover_that_lost_one_outnumbers_it_and_fences_its_holder(primary):
    from config.redis_client import get_redis
    from runtime.lease import Lease

    lease = Lease(get_redis(), f"gq:test:lease:{uuid.uuid4().hex}", 30)
    first = lease.acquire("job-a")
    get_redis().delete(lease.name, lease.fence_key)     # the new primary never had that grant
    second = lease.acquire("job-b")
    assert second > first > 0
    assert not lease.refresh("job-a", first)
    # Granted again to the same job, by a later grant: what it did under the first grant is fenced off.
    get_redis().delete(lease.name, lease.fence_key)
    third = lease.acquire("job-a")
    assert third > second and not lease.refresh("job-a", first) and lease.refresh("job-a", third)


def test_without_a_replica_nothing_waits(primary, monkeypatch):
    """Not a new behaviour (nothing waited before): the guard that WAIT costs nothing without replicas."""
    from runtime.once import Once

    client = redis.Redis(port=primary, decode_responses=True)
    client.config_resetstat()
    started = time.monotonic()
    for n in range(50):
        Once(f"job-{uuid.uuid4().hex}").run("paid", lambda n=n: n)
    assert time.monotonic() - started < 5
    stats = client.info("commandstats")
    assert "cmdstat_wait" not in stats
    assert stats.get("cmdstat_info", {}).get("calls", 0) <= 2    # the replica count, read once (and this test's)


def test_a_webhook_is_scheduled_only_once_a_replica_holds_the_end(primary, replica, monkeypatch):
    from config.settings import Settings
    from webhooks.delivery import DUE_KEY, Deliverer

    client = redis.Redis(port=primary, decode_responses=True)
    settings = Settings(webhook_secret="whsec_" + base64.b64encode(os.urandom(24)).decode(),
                        webhook_default_url="https://hooks.example.com/geoqueue")
    deliverer, ledger, job_id = Deliverer(client, settings), Ledger(client), f"job-{uuid.uuid4().hex}"
    deliverer.join()
    ledger.create(job_id, "immersity.disparity", {"image": "s3://b/i.jpg"})
    monkeypatch.setenv("GEOQUEUE_REDIS_REPLICA_WAIT_MS", "0")      # the end written without waiting (an older worker)
    resumer = lagging_for(replica, RESUME_AFTER)
    ledger.transition(job_id, "succeeded", result={"ok": 1})
    monkeypatch.setenv("GEOQUEUE_REDIS_REPLICA_WAIT_MS", "10000")
    deliverer.take_ended(block_ms=0)
    scheduled_at = time.monotonic()
    resumer.join()
    assert client.zscore(DUE_KEY, job_id) is not None
    assert scheduled_at >= resumer.resumed_at, "a webhook was scheduled for an end no replica held"
