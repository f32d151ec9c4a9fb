"""Prometheus metrics of the fleet that Flower lacks: queue depth per queue, jobs by vendor
and state (the ledger's counters) and webhooks due, read from Redis at scrape time.
`python -m workers.metrics` serves them on GEOQUEUE_METRICS_PORT; Flower's own /metrics covers workers
and task events."""
from __future__ import annotations

import time
from collections import Counter

import redis
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily

from config.settings import get_settings
from geoqueue.job_record import QUEUED, RUNNING, STATES, WAITING
from geoqueue.ledger import Ledger
from geoqueue.redis_url import connect
from runtime import liveness
from runtime.liveness import POLLERS
from webhooks.delivery import DUE_KEY
from workers import queues


class FleetCollector:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def job_counts(self) -> Counter:
        """The ledger's counters, kept by its scripts: one read whatever the number of jobs. Records
        whose time is up are dropped first, so the counts do not include them."""
        ledger = Ledger(self.redis)
        ledger.expire_due()
        return Counter(ledger.counts())

    def collect(self):
        depth = GaugeMetricFamily("geoqueue_queue_depth", "Messages waiting in a queue", labels=["queue"])
        for queue, count in queues.depths(self.redis).items():
            depth.add_metric([queue], count)
        yield depth
        unacked = GaugeMetricFamily("geoqueue_unacked_messages", "Messages delivered to workers, not yet acknowledged")
        unacked.add_metric([], self.redis.hlen(queues.UNACKED_KEY))
        yield unacked
        counts = self.job_counts()
        family = GaugeMetricFamily("geoqueue_jobs", "Jobs on record by vendor and state", labels=["vendor", "state"])
        for vendor in sorted({v for v, _ in counts}):
            for state in STATES:
                family.add_metric([vendor, state], counts.get((vendor, state), 0))
        yield family
        due = GaugeMetricFamily("geoqueue_webhooks_due", "Webhook deliveries waiting for their next attempt")
        due.add_metric([], self.redis.zcard(DUE_KEY))
        yield due
        yield from self.liveness()

    def liveness(self):
        """What a dead beat, a stuck poller or a stuck queue shows as."""
        last = GaugeMetricFamily("geoqueue_last_run_timestamp_seconds",
                                 "When a periodic task (a poller, the sweeper) last finished a run", labels=["task"])
        for task, at in sorted(liveness.last_runs().items()):
            last.add_metric([task], at)
        yield last
        oldest = GaugeMetricFamily("geoqueue_oldest_job_age_seconds", "Age of the oldest job in a state",
                                   labels=["state"])
        ledger, now = Ledger(self.redis), time.time()
        for state in (QUEUED, RUNNING, WAITING):
            found = ledger.oldest(state, limit=1)
            oldest.add_metric([state], now - found[0].created if found else 0.0)
        yield oldest
        unpolled = GaugeMetricFamily("geoqueue_waiting_unpolled_jobs",
                                     "Jobs waiting on a vendor that its poller has not looked at lately",
                                     labels=["vendor"])
        for vendor in POLLERS:
            waiting = list(ledger.recent(limit=10_000, state=WAITING, vendor=vendor))
            unpolled.add_metric([vendor], len(liveness.unpolled(waiting, get_settings().unpolled_after)))
        yield unpolled


def main() -> None:
    settings = get_settings()
    redis = connect(settings.redis_url, settings.redis_sentinel_master, decode_responses=True)
    REGISTRY.register(FleetCollector(redis))
    start_http_server(settings.metrics_port, addr=settings.metrics_address)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
