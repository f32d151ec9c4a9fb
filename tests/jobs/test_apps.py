"""Several apps on one fleet, over HTTP as the apps use it: app-a and app-b with keys of their own,
and app-b's frontend with a key that may only submit. Each app sees only its own jobs, its ids are
its own, it reads only where the fleet lets it, writes only in its part of the output area, and its
webhooks are signed with its own secret under a random webhook-id. The fleet is a stack of its own,
configured for these apps (keys, app-b's readable bucket and webhook secret)."""
from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
import redis
import requests
from celery import Celery
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from api.keys import digest
from devstack.samples import scene
from devstack.webhook_receiver import Receiver
from geoqueue.ledger import Ledger
from geoqueue.routes import queue_for
from geoqueue.s3ref import S3Ref
from tests.conftest import SandboxControl, start_stack, wait_until
from tests.http_helpers import api, sse_events
from tests.inputs import BUCKET, put_images, put_site
from tests.jobs.test_job_pages import sign_in
from tests.probes import enqueued

B_RAW = "team-b-raw"        # a bucket only app-b may read, besides the fleet's


def key_of(name: str, scopes: str, app: str) -> tuple[str, str]:
    """(a key, its GEOQUEUE_API_KEYS entry): app named last, when it is not the key's name."""
    key = "gq_" + secrets.token_urlsafe(32)
    return key, f"{name}:{scopes}:{digest(key)}" + (f":{app}" if app != name else "")


@pytest.fixture(scope="module")
def fleet():
    keys = {"a": key_of("app-a", "submit+read", "app-a"), "b": key_of("app-b", "submit+read", "app-b"),
            "b-submit": key_of("b-frontend", "submit", "app-b")}
    b_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    stack = start_stack(flower=False, beat=False, GEOQUEUE_API_KEYS=" ".join(entry for _, entry in keys.values()),
                        GEOQUEUE_WEBHOOK_APP_SECRETS=f"app-b={b_secret}",
                        GEOQUEUE_S3_APP_READABLE=f"app-b=s3://{B_RAW}/")
    stack.keys = {who: key for who, (key, _) in keys.items()}
    stack.b_webhook_secret = b_secret
    yield stack
    stack.stop()


def call(fleet, who: str, method: str, path: str, **kwargs) -> requests.Response:
    return api(fleet, method, path, fleet.keys[who], **kwargs)


def submit(fleet, who: str, name: str, params: dict, **fields) -> str:
    sent = call(fleet, who, "POST", "/v1/jobs", json={"name": name, "params": params, **fields})
    assert sent.status_code == 202, sent.text
    return sent.json()["id"]


def ended(fleet, who: str, job_id: str) -> dict:
    """The job's record once it ended, followed on its event stream."""
    sse_events(fleet, f"/v1/jobs/{job_id}/events", fleet.keys[who], timeout=60)
    return call(fleet, who, "GET", f"/v1/jobs/{job_id}").json()


def part(app: str) -> str:
    """A fresh folder in the app's part of the output area, for its inputs."""
    return f"apps/{app}/in/{uuid.uuid4().hex[:8]}/"


def image_in(fleet, app: str) -> str:
    """A fresh image in the app's part."""
    [image] = put_images(fleet.object_store(), 1, part(app))
    return image.uri


def a_finished_job(fleet, job_id: str) -> dict:
    """A job of app-a, finished: a disparity map of an image in app-a's part."""
    return ended(fleet, "a", submit(fleet, "a", "immersity.disparity", {"image": image_in(fleet, "app-a")},
                                    job_id=job_id))


def sent_straight(fleet, who: str, name: str, kwargs: dict):
    """A job of `who`'s app sent with Celery alone, as an app holding the broker could: the API never
    sees the message. Its record once it ended, as the app reads it over HTTP."""
    job_id, app = f"sneaky-{uuid.uuid4().hex[:8]}", {"a": "app-a", "b": "app-b"}[who]
    sender = Celery(broker=fleet.redis_url)
    try:
        sender.send_task(name, kwargs=kwargs, task_id=f"{app}.{job_id}", queue=queue_for(name))
    finally:
        sender.close()
    # no record until a worker takes the message
    wait_until(lambda: call(fleet, who, "GET", f"/v1/jobs/{job_id}").ok, 30, f"a record of {job_id}")
    return ended(fleet, who, job_id)


# --- 1. each app sees only its own jobs ---

