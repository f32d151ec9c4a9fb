"""A fault kind of the chaos run: tokens that stop working, `batch.token_expiries` times spread
evenly over the horizon, for every vendor whose tokens do: Immersity's expire, Immersal's are
revoked, DroneMapper's expire as its clock jumps ahead (Mapillary's do not expire)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.chaos_run.faults import Chaos

CLOCK_JUMP_S = 7 * 3600            # past the 6 h lifetime of a DroneMapper token


class TokenExpiries:
    def __init__(self, chaos: Chaos) -> None:
        self.stack, self.batch, self.note = chaos.stack, chaos.batch, chaos.note
        self.every = chaos.horizon_s / (self.batch.token_expiries + 1)
        self.expiries = 0

    def delivered(self) -> bool:
        return self.expiries >= self.batch.token_expiries

    def strike_if_due(self, elapsed: float) -> None:
        if self.expiries < self.batch.token_expiries and elapsed >= self.every * (self.expiries + 1):
            self.expire_tokens()

    def expire_tokens(self) -> None:
        self.expiries += 1
        self.stack.sandbox("POST", "/_sandbox/config/immersity", json={"expire_issued_tokens": True})
        self.stack.sandbox("POST", "/_sandbox/config/immersal", json={"revoke_tokens": True})
        self.stack.sandbox("POST", "/_sandbox/config/dronemapper",
                           json={"clock_offset_s": CLOCK_JUMP_S * self.expiries})
        self.note("tokens: Immersity's expired, Immersal's revoked, DroneMapper's expired (its clock jumped 7 h)")

    def summary(self) -> list[str]:
        return [(f"tokens stopped working {self.expiries} times (Immersity's expired, Immersal's revoked, "
                 "DroneMapper's expired)")]

    def close(self) -> None:
        pass
