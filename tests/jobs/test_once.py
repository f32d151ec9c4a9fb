"""The exactly-once helper against a real Redis: what an attempt does after an earlier call of the
same effect was cut off, or answered."""
from __future__ import annotations

import time
import uuid

import pytest

from vendors.errors import TransientError, VendorError


@pytest.fixture
def once_for(stack, monkeypatch):
    """Once for a fresh job, on the stack's Redis, as a worker process would have it."""
    from config import redis_client, settings
    from runtime import once

    monkeypatch.setenv("GEOQUEUE_REDIS_URL", stack.redis_url)
    settings.get_settings.cache_clear()
    redis_client.get_redis.cache_clear()
    yield lambda: once.Once(f"once-{uuid.uuid4().hex}")
    settings.get_settings.cache_clear()
    redis_client.get_redis.cache_clear()


def cut_off_after(seconds: float):
    def call():
        time.sleep(seconds)
        raise TransientError("read timed out")   # no answer: the vendor may still act on it
    return call


def test_a_call_cut_off_counts_as_in_flight_from_the_cut_not_from_its_start(once_for):
    from runtime.once import EffectInFlight

    effect, calls = once_for(), []
    with pytest.raises(TransientError):
        effect.run("paid", cut_off_after(1.2), lambda since: None, in_flight=1.0)
    # The call ran longer than the window; the vendor may still be working on it: not called again.
    with pytest.raises(EffectInFlight):
        effect.run("paid", lambda: calls.append(1), lambda since: None, in_flight=1.0)
    time.sleep(1.1)
    assert effect.run("paid", lambda: calls.append(1) or "made", lambda since: None, in_flight=1.0).result == "made"
    assert calls == [1]


@pytest.mark.parametrize("status, called_again", [(500, True), (429, True), (502, False), (504, False)])
def test_only_the_vendors_own_answer_clears_the_marker(once_for, status, called_again):
    from runtime.once import CutOff

    effect = once_for()

    def refused():
        raise VendorError("refused", status=status)

    with pytest.raises(VendorError):
        effect.run("create", refused)
    if called_again:
        assert effect.run("create", lambda: "created").result == "created"
    else:   # a gateway gave up on the vendor, which may have made it: found out, never made blindly
        with pytest.raises(CutOff):
            effect.run("create", lambda: "created")
