"""Webhooks when a job ends, received by a real HTTP server that verifies Standard Webhooks
signatures with the fleet's secret."""
from __future__ import annotations

import re
import time

import pytest

from devstack.commands import local_argv
from devstack.processes import PROCESSES
from devstack.webhook_receiver import Receiver
from tests.conftest import wait_until
from tests.http_helpers import api, other_api
from tests.inputs import prefix_of, put_images
from webhooks.destinations import CallbackRefused, check_destination


@pytest.fixture
def receiver(stack):
    receiver = Receiver(stack.webhook_secret)
    yield receiver
    receiver.close()


def deliveries(stack, job_id: str, count: int, timeout: float = 30) -> list[dict]:
    """The job's webhook deliveries, once there are `count` of them."""
    def enough() -> list[dict]:
        found = api(stack, "GET", f"/v1/jobs/{job_id}").json()["webhook_deliveries"]
        return found if len(found) >= count else []

    return wait_until(enough, timeout, f"{count} webhook deliveries of job {job_id}")


def test_a_finished_job_posts_its_signed_record_to_its_callback(stack, store, receiver):
    [image] = put_images(store, 1)
    job = api(stack, "POST", "/v1/jobs", json={"name": "immersity.disparity", "params": {"image": image.uri},
                                               "callback_url": receiver.url}).json()
    assert job["callback_url"] == receiver.url.split("?")[0]  # the receiver's token is not shown
    [request] = receiver.wait_for(1)
    assert request["verified"], request["payload"]
    assert request["path"] == "/hooks/geoqueue?token=receiver-token"
    payload = request["payload"]
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job["id"]
    assert payload["data"]["result"]["disparity"].startswith("s3://")
    webhook_id = request["headers"]["webhook-id"]  # random: nobody can post under it before the fleet does
    assert re.fullmatch(r"msg_[0-9a-f]{32}", webhook_id) and job["id"] not in webhook_id
    for secret in (stack.webhook_secret, stack.api_key, "receiver-token", "X-Amz-Signature", "https://",
                   stack.env["GEOQUEUE_S3_SECRET_ACCESS_KEY"]):
        assert secret not in request["body"]
    [attempt] = deliveries(stack, job["id"], 1)
    assert attempt["outcome"] == "delivered" and attempt["status"] == 204 and "token" not in attempt["url"]


def test_a_failing_receiver_gets_the_same_message_again_until_it_answers(stack, store, receiver):
    receiver.fail_first = 3
    [image] = put_images(store, 1)
    job = api(stack, "POST", "/v1/jobs", json={"name": "immersity.disparity", "params": {"image": image.uri},
                                               "callback_url": receiver.url}).json()
    requests_seen = receiver.wait_for(4)
    time.sleep(2)
    assert len(receiver.seen) == 4  # nothing more once it answered 2xx
    assert all(r["verified"] for r in requests_seen)
    assert len({r["headers"]["webhook-id"] for r in requests_seen}) == 1
    assert [r["answered"] for r in requests_seen] == [500, 500, 500, 204]
    gaps = [b["at"] - a["at"] for a, b in zip(requests_seen, requests_seen[1:], strict=False)]
    assert all(gap > 0.2 for gap in gaps)  # backed off, not hammered
    attempts = deliveries(stack, job["id"], 4)
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "failed", "delivered"]
    assert [a["status"] for a in attempts] == [500, 500, 500, 204]
    assert all("next_attempt" in a for a in attempts[:3])


def test_a_failed_job_and_a_canceled_job_post_too(store, queue, receiver, sandbox):
    failed = queue.submit("immersity.disparity", {"image": "s3://geoqueue/missing/none.jpg"}, callback_url=receiver.url)
    refs = put_images(store, 3)
    sandbox.configure("immersity", processing_delay_s=1.0)
    canceled = queue.submit("immersity.batch", {"prefix": prefix_of(refs), "max_parallel": 1},
                            callback_url=receiver.url)
    queue.cancel(canceled)
    receiver.wait_for(2)
    by_job = {r["payload"]["data"]["id"]: r["payload"] for r in receiver.seen}
    assert by_job[failed]["type"] == "job.failed" and by_job[failed]["data"]["error"]["type"]
    assert by_job[canceled]["type"] == "job.canceled"
    assert all(r["verified"] for r in receiver.seen)


def test_a_job_end_is_delivered_after_the_deliverer_was_down(stack, store, queue, receiver):
    stack.processes["webhooks"].kill()
    try:
        [image] = put_images(store, 1)
        job_id = queue.submit("immersity.disparity", {"image": image.uri}, callback_url=receiver.url)
        queue.wait(job_id, timeout=60)
        time.sleep(1)
        assert receiver.seen == []
    finally:
        stack.spawn("webhooks", local_argv(PROCESSES["webhooks"], stack.env))
    [request] = receiver.wait_for(1)
    assert request["verified"] and request["payload"]["data"]["id"] == job_id


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://10.0.0.7/hook", "http://169.254.169.254/latest",
                                 "http://[::1]/hook", "http://localhost/hook", "http://[::ffff:192.168.1.1]/"])
def test_callbacks_to_private_addresses_are_refused_unless_allowed(url):
    with pytest.raises(CallbackRefused, match="resolves to a loopback, private or other non-public address"):
        check_destination(url, allow_private=False)
    assert check_destination(url, allow_private=True) == url


def test_a_refused_callback_does_not_say_what_its_name_resolves_to():
    """Naming the address would let a producer map the fleet's network through its DNS."""
    with pytest.raises(CallbackRefused) as refused:
        check_destination("http://localhost:8080/hook", allow_private=False)
    assert "localhost" in str(refused.value)
    assert "127.0.0.1" not in str(refused.value) and "::1" not in str(refused.value), str(refused.value)


