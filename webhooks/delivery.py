"""Webhooks when a job ends: `python -m webhooks.delivery`, one or more per fleet.

The ledger's transition script appends every job end to the stream `gq:ended` in the same step
that ends the job, so no end is lost however a process dies. A deliverer reads the stream in a
consumer group (an entry a dead deliverer had taken is claimed again after a minute), turns each
entry into a delivery scheduled in Redis, and posts the job's record, signed per Standard
Webhooks with its app's secret (GEOQUEUE_WEBHOOK_APP_SECRETS, else the fleet's), until the receiver
answers 2xx or the retry window closes. Each attempt and its outcome is kept on the job
(`Ledger.deliveries`). The webhook-id is drawn at random for each message (a job's end), so nobody
can know it before the post, and is the same on every attempt, so a receiver can drop repeats:
delivery is at least once.

    gq:webhooks:due        sorted set: job id -> time of its next attempt (a taken one is leased ahead)
    gq:webhook:<id>        hash: url, msg_id, entry (the end it is for), ended (epoch s), attempts
"""
from __future__ import annotations

import json
import logging
import secrets
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis
import requests
from requests_hardened import Config, Manager
from requests_hardened.ip_filter import InvalidIPAddress
from standardwebhooks import Webhook

from config.apps import AppAccess
from config.redis_client import get_redis
from config.settings import Settings, get_settings
from geoqueue import replicas
from geoqueue.backoff import backoff, equal_jitter
from geoqueue.callback_url import shown_url
from geoqueue.job_record import Job, app_of
from geoqueue.ledger import Ledger
from geoqueue.ledger_keys import ENDED_STREAM
from webhooks.destinations import NOT_PUBLIC, CallbackRefused, check_destination

log = logging.getLogger("geoqueue.webhooks")

GROUP = "webhooks"
DUE_KEY = "gq:webhooks:due"
RECLAIM_IDLE_MS = 60_000      # a stream entry taken by a deliverer that died is taken again after this
PARALLEL = 8                  # posts in flight at once per deliverer

# Take a due delivery: lease it `lease` seconds ahead so no other deliverer posts it meanwhile.
_TAKE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2] + ARGV[3], ARGV[1])
return 1
"""


def state_key(job_id: str) -> str:
    return f"gq:webhook:{job_id}"


def retry_delay(attempts: int, settings: Settings) -> float:
    """Seconds before the next attempt after `attempts` failures: doubling, with jitter, capped.

    >>> s = Settings(webhook_backoff_initial=5, webhook_backoff_max=60)
    >>> all(2.5 <= retry_delay(1, s) <= 5 for _ in range(100)), retry_delay(20, s) <= 60
    (True, True)
    """
    return backoff(attempts - 1, settings.webhook_backoff_initial, settings.webhook_backoff_max, None, equal_jitter)


def payload(job: Job) -> str:
    """What a receiver gets: the job's record as its app sees it (its own id; s3:// references and
    typed errors only), not where it is posted. Standard Webhooks' envelope: type, timestamp, data."""
    data = job.seen_by_its_app().to_dict()
    del data["callback_url"]
    return json.dumps({"type": f"job.{job.state}", "timestamp": datetime.fromtimestamp(job.updated, UTC)
                       .isoformat().replace("+00:00", "Z"), "data": data}, separators=(",", ":"))


def posting_session(allow_private: bool) -> requests.Session:
    """A session that connects to the address it checked: check_destination resolves the host once,
    and a host whose next answer is an internal address (DNS rebinding) would get the post there;
    this session resolves once more, refuses a non-public address and connects to that very one."""
    if allow_private:
        return requests.Session()
    return Manager(Config(ip_filter_enable=True, ip_filter_allow_loopback_ips=False, never_redirect=True,
                          default_timeout=None)).get_session()


