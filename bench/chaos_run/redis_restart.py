"""A fault kind of the chaos run: the embedded redis-server SIGKILLed once, 40% into the horizon, and
started again on the same data after REDIS_OUTAGE_S."""
from __future__ import annotations

import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.chaos_run.faults import Chaos

REDIS_OUTAGE_S = 5.0


class RedisRestart:
    def __init__(self, chaos: Chaos) -> None:
        self.chaos, self.stack = chaos, chaos.stack
        self.restarted = False

    def delivered(self) -> bool:
        return self.restarted

    def strike_if_due(self, elapsed: float) -> None:
        if not self.restarted and elapsed >= 0.4 * self.chaos.horizon_s:
            self.restart_redis()

    def restart_redis(self) -> None:
        self.chaos.note(f"Redis: SIGKILL, {REDIS_OUTAGE_S:g} s down")
        self.stack.restart_redis(signal.SIGKILL, outage=REDIS_OUTAGE_S)
        self.restarted = True
        self.chaos.note("Redis: back")

    def summary(self) -> list[str]:
        return [f"Redis restarted {'once' if self.restarted else 'NOT'} (SIGKILL, {REDIS_OUTAGE_S:g} s down)"]

    def close(self) -> None:
        pass
