"""Fault kinds of the chaos run, in place of the Redis restart: a failover, begun 40% into the horizon
and ended in a later round, the other faults going on meanwhile.

- `SentinelFailover`: the primary is SIGKILLed; the sentinels promote the replica; the old primary
  is started again on its data once the new one serves, and it is over when the sentinels have
  made the old primary a replica that is in sync.
- `ManagedFailover`: as ElastiCache, Memorystore or Azure Cache fail over behind one DNS name: the
  Redis the fleet points at hands its role to its replica (`FAILOVER`: writes paused until the
  replica has every one, so nothing is lost) and follows it, answering `READONLY` to every write,
  for READ_ONLY_S; then it is primary again (`REPLICAOF NO ONE`) and the other follows it. The fleet
  keeps its one address throughout, as it keeps a DNS name."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from bench.chaos_run.redis_ha import LOCALHOST, ManagedSetup, RedisNode, SentinelSetup
from devstack.waiting import wait_until

if TYPE_CHECKING:
    from bench.chaos_run.faults import Chaos

READ_ONLY_S = 10.0
AT_HORIZON = 0.4


class Failover:
    """Begun once due (`begin`), then asked each round whether it is over (`over`)."""

    name = "failover"

    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.begun_at: float | None = None
        self.done = False
        self.figures: dict[str, float] = {}

    def delivered(self) -> bool:
        return self.done

    def strike_if_due(self, elapsed: float) -> None:
        if self.begun_at is None and elapsed >= AT_HORIZON * self.chaos.horizon_s:
            self.begun_at = time.monotonic()
            self.begin()
        elif self.begun_at is not None and not self.done:
            self.done = self.over(time.monotonic() - self.begun_at)

    def begin(self) -> None:
        raise NotImplementedError

    def over(self, since_begun: float) -> bool:
        raise NotImplementedError

    def summary(self) -> list[str]:
        return [self.figures_line() if self.done else f"{self.name} NOT made"]

    def figures_line(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SentinelFailover(Failover):
    name = "Sentinel failover"

    def __init__(self, chaos: Chaos, setup: SentinelSetup) -> None:
        super().__init__(chaos)
        self.setup = setup

    def begin(self) -> None:
        self.old = self.setup.node_at(self.setup.master_port())
        self.chaos.note(f"Redis: SIGKILL of the primary ({self.old.name}); the sentinels are to promote the replica")
        self.old.kill()
        new_port = wait_until(lambda: (port := self.setup.master_port()) != self.old.port and port, 60,
                              "the sentinels' promotion of the replica")
        self.new: RedisNode = self.setup.node_at(new_port)
        wait_until(lambda: (role := self.new.role()) and role[0] == "master", 30, "the promoted replica serving")
        self.figures["promotion_s"] = time.monotonic() - self.begun_at
        self.chaos.note(f"Redis: {self.new.name} promoted in {self.figures['promotion_s']:.1f} s; "
                        f"{self.old.name} started again")
        self.old.start()

    def over(self, since_begun: float) -> bool:
        if not self.old.follows(self.new):
            return False
        self.figures["rejoined_s"] = since_begun
        self.chaos.note(f"Redis: {self.old.name} is a replica of {self.new.name}")
        return True

    def figures_line(self) -> str:
        figures = self.figures
        return (f"Sentinel failover: the primary SIGKILLed, the replica promoted in {figures['promotion_s']:.1f} s, "
                f"the old primary a replica again {figures['rejoined_s']:.1f} s after the kill")


class ManagedFailover(Failover):
    name = "managed failover"

    def __init__(self, chaos: Chaos, setup: ManagedSetup) -> None:
        super().__init__(chaos)
        self.fleets, self.other = setup.primary, setup.replica

    def begin(self) -> None:
        self.chaos.note(f"Redis: the fleet's Redis hands its role to its replica, read-only for {READ_ONLY_S:g} s")
        self.command(self.fleets, "FAILOVER", "TO", LOCALHOST, self.other.port, "TIMEOUT", 20_000)
        wait_until(lambda: self.fleets.follows(self.other), 30, "the fleet's Redis a replica")
        self.figures["handover_s"] = time.monotonic() - self.begun_at
        self.chaos.note(f"Redis: the fleet's Redis is a replica ({self.figures['handover_s']:.1f} s); "
                        "writes answer READONLY")

    def over(self, since_begun: float) -> bool:
        if since_begun < self.figures["handover_s"] + READ_ONLY_S:
            return False
        self.command(self.fleets, "REPLICAOF", "NO", "ONE")
        self.figures["read_only_s"] = since_begun - self.figures["handover_s"]
        self.command(self.other, "REPLICAOF", LOCALHOST, self.fleets.port)
        self.chaos.note(f"Redis: the fleet's Redis primary again after {self.figures['read_only_s']:.1f} s read-only")
        return True

    @staticmethod
    def command(node: RedisNode, *args: object) -> None:
        client = node.client()
        try:
            client.execute_command(*args)
        finally:
            client.close()

    def figures_line(self) -> str:
        return (f"managed failover: the fleet's Redis a replica (READONLY) for {self.figures['read_only_s']:.1f} s "
                f"(handover {self.figures['handover_s']:.1f} s), then primary again")


def failover_for(chaos: Chaos, setup: ManagedSetup) -> Failover:
    if isinstance(setup, SentinelSetup):
        return SentinelFailover(chaos, setup)
    return ManagedFailover(chaos, setup)