class Deliverer:
    def __init__(self, client: redis.Redis, settings: Settings, name: str | None = None) -> None:
        if settings.webhook_secret is None:
            raise SystemExit("refusing to start the webhook deliverer without GEOQUEUE_WEBHOOK_SECRET (whsec_...)")
        self.redis = client
        self.settings = settings
        self.ledger = Ledger(client, ttl=settings.result_expires)
        self.access = AppAccess(settings)
        self.signers: dict[str, Webhook] = {}
        self.name = name or f"{socket.gethostname()}-{id(self):x}"
        self._take = client.register_script(_TAKE)

    # --- from the stream of job ends to scheduled deliveries ---
    def join(self) -> None:
        try:
            # From the stream's start: ends recorded while no deliverer ran are delivered too
            # (the stream holds only ends written by a ledger that publishes them).
            self.redis.xgroup_create(ENDED_STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def take_ended(self, block_ms: int) -> int:
        """Schedule a delivery for each job end not yet taken; how many entries were read."""
        # [next id, entries] (Redis 6.2), plus the ids of deleted entries (7.0 and later)
        claimed = self.redis.xautoclaim(ENDED_STREAM, GROUP, self.name, RECLAIM_IDLE_MS, "0-0", count=100)[1]
        fresh = self.redis.xreadgroup(GROUP, self.name, {ENDED_STREAM: ">"}, count=100, block=block_ms or None)
        entries = claimed + [entry for _, stream_entries in fresh for entry in stream_entries]
        if entries:     # no webhook for an end a Redis failover could still lose (geoqueue/replicas.py)
            replicas.barrier(self.redis, "the job ends read for webhooks")
        for entry_id, fields in entries:
            if fields:  # a claimed entry trimmed from the stream comes back empty
                self.schedule(fields["id"], fields["state"], int(entry_id.split("-")[0]) / 1000, entry_id)
            self.redis.xack(ENDED_STREAM, GROUP, entry_id)
        return len(entries)

    def schedule(self, job_id: str, state: str, ended: float, entry: str | None = None) -> None:
        """A delivery of the job's end `entry` (its stream entry), under a webhook-id of its own."""
        job = self.ledger.get(job_id)
        url = (job.callback_url if job else "") or self.settings.webhook_default_url
        if job is None or not url:
            return  # at least one attempt, however late: the window bounds the retries only
        key, entry = state_key(job_id), entry or f"{state}@{ended}"
        if self.redis.hget(key, "entry") == entry:
            return  # a redelivered entry: already scheduled, under its webhook-id
        msg_id = "msg_" + secrets.token_hex(16)  # random: a forger cannot know it ahead of the real post
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={"url": url, "msg_id": msg_id, "entry": entry, "ended": ended, "attempts": 0})
        pipe.expire(key, self.settings.webhook_retry_window + 3600)
        pipe.zadd(DUE_KEY, {job_id: time.time()})
        pipe.execute()

    # --- posting ---
    def due(self, limit: int = 50) -> list[str]:
        now = time.time()
        lease = self.settings.webhook_timeout + 30
        candidates = self.redis.zrangebyscore(DUE_KEY, "-inf", now, start=0, num=limit)
        return [job_id for job_id in candidates if self._take(keys=[DUE_KEY], args=[job_id, now, lease])]

    def attempt(self, job_id: str) -> dict[str, Any] | None:
        """Post the job's record once; records the attempt on the job and schedules the next, if any."""
        state = self.redis.hgetall(state_key(job_id))
        job = self.ledger.get(job_id)
        if not state or job is None:
            self.redis.zrem(DUE_KEY, job_id)
            return None
        number = int(state["attempts"]) + 1
        started = time.time()
        outcome: dict[str, Any] = {"attempt": number, "at": started, "url": shown_url(state["url"]),
                                   "webhook_id": state["msg_id"]}
        retry = True
        try:
            check_destination(state["url"], self.settings.webhook_allow_private)
            body = payload(job)
            signature = self.signer(job).sign(state["msg_id"], datetime.fromtimestamp(int(started), UTC), body)
            with posting_session(self.settings.webhook_allow_private) as session:
                response = session.post(state["url"], data=body.encode(), timeout=self.settings.webhook_timeout,
                                        allow_redirects=False, headers={
                                            "content-type": "application/json", "user-agent": "geoqueue-webhooks",
                                            "webhook-id": state["msg_id"], "webhook-timestamp": str(int(started)),
                                            "webhook-signature": signature})
            outcome["status"] = response.status_code
            outcome["outcome"] = "delivered" if 200 <= response.status_code < 300 else "failed"
        except CallbackRefused as exc:
            outcome.update(outcome="refused", error=str(exc))
            retry = False
        except InvalidIPAddress:
            host = urlsplit(state["url"]).hostname
            outcome.update(outcome="refused", error=f"callback_url: {host} resolved to {NOT_PUBLIC} when "
                                                    "connecting")
            retry = False
        except requests.RequestException as exc:
            outcome.update(outcome="failed", error=type(exc).__name__)
        outcome["ms"] = round((time.time() - started) * 1000, 1)
        if outcome["outcome"] == "failed" and retry:
            next_at = time.time() + retry_delay(number, self.settings)
            if next_at <= float(state["ended"]) + self.settings.webhook_retry_window:
                outcome["next_attempt"] = next_at
                self.redis.zadd(DUE_KEY, {job_id: next_at})
            else:
                outcome["outcome"] = "gave up"
        if "next_attempt" not in outcome:
            self.redis.zrem(DUE_KEY, job_id)
        self.redis.hset(state_key(job_id), "attempts", number)
        self.ledger.record_delivery(job_id, outcome)
        log.info("webhook %s attempt %d to %s: %s %s", state["msg_id"], number, outcome["url"], outcome["outcome"],
                 outcome.get("status", outcome.get("error", "")))
        return outcome

    def signer(self, job: Job) -> Webhook:
        """The signer of the job's app: its own secret, else the fleet's."""
        secret = self.access.webhook_secret(app_of(job.id)) or ""
        if secret not in self.signers:
            self.signers[secret] = Webhook(secret)
        return self.signers[secret]

    # --- the loop ---
    def run(self, stopping: list) -> None:
        self.join()
        with ThreadPoolExecutor(PARALLEL) as pool:
            last_expiry = 0.0
            while not stopping:
                try:
                    taken = self.due()
                    list(pool.map(self.attempt, taken))
                    self.take_ended(block_ms=0 if taken else 500)
                    if time.time() - last_expiry > 60:
                        self.ledger.expire_due()
                        last_expiry = time.time()
                except redis.ConnectionError as exc:  # Redis restarts are routine: wait and go on
                    log.warning("redis unavailable (%s); retrying", exc)
                    time.sleep(1)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping: list = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    deliverer = Deliverer(get_redis(), get_settings())
    log.info("delivering webhooks as %s", deliverer.name)
    deliverer.run(stopping)


if __name__ == "__main__":
    main()
