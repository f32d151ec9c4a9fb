"""Immersity's records in Redis: prices read from the vendor, and the credits jobs spend.

    gq:immersity:prices            JSON of /api/v1/prices, cached 10 minutes
    gq:budget:immersity:spent      credits spent by the fleet (with a budget set)
    gq:budget:immersity:reserved   hash job id -> credits a job may still spend
"""
from __future__ import annotations

import json
from collections.abc import Callable

from config.redis_client import get_ledger, get_redis
from config.settings import get_settings
from services.budget import CreditBudget

PRICES_KEY = "gq:immersity:prices"
PRICES_TTL_SECONDS = 600


class Credits:
    def __init__(self) -> None:
        self.redis = get_redis()
        self.budget = CreditBudget(self.redis, "immersity", get_settings().immersity_credit_budget)

    def prices(self, fetch: Callable[[], dict]) -> dict:
        cached = self.redis.get(PRICES_KEY)
        if cached is not None:
            return json.loads(cached)
        prices = fetch()
        self.redis.set(PRICES_KEY, json.dumps(prices), ex=PRICES_TTL_SECONDS)
        return prices

    def charge(self, job_id: str, cost: int) -> int:
        """Count a paid call's cost in the job's credits and the budget."""
        get_ledger().add_credits(job_id, cost)
        self.budget.spend(job_id, cost)
        return cost
