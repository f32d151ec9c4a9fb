"""The demo's part for producer apps in other languages: one job over plain HTTP (no Python
client), its end received as a signed webhook on a local receiver, the signature checked."""
from __future__ import annotations

import json
import shlex
import time

import requests

from devstack.local_stack import LocalStack
from devstack.webhook_receiver import Receiver


def delivery_attempts(stack: LocalStack, job_id: str, timeout: float = 10) -> list[dict]:
    """The job's webhook delivery attempts once one is on record (the deliverer records an attempt
    just after the receiver answered)."""
    deadline = time.monotonic() + timeout
    while True:
        attempts = requests.get(f"{stack.api_url}/v1/jobs/{job_id}", timeout=30, headers={
            "Authorization": f"Bearer {stack.api_key}"}).json()["webhook_deliveries"]
        if attempts or time.monotonic() > deadline:
            return attempts
        time.sleep(0.1)


def submit_over_http(stack: LocalStack, image_uri: str, say) -> bool:
    receiver = Receiver(stack.webhook_secret)
    try:
        body = {"name": "immersity.disparity", "params": {"image": image_uri}, "callback_url": receiver.url}
        say("\nOver plain HTTP, as an app in any language would:")
        say("  curl -X POST " + shlex.quote(f"{stack.api_url}/v1/jobs") + " -H 'Authorization: Bearer $KEY' "
            "-H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' -d " + shlex.quote(json.dumps(body)))
        sent = requests.post(f"{stack.api_url}/v1/jobs", json=body, timeout=30,
                             headers={"Authorization": f"Bearer {stack.api_key}", "Idempotency-Key": "demo-1"})
        if sent.status_code != 202:
            say(f"  refused: {sent.status_code} {sent.text}")
            return False
        job = sent.json()
        say(f"  -> {sent.status_code}, job {job['id']} {job['state']}; its page: {stack.api_url}/ui/jobs/{job['id']}")
        [request] = receiver.wait_for(1, timeout=120)
        headers = request["headers"]
        say(f"  webhook received at {request['path'].split('?')[0]}: webhook-id {headers['webhook-id']}, "
            f"webhook-timestamp {headers['webhook-timestamp']}, "
            f"webhook-signature {headers['webhook-signature'][:18]}...")
        verified = "verified" if request["verified"] else "NOT verified"
        say(f"  signature {verified} with the fleet's secret (standardwebhooks)")
        payload = request["payload"]
        if request["verified"]:
            say(f"  {payload['type']}: " + json.dumps(payload["data"]["result"]))
        for attempt in delivery_attempts(stack, job["id"]):
            say(f"  delivery attempt {attempt['attempt']}: {attempt['outcome']} ({attempt.get('status')}) "
                f"in {attempt['ms']} ms")
        return request["verified"] and payload["type"] == "job.succeeded"
    except TimeoutError as exc:
        say(f"  no webhook: {exc}")
        return False
    finally:
        receiver.close()