def test_another_apps_job_answers_404_on_every_route_as_if_it_did_not_exist(fleet):
    job_id = f"a-{uuid.uuid4().hex[:8]}"
    a_job = a_finished_job(fleet, job_id)
    assert a_job["app"] == "app-a" and a_job["state"] == "succeeded"
    missing = f"no-such-{uuid.uuid4().hex[:8]}"
    for path in ("", "/items", "/console", "/events"):
        for asked in (job_id, f"app-a.{job_id}"):       # its id, and the fleet's own name for it
            seen = call(fleet, "b", "GET", f"/v1/jobs/{asked}{path}")
            assert seen.status_code == 404, (path, asked, seen.text)
            assert seen.json() == {"error": "UnknownJob", "detail": f"no job {asked}", "field": None}
        assert call(fleet, "b", "GET", f"/v1/jobs/{missing}{path}").json()["detail"] == f"no job {missing}"
    listed = call(fleet, "b", "GET", "/v1/jobs", params={"limit": 200}).json()["jobs"]
    assert job_id not in json.dumps(listed)
    assert call(fleet, "b", "DELETE", f"/v1/jobs/{job_id}").status_code == 404
    assert call(fleet, "b-submit", "DELETE", f"/v1/jobs/{job_id}").status_code == 404
    assert call(fleet, "a", "GET", f"/v1/jobs/{job_id}").json()["state"] == "succeeded"
    assert job_id in [j["id"] for j in call(fleet, "a", "GET", "/v1/jobs", params={"limit": 200}).json()["jobs"]]


def test_the_stream_of_every_job_shows_an_app_its_own_jobs_only(fleet):
    a_id, b_id = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    seen: dict[str, list[dict]] = {"a": [], "b": []}
    opened = {"a": threading.Event(), "b": threading.Event()}

    def listen(who: str, until: str) -> None:
        with call(fleet, who, "GET", "/v1/events", stream=True) as stream:
            opened[who].set()
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    seen[who].append(json.loads(line[len("data: "):]))
                    if seen[who][-1]["id"] == until and seen[who][-1]["state"] == "succeeded":
                        return

    listeners = [threading.Thread(target=listen, args=args, daemon=True) for args in (("a", a_id), ("b", b_id))]
    for listener in listeners:
        listener.start()
    assert opened["a"].wait(10) and opened["b"].wait(10)
    time.sleep(1)  # the streams subscribe just after they answer
    ended(fleet, "a", submit(fleet, "a", "immersity.disparity", {"image": image_in(fleet, "app-a")}, job_id=a_id))
    ended(fleet, "b", submit(fleet, "b", "immersity.disparity", {"image": image_in(fleet, "app-b")}, job_id=b_id))
    for listener in listeners:
        listener.join(30)
    assert {e["id"] for e in seen["b"]} == {b_id}, seen["b"]      # b's own job, under its own id
    assert {e["id"] for e in seen["a"]} == {a_id}, seen["a"]


# --- 2. job ids are per app; no answer to a submit carries another app's record ---

def test_two_apps_may_use_one_id_and_no_submit_answer_carries_the_other_apps_job(fleet):
    job_id = f"order-{uuid.uuid4().hex[:6]}"
    a_job = a_finished_job(fleet, job_id)
    a_image = a_job["params"]["image"]
    before = json.dumps(a_job)
    [b_image] = put_images(fleet.object_store(), 1, part("app-b"))
    # app-b's frontend (submit only) posts the very id app-a used: a job of its own app, not a's record
    sent = call(fleet, "b-submit", "POST", "/v1/jobs", json={"name": "immersity.disparity", "job_id": job_id,
                                                             "params": {"image": b_image.uri}})
    assert sent.status_code == 202, sent.text
    assert sent.json()["id"] == job_id and sent.json()["app"] == "app-b" and sent.json()["result"] is None
    again = call(fleet, "b-submit", "POST", "/v1/jobs", json={"name": "immersal.list_maps", "job_id": job_id,
                                                              "params": {}})
    assert again.status_code == 409 and again.json()["error"] == "JobConflict"
    for answer in (sent, again):
        assert a_image not in answer.text and "app-a" not in answer.text
    b_job = ended(fleet, "b", job_id)
    assert b_job["params"] == {"image": b_image.uri} and b_job["result"]["disparity"] != a_job["result"]["disparity"]
    assert json.dumps(call(fleet, "a", "GET", f"/v1/jobs/{job_id}").json()) == before  # a's job untouched


# --- 3. inputs only from where the app may read ---

