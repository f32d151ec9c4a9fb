"""A fleet-wide credit budget: jobs reserve what they may spend before their first call."""
from __future__ import annotations

import redis

# spent + all reservations + this one must stay within the limit
_RESERVE = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local reserved = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do reserved = reserved + tonumber(v) end
local mine = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if ARGV[3] ~= '' and spent + reserved - mine + tonumber(ARGV[2]) > tonumber(ARGV[3]) then
  return {0, spent, reserved - mine}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return {1, spent, reserved - mine}
"""


class CreditBudget:
    def __init__(self, client: redis.Redis, vendor: str, limit: int | None) -> None:
        self.redis = client
        self.limit = limit
        self.spent_key = f"gq:budget:{vendor}:spent"
        self.reserved_key = f"gq:budget:{vendor}:reserved"
        self._reserve = client.register_script(_RESERVE)

    def reserve(self, job_id: str, amount: int) -> tuple[bool, int, int]:
        """(granted, spent so far, reserved by other jobs). Reserving again replaces the amount."""
        limit = "" if self.limit is None else str(self.limit)
        granted, spent, reserved = self._reserve(keys=[self.spent_key, self.reserved_key], args=[job_id, amount, limit])
        return bool(granted), int(spent), int(reserved)

    def spend(self, job_id: str, amount: int) -> None:
        """Move `amount` from the job's reservation to spent."""
        pipe = self.redis.pipeline()
        pipe.incrby(self.spent_key, amount)
        pipe.hincrby(self.reserved_key, job_id, -amount)
        pipe.execute()

    def release(self, job_id: str) -> None:
        self.redis.hdel(self.reserved_key, job_id)