def test_the_api_refuses_a_private_callback_before_enqueueing(stack):
    with other_api(stack, GEOQUEUE_WEBHOOK_ALLOW_PRIVATE="false") as url:
        import requests

        refused = requests.post(url + "/v1/jobs", headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=30,
                                json={"name": "immersity.disparity", "params": {"image": "s3://geoqueue/a.jpg"},
                                      "callback_url": "http://169.254.169.254/latest/meta-data/"})
        assert refused.status_code == 422 and refused.json()["field"] == "callback_url"
        named = requests.post(url + "/v1/jobs", headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=30,
                              json={"name": "immersity.disparity", "params": {"image": "s3://geoqueue/a.jpg"},
                                    "callback_url": "http://localhost:8080/hook"})
        assert named.status_code == 422 and named.json()["field"] == "callback_url"
        assert "non-public address" in named.json()["detail"]
        assert "127.0.0.1" not in named.text and "::1" not in named.text, named.text
        bad = requests.post(url + "/v1/jobs", headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=30,
                            json={"name": "immersity.disparity", "params": {"image": "s3://geoqueue/a.jpg"},
                                  "callback_url": "ftp://example.com/x"})
        assert bad.status_code == 422 and bad.json()["field"] == "callback_url"



def test_the_demo_submits_over_plain_http_and_verifies_its_webhook(stack, store):
    from devstack.http_demo import submit_over_http

    [image] = put_images(store, 1)
    said: list[str] = []
    assert submit_over_http(stack, image.uri, said.append)
    text = "\n".join(said)
    assert "signature verified" in text and "job.succeeded" in text and "delivered (204)" in text


def test_retries_stop_at_the_end_of_the_window(stack):
    """A deliverer of its own, on a Redis database of its own, with a 3 s window: a receiver that
    never answers 2xx gets a few attempts, then the delivery is given up and shows so."""
    import threading

    import redis

    from config.settings import Settings
    from geoqueue.job_record import FAILED
    from geoqueue.ledger import Ledger
    from webhooks.delivery import DUE_KEY, Deliverer

    client = redis.Redis.from_url(stack.redis_url.rsplit("/", 1)[0] + "/12", decode_responses=True)
    client.flushdb()
    receiver = Receiver(stack.webhook_secret, fail_first=1000)
    settings = Settings(webhook_secret=stack.webhook_secret, webhook_allow_private=True, webhook_retry_window=3,
                        webhook_backoff_initial=0.3, webhook_backoff_max=1)
    deliverer, stopping = Deliverer(client, settings), []
    worker = threading.Thread(target=deliverer.run, args=(stopping,))
    worker.start()
    try:
        ledger = Ledger(client)
        ledger.create("never-ok", "immersity.batch", {}, callback_url=receiver.url)
        ledger.transition("never-ok", FAILED, error={"type": "VendorError", "message": "no"})
        def given_up() -> list[dict]:
            attempts = ledger.deliveries("never-ok")
            return attempts if attempts and attempts[-1]["outcome"] == "gave up" else []

        attempts = wait_until(given_up, 20, "the delivery to never-ok given up")
        assert len(attempts) >= 3 and all(a["outcome"] == "failed" for a in attempts[:-1])
        assert len(receiver.seen) == len(attempts) and all(r["verified"] for r in receiver.seen)
        assert receiver.seen[-1]["at"] - receiver.seen[0]["at"] <= 3.5
        assert client.zscore(DUE_KEY, "never-ok") is None
    finally:
        stopping.append(1)
        worker.join(10)
        receiver.close()
        client.flushdb()


def test_a_host_that_resolves_to_the_fleet_when_posting_gets_no_post(stack, monkeypatch):
    """DNS rebinding: the callback's host answers a public address when it is checked and the
    fleet's own loopback when the post connects. The post goes nowhere; the delivery shows it refused."""
    import socket
    from urllib.parse import urlsplit

    import redis

    from config.settings import Settings
    from geoqueue.job_record import SUCCEEDED
    from geoqueue.ledger import Ledger
    from webhooks.delivery import Deliverer

    receiver = Receiver(stack.webhook_secret)
    resolve, answers = socket.getaddrinfo, []

    def rebinding(host, *args, **kwargs):
        if host != "rebind.example":
            return resolve(host, *args, **kwargs)
        answers.append("93.184.216.34" if not answers else "127.0.0.1")
        return resolve(answers[-1], *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    client = redis.Redis.from_url(stack.redis_url.rsplit("/", 1)[0] + "/13", decode_responses=True)
    client.flushdb()
    try:
        deliverer = Deliverer(client, Settings(webhook_secret=stack.webhook_secret, webhook_allow_private=False))
        ledger = Ledger(client)
        url = f"http://rebind.example:{urlsplit(receiver.url).port}/hooks/geoqueue"
        ledger.create("rebound", "immersity.batch", {}, callback_url=url)
        ledger.transition("rebound", SUCCEEDED, result={})
        deliverer.schedule("rebound", SUCCEEDED, time.time())
        outcome = deliverer.attempt("rebound")
        assert answers[0] == "93.184.216.34"                      # what the check saw
        assert outcome["outcome"] == "refused" and "non-public address" in outcome["error"], outcome
        assert "127.0.0.1" not in str(ledger.deliveries("rebound")), "the refusal does not say where the name led"
        assert receiver.seen == []
    finally:
        receiver.close()
        client.flushdb()