@pytest.mark.parametrize("name, params, field", [
    ("immersity.disparity", {"image": "s3://geoqueue/apps/app-a/in/secret.jpg"}, "image"),    # a's part
    ("immersal.build_map", {"images": "s3://geoqueue/apps/app-b/site/", "name": "Leak",
                            "manifest": "s3://some-other-bucket/prod/.env"}, "manifest"),
    ("immersity.batch", {"prefix": "s3://geoqueue/"}, "prefix"),                           # holds every part
    ("mapillary.upload_sequence", {"images": "s3://some-other-bucket/photos/"}, "images"),
    ("immersity.animation", {"image": "s3://geoqueue/apps/app-b/a.jpg",
                             "disparity": "s3://geoqueue/apps/app-a/d.png"}, "disparity"),
])
def test_an_input_where_the_app_may_not_read_is_refused_at_submit_naming_it(fleet, name, params, field):
    before = enqueued(fleet)
    refused = call(fleet, "b", "POST", "/v1/jobs", json={"name": name, "params": params})
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == field and "may read" in refused.json()["detail"]
    assert "app-a" not in refused.json()["detail"].replace(params[field], "")  # names b's places, not a's
    assert enqueued(fleet) == before


def test_an_apps_own_readable_bucket_is_its_alone_and_the_worker_checks_again(fleet):
    store, sandbox = fleet.object_store(), SandboxControl(fleet.sandbox_url)
    store.ensure_bucket(B_RAW)
    raw = S3Ref(B_RAW, f"photos/{uuid.uuid4().hex[:8]}.jpg")
    store.write(raw, scene(7, 160, 120), "image/jpeg")
    assert ended(fleet, "b", submit(fleet, "b", "immersity.disparity", {"image": raw.uri}))["state"] == "succeeded"
    refused = call(fleet, "a", "POST", "/v1/jobs", json={"name": "immersity.disparity", "params": {"image": raw.uri}})
    assert refused.status_code == 422 and refused.json()["field"] == "image"
    # A message that never met the API: app-a's stored id, an image of app-b's part. The worker
    # refuses it before reading anything, and app-a reads the refusal on its own job.
    [b_image] = put_images(store, 1, part("app-b"))
    calls = sandbox.counters("immersity").get("disparity", 0)
    failed = sent_straight(fleet, "a", "immersity.disparity", {"image": b_image.uri})
    assert (failed["state"], failed["error"]["type"], failed["error"]["field"]) == ("failed", "InvalidInput", "image")
    assert "not where app app-a may read" in failed["error"]["message"]
    assert sandbox.counters("immersity").get("disparity", 0) == calls


def test_an_object_that_is_no_manifest_is_never_quoted_back(fleet):
    store = fleet.object_store()
    prefix, _ = put_site(store, 2)
    env = S3Ref(BUCKET, f"{part('app-b')}prod.env")
    store.write(env, b"DB_PASSWORD=hunter2-correct-horse\nSTRIPE_KEY=sk_live_51Habcdefghijkl\n", "text/plain")
    job_id = submit(fleet, "b", "immersal.build_map", {"images": prefix, "name": "Leak", "manifest": env.uri})
    failed = ended(fleet, "b", job_id)
    assert (failed["error"]["type"], failed["error"]["field"]) == ("InvalidInput", "manifest")
    assert "unknown column" in failed["error"]["message"]
    shown = json.dumps(failed)
    for secret in ("hunter2", "correct-horse", "sk_live", "51Habcdef", "PASSWORD="):
        assert secret not in shown, shown


# --- 4. outputs only in the app's part ---

def test_outputs_go_to_the_apps_part_and_nowhere_else(fleet):
    store = fleet.object_store()
    [image] = put_images(store, 1, part("app-b"))
    job_id = f"out-{uuid.uuid4().hex[:8]}"
    job = ended(fleet, "b", submit(fleet, "b", "immersity.disparity", {"image": image.uri}, job_id=job_id))
    assert job["result"]["disparity"].startswith(f"s3://{BUCKET}/apps/app-b/immersity/{job_id}/")
    for output in ("s3://geoqueue/apps/app-a/out/x.png", "s3://geoqueue/shared/x.png", "s3://elsewhere/x.png"):
        refused = call(fleet, "b", "POST", "/v1/jobs", json={"name": "immersity.disparity",
                                                             "params": {"image": image.uri, "output": output}})
        assert refused.status_code == 422 and refused.json()["field"] == "output", refused.text
    failed = sent_straight(fleet, "b", "immersity.disparity",
                           {"image": image.uri, "output": "s3://geoqueue/apps/app-a/out/y.png"})
    assert (failed["error"]["type"], failed["error"]["field"]) == ("InvalidInput", "output")
    assert store.size(S3Ref(BUCKET, "apps/app-a/out/y.png")) is None


