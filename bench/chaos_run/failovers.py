"""Fault kinds of the chaos run, in place of the Redis restart: a failover, 40% into the horizon.

- `SentinelFailover`: the primary is SIGKILLed; the sentinels promote the replica; the old primary
  is started again on its data once the new one serves, and the sentinels make it a replica.
- `ManagedFailover`: as ElastiCache, Memorystore or Azure Cache fail over behind one DNS name: the
  Redis the fleet points at hands its role to its replica (`FAILOVER`: writes paused until the
  replica has every one, so nothing is lost) and follows it, answering `READONLY` to every write,
  for READ_ONLY_S; then it is primary again (`REPLICAOF NO ONE`) and the other follows it. The fleet
  keeps its one address throughout, as it keeps a DNS name."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bench.chaos_run.redis_ha import LOCALHOST, ManagedSetup, SentinelSetup
from devstack.waiting import wait_until

if TYPE_CHECKING:
    from bench.chaos_run.faults import Chaos

READ_ONLY_S = 10.0
AT_HORIZON = 0.4


class Failover:
    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.done = False
        self.figures: dict[str, float] = {}

    def delivered(self) -> bool:
        return self.done

    def strike_if_due(self, elapsed: float) -> None:
        if not self.done and elapsed >= AT_HORIZON * self.chaos.horizon_s:
            self.fail_over()
            self.done = True

    def fail_over(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SentinelFailover(Failover):
    def __init__(self, chaos: Chaos, setup: SentinelSetup) -> None:
        super().__init__(chaos)
        self.setup = setup

    def fail_over(self) -> None:
        old = self.setup.node_at(self.setup.master_port())
        self.chaos.note(f"Redis: SIGKILL of the primary ({old.name}); the sentinels are to promote the replica")
        killed = time.monotonic()
        old.kill()
        new_port = wait_until(lambda: (port := self.setup.master_port()) != old.port and port, 60,
                              "the sentinels' promotion of the replica")
        new = self.setup.node_at(new_port)
        wait_until(lambda: (role := new.role()) and role[0] == "master", 30, "the promoted replica serving")
        self.figures["promotion_s"] = time.monotonic() - killed
        self.chaos.note(f"Redis: {new.name} promoted in {self.figures['promotion_s']:.1f} s; {old.name} started again")
        old.start()
        wait_until(lambda: old.follows(new), 90, f"{old.name} back as a replica", interval=0.3)
        self.figures["rejoined_s"] = time.monotonic() - killed
        self.chaos.note(f"Redis: {old.name} is a replica of {new.name}")

    def summary(self) -> list[str]:
        if not self.done:
            return ["Sentinel failover NOT made"]
        figures = self.figures
        return [(f"Sentinel failover: the primary SIGKILLed, the replica promoted in {figures['promotion_s']:.1f} s, "
                 f"the old primary a replica again {figures['rejoined_s']:.1f} s after the kill")]


class ManagedFailover(Failover):
    def __init__(self, chaos: Chaos, setup: ManagedSetup) -> None:
        super().__init__(chaos)
        self.setup = setup

    def fail_over(self) -> None:
        fleets, other = self.setup.primary, self.setup.replica
        self.chaos.note(f"Redis: the fleet's Redis hands its role to its replica, read-only for {READ_ONLY_S:g} s")
        asked = time.monotonic()
        client = fleets.client()
        try:
            client.execute_command("FAILOVER", "TO", LOCALHOST, other.port, "TIMEOUT", 20_000)
            wait_until(lambda: fleets.follows(other), 30, "the fleet's Redis a replica")
            demoted = time.monotonic()
            self.figures["handover_s"] = demoted - asked
            self.chaos.note(f"Redis: the fleet's Redis is a replica ({self.figures['handover_s']:.1f} s); "
                            "writes answer READONLY")
            time.sleep(max(0.0, demoted + READ_ONLY_S - time.monotonic()))
            client.execute_command("REPLICAOF", "NO", "ONE")
            self.figures["read_only_s"] = time.monotonic() - demoted
        finally:
            client.close()
        other_client = other.client()
        try:
            other_client.execute_command("REPLICAOF", LOCALHOST, fleets.port)
        finally:
            other_client.close()
        self.chaos.note(f"Redis: the fleet's Redis primary again after {self.figures['read_only_s']:.1f} s read-only")

    def summary(self) -> list[str]:
        if not self.done:
            return ["managed failover NOT made"]
        return [(f"managed failover: the fleet's Redis a replica (READONLY) for {self.figures['read_only_s']:.1f} s "
                 f"(handover {self.figures['handover_s']:.1f} s), then primary again")]


def failover_for(chaos: Chaos, setup: ManagedSetup) -> Failover:
    if isinstance(setup, SentinelSetup):
        return SentinelFailover(chaos, setup)
    return ManagedFailover(chaos, setup)
