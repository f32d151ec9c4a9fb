"""Redis failovers, both kinds (bench/chaos.py --failover, small batch): a Sentinel failover (the
primary SIGKILLed, the replica promoted, the old primary back as a replica) and a managed one (the
fleet's Redis a replica answering READONLY for 10 s, then primary again, at one address), each in
the middle of the mixed four-vendor batch with worker kills, vendor errors and token expiries.
Every job right, no duplicate vendor effect, none lost, and no process of the fleet dead."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.chaos_run.redis_ha import LOCALHOST, ManagedSetup
from config.redis_client import redis_retry
from devstack.waiting import wait_until
from geoqueue.redis_url import connect
from tests.conftest import EMPTY_PATH

CHAOS = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def test_a_lua_script_write_waits_out_a_primary_turned_replica(tmp_path):
    """The fleet's Redis client (config/redis_client.py) when its Redis becomes a replica for 2 s, as in
    a managed failover: a write from a Lua script (the ledger's, the exactly-once markers', the
    leases' are scripts) and a plain write go through once it is primary again, instead of failing
    with -READONLY."""
    setup = ManagedSetup(tmp_path)
    setup.start()
    client = connect(setup.url, decode_responses=True, retry=redis_retry(30))
    fleets = setup.primary.client()
    try:
        count = client.register_script("return redis.call('INCR', KEYS[1])")
        assert count(keys=["gq:test:count"]) == 1
        fleets.execute_command("FAILOVER", "TO", LOCALHOST, setup.replica.port)
        wait_until(lambda: setup.primary.follows(setup.replica), 30, "the fleet's Redis a replica")
        promote = threading.Timer(2.0, fleets.execute_command, ("REPLICAOF", "NO", "ONE"))
        promote.start()
        started = time.monotonic()
        assert count(keys=["gq:test:count"]) == 2
        assert client.set("gq:test:plain", "written")
        assert time.monotonic() - started > 1.0          # it waited for the Redis to be primary again
        promote.join()
        assert client.get("gq:test:plain") == "written"
    finally:
        client.close()
        fleets.close()
        setup.stop()


def run_small_failover(kind: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOQUEUE_")} | {"PATH": EMPTY_PATH}
    finished = subprocess.run([sys.executable, str(CHAOS), "--small", "--no-baseline", "--failover", kind],
                              cwd=CHAOS.parent.parent, env=env, capture_output=True, text=True, timeout=540)
    print(finished.stdout[-6000:], finished.stderr[-3000:])
    assert finished.returncode == 0, finished.stdout[-3000:]
    assert "goal met" in finished.stdout
    assert "MISSED" not in finished.stdout and "NOT" not in finished.stdout    # every fault was delivered
    return finished.stdout


@pytest.mark.slow
def test_a_sentinel_failover_mid_batch_meets_the_goal():
    """One job of each kind on a primary, a replica and three sentinels; the primary SIGKILLed mid-batch
    with 3 worker kills, 20% 5xx and 5% 429 and tokens that stop working."""
    out = run_small_failover("sentinel")
    assert "Sentinel failover: the primary SIGKILLed, the replica promoted in" in out


@pytest.mark.slow
def test_a_managed_failover_mid_batch_meets_the_goal():
    """One job of each kind on the Redis at one address, which turns replica (READONLY) for 10 s
    mid-batch and then primary again, with the same worker kills and vendor faults."""
    out = run_small_failover("managed")
    assert "managed failover: the fleet's Redis a replica (READONLY) for 10" in out
