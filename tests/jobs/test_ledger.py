"""The ledger at scale's shape: lists read the index of their filters, counters follow every
transition, finished records expire with their index entries, every change is published.
A Redis database of its own on the stack's redis-server, so the fleet's records are untouched."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import redis

from geoqueue import GeoQueue, UnknownJob
from geoqueue.job_record import CANCELED, FAILED, RUNNING, STATES, SUCCEEDED
from geoqueue.ledger import Ledger
from geoqueue.ledger_keys import ENDED_STREAM, EXPIRING_KEY, event_channel, index_key, job_key
from geoqueue.ledger_upgrade import upgrade


@pytest.fixture
def ledger(stack) -> Ledger:
    client = redis.Redis.from_url(stack.redis_url.rsplit("/", 1)[0] + "/13", decode_responses=True)
    client.flushdb()
    yield Ledger(client, ttl=2)
    client.flushdb()


NAMES = ["immersity.batch", "immersal.build_map", "dronemapper.process_survey", "mapillary.harvest"]


def test_lists_read_the_index_of_their_filters_and_counts_follow_every_transition(ledger):
    # The records must outlive the test's run: with the fixture's 2 s, a slow machine saw finished ones expire.
    ledger = Ledger(ledger.redis)
    rng = random.Random(7)
    for n in range(200):
        ledger.create(f"j{n}", rng.choice(NAMES), {"n": n})
        for state in rng.sample(STATES[1:], k=rng.randint(0, 3)):
            ledger.transition(f"j{n}", state, force=rng.random() < 0.1)
    truth = {f"j{n}": ledger.get(f"j{n}") for n in range(200)}
    assert ledger.counts() == dict(Counter((j.vendor, j.state) for j in truth.values())) \
        | {key: 0 for key in ledger.counts() if key not in Counter((j.vendor, j.state) for j in truth.values())}
    for state in STATES:
        for vendor in (None, "immersity", "mapillary"):
            expected = [j.id for j in sorted(truth.values(), key=lambda j: -j.created)
                        if j.state == state and (vendor is None or j.vendor == vendor)]
            assert [j.id for j in ledger.recent(500, state=state, vendor=vendor)] == expected
            if vendor:  # the index holds exactly those
                assert ledger.redis.zcard(index_key(vendor, state)) == len(expected)


def test_finished_records_expire_with_their_index_entries(ledger):
    ledger.create("done", "immersity.batch", {})
    ledger.create("open", "immersity.batch", {})
    ledger.transition("done", SUCCEEDED, result={"ok": True})
    ledger.record_delivery("done", {"attempt": 1, "outcome": "delivered"})
    assert 0 < ledger.redis.ttl(job_key("done")) <= 2 and ledger.redis.ttl(job_key("open")) == -1
    time.sleep(2.2)
    assert ledger.get("done") is None  # Redis expired the record itself
    ledger.expire_due()
    assert ledger.counts()[("immersity", "succeeded")] == 0 and ledger.counts()[("immersity", "queued")] == 1
    left = {key: ledger.redis.zrange(key, 0, -1) for key in ledger.redis.scan_iter("gq:jobs*")
            if ledger.redis.type(key) == "zset"}
    assert all("done" not in ids for ids in left.values()), left
    assert [j.id for j in ledger.recent()] == ["open"]
    assert not ledger.redis.exists(f"{job_key('done')}:deliveries")


def test_every_key_of_a_job_expires_with_it_and_late_writes_go_with_the_sweep(ledger):
    companions = (":items", ":finished", ":console", ":deliveries")

    def write_companions(job_id: str) -> list[str]:
        base = job_key(job_id)
        ledger.redis.hset(f"{base}:items", "a.jpg", "{}")
        ledger.redis.sadd(f"{base}:finished", "a.jpg")
        ledger.redis.rpush(f"{base}:console", "line")
        ledger.redis.rpush(f"{base}:deliveries", "{}")
        return [base] + [base + suffix for suffix in companions]

    ledger.create("ends", "immersity.batch", {})
    keys = write_companions("ends")
    ledger.transition("ends", SUCCEEDED, result={})
    assert all(0 < ledger.redis.ttl(key) <= 2 for key in keys), {key: ledger.redis.ttl(key) for key in keys}
    ledger.create("late", "immersity.batch", {})
    ledger.transition("late", FAILED, error={"type": "VendorError", "message": "no"})
    late = write_companions("late")[1:]  # written after the end: no expiry of their own
    assert all(ledger.redis.ttl(key) == -1 for key in late)
    time.sleep(2.2)
    assert ledger.expire_due() == 2
    assert not any(ledger.redis.exists(key) for key in keys + late)


def test_two_apps_may_use_one_id_and_each_sees_only_its_own_jobs(stack, ledger):
    """Job ids are per app: `order-4711` of app-a and of app-b are two records, each listed, read,
    expired and found by its own app only (the default app's ids are stored as they are)."""
    url = stack.redis_url.rsplit("/", 1)[0] + "/13"
    apps = {app: GeoQueue(url, app=app) for app in ("app-a", "app-b", "default")}
    for app, params in (("app-a", {"n": 1}), ("app-b", {"n": 2}), ("default", {"n": 3})):
        ledger.create(apps[app].stored("order-4711"), "immersity.batch", params)
    ledger.record_item(apps["app-a"].stored("order-4711"), "a.jpg", {"ok": True})
    for app, n in (("app-a", 1), ("app-b", 2), ("default", 3)):
        job = apps[app].status("order-4711")
        assert (job.id, job.app, job.params) == ("order-4711", app, {"n": n})
        assert [(j.id, j.params) for j in apps[app].list()] == [("order-4711", {"n": n})]
    assert apps["app-a"].items("order-4711") == {"a.jpg": {"ok": True}} and apps["app-b"].items("order-4711") == {}
    for app in ("app-b", "default"):  # another app's stored id names nothing of this app
        with pytest.raises(UnknownJob):
            apps[app].status("app-a.order-4711")
    assert sorted(j.id for j in ledger.recent(10)) == ["app-a.order-4711", "app-b.order-4711", "order-4711"]
    ledger.transition("app-b.order-4711", SUCCEEDED, result={})
    time.sleep(2.2)
    assert ledger.expire_due() == 1
    assert apps["app-b"].list() == [] and [j.id for j in apps["app-a"].list()] == ["order-4711"]
    assert ledger.redis.zcard(index_key("immersity", SUCCEEDED, "app-b")) == 0


def test_the_record_ttl_is_the_documented_setting():
    def ttl(**env: str) -> int:
        read = subprocess.run([sys.executable, "-c", "from geoqueue import ledger; print(ledger.RECORD_TTL_SECONDS)"],
                              env={"PATH": "", **env}, capture_output=True, text=True)
        return int(read.stdout)

    from config.settings import Settings

    assert ttl(GEOQUEUE_RESULT_EXPIRES="4321") == 4321
    assert ttl() == Settings.model_fields["result_expires"].default  # the producer's default is the fleet's


def test_every_change_is_published_and_every_end_enters_the_stream(ledger):
    events = ledger.redis.pubsub(ignore_subscribe_messages=True)
    events.subscribe(event_channel("e1"))
    ledger.create("e1", "immersity.batch", {})
    ledger.progress("e1", "images", 0, 2)
    ledger.transition("e1", RUNNING)
    ledger.record_item("e1", "a.jpg", {"ok": True})
    ledger.add_credits("e1", 10)
    ledger.transition("e1", FAILED, error={"type": "VendorError", "message": "no"})
    assert not ledger.transition("e1", SUCCEEDED)  # a finished job stays finished, and says nothing
    seen, quiet_until = [], time.monotonic() + 2
    while time.monotonic() < quiet_until:
        message = events.get_message(timeout=0.2)
        if message is not None:
            seen.append(json.loads(message["data"]))
    assert [(e["state"], e["phase"], e["done"], e["total"], e["credits"]) for e in seen] == [
        ("queued", "queued", 0, 0, 0), ("queued", "images", 0, 2, 0), ("running", "running", 0, 2, 0),
        ("running", "running", 1, 2, 0), ("running", "running", 1, 2, 10), ("failed", "failed", 1, 2, 10)]
    assert seen[-1]["error"] == {"type": "VendorError", "message": "no"}
    assert [fields for _, fields in ledger.redis.xrange(ENDED_STREAM)] == [{"id": "e1", "state": "failed"}]


def test_wait_and_watch_wake_on_events(stack, ledger):
    queue = GeoQueue(stack.redis_url.rsplit("/", 1)[0] + "/13")
    ledger.create("w1", "immersity.batch", {})

    def work() -> None:
        time.sleep(0.3)
        ledger.progress("w1", "images", 1, 2)
        ledger.transition("w1", SUCCEEDED, result={"images": 2})

    threading.Thread(target=work).start()
    # The safety re-read is 60 s away: only the events can end these before the timeout.
    seen = [(job.state, job.phase, job.done) for job in queue.watch("w1", poll=60)]
    assert seen == [("queued", "queued", 0), ("queued", "images", 1), ("succeeded", "succeeded", 1)]
    assert queue.wait("w1", timeout=5, poll=60).result == {"images": 2}
    ledger.create("w2", "immersity.batch", {})
    threading.Thread(target=lambda: (time.sleep(0.3), ledger.transition("w2", CANCELED))).start()
    with pytest.raises(Exception) as failed:
        queue.wait("w2", timeout=20, poll=60)
    assert type(failed.value).__name__ == "JobFailed" and failed.value.job.state == "canceled"


def test_a_ledger_written_before_the_indexes_is_upgraded_once(ledger):
    client = ledger.redis
    for n, (name, state) in enumerate([("immersity.batch", "failed"), ("immersal.build_map", "running"),
                                       ("immersity.batch", "succeeded")]):
        client.hset(job_key(f"old{n}"), mapping={"id": f"old{n}", "name": name, "vendor": name.split(".")[0],
                                                       "state": state, "created": 1000 + n, "params": "{}"})
        client.zadd("gq:jobs", {f"old{n}": 1000 + n})
        if state != "running":
            client.expire(job_key(f"old{n}"), 3600)
    assert upgrade(client) == 3
    assert not client.exists("gq:jobs")
    assert [j.id for j in ledger.recent(10, state="failed")] == ["old0"]
    assert [j.id for j in ledger.recent(10)] == ["old2", "old1", "old0"]
    assert ledger.counts() == {("immersity", "failed"): 1, ("immersal", "running"): 1, ("immersity", "succeeded"): 1}
    assert sorted(client.zrange(EXPIRING_KEY, 0, -1)) == ["immersity/failed/old0", "immersity/succeeded/old2"]