# --- 5. webhooks signed per app, under a random webhook-id ---

def test_each_app_verifies_its_webhooks_with_its_own_secret_and_ids_are_random(fleet):
    b_receiver = Receiver(fleet.b_webhook_secret, fail_first=1)
    a_receiver = Receiver(fleet.webhook_secret)
    try:
        b_id = submit(fleet, "b", "immersity.disparity", {"image": image_in(fleet, "app-b")},
                      callback_url=b_receiver.url)
        a_id = submit(fleet, "a", "immersity.disparity", {"image": image_in(fleet, "app-a")},
                      callback_url=a_receiver.url)
        first, second = b_receiver.wait_for(2)
        [a_post] = a_receiver.wait_for(1)
    finally:
        b_receiver.close()
        a_receiver.close()
    assert first["verified"] and second["verified"] and a_post["verified"]
    assert first["payload"]["data"]["id"] == b_id and first["payload"]["data"]["app"] == "app-b"
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]          # the same message, retried
    assert b_id not in first["headers"]["webhook-id"] and a_id not in a_post["headers"]["webhook-id"]
    assert first["headers"]["webhook-id"] != a_post["headers"]["webhook-id"]
    with pytest.raises(WebhookVerificationError):  # the fleet's secret, which app-a holds, cannot sign for b
        Webhook(fleet.webhook_secret).verify(first["body"].encode(), first["headers"])
    # app-a forges b's success with the secret it holds: app-b, verifying with its own, refuses it
    forged, sent_at = a_post["body"].replace(a_id, b_id), datetime.now(UTC)
    headers = {"webhook-id": "msg_forged", "webhook-timestamp": str(int(sent_at.timestamp())),
               "webhook-signature": Webhook(fleet.webhook_secret).sign("msg_forged", sent_at, forged)}
    with pytest.raises(WebhookVerificationError):
        Webhook(fleet.b_webhook_secret).verify(forged.encode(), headers)


# --- 1 again: the DroneMapper control jobs and the job pages ---

def test_dronemapper_control_jobs_reach_only_their_own_apps_surveys(fleet):
    ledger = Ledger(redis.Redis.from_url(fleet.redis_url, decode_responses=True))
    survey = f"survey-{uuid.uuid4().hex[:6]}"
    ledger.create(f"app-a.{survey}", "dronemapper.process_survey", {"images": "s3://geoqueue/apps/app-a/s/"})
    ledger.transition(f"app-a.{survey}", "waiting", phase="processing: running")
    for name in ("dronemapper.cancel", "dronemapper.restart", "dronemapper.remove"):
        failed = ended(fleet, "b", submit(fleet, "b", name, {"job_id": survey}))
        assert (failed["state"], failed["error"]["field"]) == ("failed", "job_id")
        assert failed["error"]["message"] == f"job_id: no job {survey!r}"
    assert call(fleet, "a", "GET", f"/v1/jobs/{survey}").json()["state"] == "waiting"
    canceled = ended(fleet, "a", submit(fleet, "a", "dronemapper.cancel", {"job_id": survey}))
    assert canceled["result"]["canceled"]
    assert call(fleet, "a", "GET", f"/v1/jobs/{survey}").json()["state"] == "canceled"


def test_the_job_pages_show_an_app_its_own_jobs_only(fleet, chromium):
    a_id = f"a-page-{uuid.uuid4().hex[:6]}"
    a_finished_job(fleet, a_id)
    b_id = submit(fleet, "b", "immersity.disparity", {"image": image_in(fleet, "app-b")}, job_id=f"b-page-{a_id[7:]}")
    chromium.delete_all_cookies()
    try:
        sign_in(chromium, fleet, fleet.keys["b"])
        wait_until(lambda: f"job-{b_id}" in chromium.page_source, 30, "app-b's job on its list")
        late_a = submit(fleet, "a", "immersity.disparity", {"image": image_in(fleet, "app-a")})
        ended(fleet, "a", late_a)  # its events went by the open page
        page = chromium.page_source
        assert a_id not in page and late_a not in page and "app-a" not in page
        chromium.get(f"{fleet.api_url}/ui/jobs/{a_id}")
        assert "UnknownJob" in chromium.page_source and "immersity" not in chromium.page_source
        chromium.get(f"{fleet.api_url}/ui/jobs/{b_id}")
        assert b_id in chromium.page_source and "immersity.disparity" in chromium.page_source
    finally:
        chromium.delete_all_cookies()
