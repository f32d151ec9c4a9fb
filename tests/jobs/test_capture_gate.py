"""Immersal's capture gate (tasks/immersal/capture_gate.py) against a real Redis: one holder at a
time for as long as it works, and what a dead holder left pending goes to the next."""
from __future__ import annotations

import random
import threading
import time

import pytest


@pytest.fixture
def gate_for(stack, monkeypatch):
    """A capture gate of a fresh workspace (bank) on the stack's Redis, as a worker process would have it."""
    from config import redis_client, settings
    from tasks.immersal import capture_gate

    monkeypatch.setenv("GEOQUEUE_REDIS_URL", stack.redis_url)
    settings.get_settings.cache_clear()
    redis_client.get_redis.cache_clear()
    bank = random.randrange(10**6, 10**7)
    yield lambda **kwargs: capture_gate.CaptureGate(bank, **kwargs)
    settings.get_settings.cache_clear()
    redis_client.get_redis.cache_clear()


def test_a_holder_keeps_the_gate_past_its_ttl_while_it_works(gate_for):
    first_in = threading.Event()

    def hold_long() -> None:
        with gate_for(ttl_seconds=1.0).held(lambda pending: None):
            first_in.set()
            time.sleep(2.5)

    holder = threading.Thread(target=hold_long)
    holder.start()
    assert first_in.wait(5)
    asked = time.monotonic()
    with gate_for(ttl_seconds=1.0).held(lambda pending: None):
        waited = time.monotonic() - asked
    holder.join()
    assert waited > 2.0, f"the second holder came in after {waited:.2f} s, while the first still worked"


def test_the_next_holder_settles_what_a_dead_holder_left_pending(gate_for):
    dead = gate_for(ttl_seconds=0.5)
    dead.take()                                         # taken, never renewed nor released
    dead.capturing("job-1", "0:7")
    settled: list[dict] = []
    asked = time.monotonic()
    with gate_for(ttl_seconds=0.5).held(settled.append) as gate:
        waited = time.monotonic() - asked
        assert gate.pending() is None
    assert settled == [{"job": "job-1", "image": "0:7"}]
    assert 0.3 < waited < 3.0


def test_a_gate_held_longer_than_a_task_should_wait_sends_the_task_to_try_again_later(gate_for):
    from tasks.immersal.capture_gate import GateBusy

    assert gate_for(ttl_seconds=30).lease.acquire("a-slow-holder")
    with pytest.raises(GateBusy) as busy:
        with gate_for(ttl_seconds=30, wait_seconds=0.3).held(lambda pending: None):
            pass
    assert 25 < busy.value.retry_after <= 31


def test_a_holder_whose_gate_went_to_another_notes_no_capture_and_makes_none(gate_for):
    """A Redis failover lost the holder's grant: the new primary has the gate free, and another
    worker takes it. The first holder must not capture alongside it."""
    from tasks.immersal.capture_gate import GateLost

    with gate_for().held(lambda pending: None) as gate:
        gate.redis.delete(gate.lease.name, gate.lease.fence_key)     # the grant the failover lost
        other = gate_for()
        other.take()
        with pytest.raises(GateLost):
            gate.capturing("job-1", "0:1")
        assert gate.pending() is None
    assert other.lease.holder() == other.owner      # the first holder, leaving, did not free the other's gate
