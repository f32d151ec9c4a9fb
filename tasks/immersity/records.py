"""Immersity's records in Redis: prices read from the vendor, and the credits jobs spend.

    gq:immersity:prices            JSON of /api/v1/prices, cached 10 minutes
    gq:budget:immersity:spent      credits spent by the fleet (with a budget set)
    gq:budget:immersity:reserved   hash job id -> credits a job may still spend
    gq:job:<id>:charged            set of the calls already counted in a job's credits
"""
from __future__ import annotations

import json
from typing import Callable

from config.redis_client import get_ledger, get_redis
from config.settings import get_settings
from geoqueue.ledger_keys import job_key
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

    def charge_once(self, job_id: str, call: str, cost: int) -> bool:
        """Count a call's cost in the job's credits (and the budget) the first time it is seen."""
        if not self.redis.sadd(f"{job_key(job_id)}:charged", call):
            return False
        get_ledger().add_credits(job_id, cost)
        self.budget.spend(job_id, cost)
        return True
