"""Prometheus metrics of the fleet that Flower lacks: queue depth per queue, jobs by vendor
and state (the ledger's counters) and webhooks due, read from Redis at scrape time. `python -m workers.metrics` serves them on
GEOQUEUE_METRICS_PORT; Flower's own /metrics covers workers and task events."""
from __future__ import annotations

import time
from collections import Counter

import redis
from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily

from geoqueue import jobs
from geoqueue.redis_url import connect
from geoqueue.routes import QUEUES
from workers.settings import get_settings
from workers.webhooks import DUE_KEY

# kombu keeps messages of priority p (1..9) in sub-lists named "<queue>\x06\x16<p>".
PRIORITY_SEPARATOR = "\x06\x16"
UNACKED_KEY = "unacked"  # kombu's hash of delivered, not yet acknowledged messages


class FleetCollector:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def queue_depths(self) -> dict[str, int]:
        pipe = self.redis.pipeline()
        for queue in QUEUES:
            pipe.llen(queue)
            for priority in range(1, 10):
                pipe.llen(f"{queue}{PRIORITY_SEPARATOR}{priority}")
        counts = pipe.execute()
        per_queue = len(counts) // len(QUEUES)
        return {q: sum(counts[i * per_queue:(i + 1) * per_queue]) for i, q in enumerate(QUEUES)}

    def job_counts(self) -> Counter:
        """The ledger's counters, kept by its scripts: one read whatever the number of jobs. Records
        whose time is up are dropped first, so the counts do not include them."""
        ledger = jobs.Ledger(self.redis)
        ledger.expire_due()
        return Counter(ledger.counts())

    def collect(self):
        depth = GaugeMetricFamily("geoqueue_queue_depth", "Messages waiting in a queue", labels=["queue"])
        for queue, count in self.queue_depths().items():
            depth.add_metric([queue], count)
        yield depth
        unacked = GaugeMetricFamily("geoqueue_unacked_messages", "Messages delivered to workers, not yet acknowledged")
        unacked.add_metric([], self.redis.hlen(UNACKED_KEY))
        yield unacked
        counts = self.job_counts()
        family = GaugeMetricFamily("geoqueue_jobs", "Jobs on record by vendor and state", labels=["vendor", "state"])
        for vendor in sorted({v for v, _ in counts}):
            for state in jobs.STATES:
                family.add_metric([vendor, state], counts.get((vendor, state), 0))
        yield family
        due = GaugeMetricFamily("geoqueue_webhooks_due", "Webhook deliveries waiting for their next attempt")
        due.add_metric([], self.redis.zcard(DUE_KEY))
        yield due


def main() -> None:
    settings = get_settings()
    REGISTRY.register(FleetCollector(connect(settings.redis_url, settings.redis_sentinel_master, decode_responses=True)))
    start_http_server(settings.metrics_port, addr=settings.metrics_address)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
