"""The HTTP API as a producer app in another language uses it: plain HTTP and JSON against the
API process of the stack (uvicorn, started by the stack through this interpreter)."""
from __future__ import annotations

import json

import pytest
import requests

from api.keys import new_key
from geoqueue.catalog import CATALOG
from geoqueue.params import InvalidParams
from tests import probes
from tests.http_helpers import api, other_api, sse_events
from tests.inputs import prefix_of, put_images


def enqueued(stack) -> int:
    """Messages waiting in every queue, and job records in the ledger."""
    return sum(probes.enqueued(stack))


def test_a_job_submitted_over_http_runs_and_reads_back(stack, store):
    [image] = put_images(store, 1)
    sent = api(stack, "POST", "/v1/jobs", json={"name": "immersity.disparity", "params": {"image": image.uri}})
    assert sent.status_code == 202, sent.text
    job = sent.json()
    assert sent.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] == "queued" and job["params"] == {"image": image.uri}  # on record before any worker has it
    events = sse_events(stack, f"/v1/jobs/{job['id']}/events")
    assert events[-1][0] == "state" and events[-1][1]["state"] == "succeeded"
    assert [e for kind, e in events if kind == "state"][0]["id"] == job["id"]
    done = api(stack, "GET", f"/v1/jobs/{job['id']}").json()
    assert done["state"] == "succeeded" and done["result"]["disparity"].startswith("s3://")
    assert done["links"]["page"] == f"/ui/jobs/{job['id']}"
    listed = api(stack, "GET", "/v1/jobs", params={"state": "succeeded", "vendor": "immersity", "limit": 200}).json()
    assert job["id"] in [j["id"] for j in listed["jobs"]]
    assert all(j["state"] == "succeeded" and j["vendor"] == "immersity" for j in listed["jobs"])
    assert api(stack, "GET", f"/v1/jobs/{job['id']}/items").json() == {"items": {}}
    assert api(stack, "GET", f"/v1/jobs/{job['id']}/console").json() == {"lines": [], "next": 0}


def test_listing_pages_through_an_index_with_a_cursor(stack, queue):
    ids = [f"page-{n}-{stack.api_port}" for n in range(5)]
    for job_id in ids:
        queue.ledger.create(job_id, "immersal.list_maps", {})
        queue.ledger.transition(job_id, "canceled")
    seen, cursor = [], None
    while True:
        page = api(stack, "GET", "/v1/jobs", params={"state": "canceled", "vendor": "immersal", "limit": 2,
                                                     **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["jobs"]) <= 2
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    mine = [i for i in seen if i in ids]
    assert mine == list(reversed(ids)) and len(seen) == len(set(seen))  # newest first, each once
    bad = api(stack, "GET", "/v1/jobs", params={"cursor": "nonsense"})
    assert bad.status_code == 422 and bad.json()["field"] == "cursor"
    assert api(stack, "GET", "/v1/jobs", params={"state": "lost"}).json()["field"] == "state"
    assert api(stack, "GET", "/v1/jobs", params={"vendor": "acme"}).status_code == 422


@pytest.mark.parametrize("params, field", [
    ({"image": "s3://geoqueue/a.jpg", "options": {"dilation": 5}}, "options.dilation"),
    ({"image": "http://example.com/a.jpg"}, "image"),
    ({"image": "s3://geoqueue/a.jpg", "colour": "red"}, "colour"),
    ({}, "image"),
])
def test_bad_parameters_get_422_naming_the_field_with_the_python_message(stack, params, field):
    before = enqueued(stack)
    refused = api(stack, "POST", "/v1/jobs", json={"name": "immersity.disparity", "params": params})
    assert refused.status_code == 422
    with pytest.raises(InvalidParams) as python:
        CATALOG["immersity.disparity"].check(params)
    assert refused.json() == {"error": "InvalidParams", "detail": str(python.value), "field": field}
    assert enqueued(stack) == before


@pytest.mark.parametrize("body, headers, status, error", [
    (b'{"name": "immersity.disparity", "params": ', {"content-type": "application/json"}, 400, "MalformedJSON"),
    (b'name=immersity.disparity', {"content-type": "application/x-www-form-urlencoded"}, 415, "UnsupportedMediaType"),
    (b'{"name": "immersity.disparity"}', {}, 415, "UnsupportedMediaType"),
    (b'{"name": "immersity.disparity", "params": {"image": "s3://geoqueue/a.jpg"}, "x": "' + b"a" * (10 << 20) + b'"}',
     {"content-type": "application/json"}, 413, "TooLarge"),
    (b'{"name": "acme.teleport", "params": {}}', {"content-type": "application/json"}, 422, "InvalidParams"),
    (b'["immersity.disparity"]', {"content-type": "application/json"}, 422, "InvalidParams"),
    (b'{"name": "immersity.disparity", "params": {"image": "s3://geoqueue/a.jpg"}, "priority": 1}',
     {"content-type": "application/json"}, 422, "InvalidParams"),
])
def test_bad_requests_get_a_clear_4xx_and_nothing_is_enqueued(stack, body, headers, status, error):
    before = enqueued(stack)
    refused = api(stack, "POST", "/v1/jobs", data=body, headers=headers)
    assert refused.status_code == status, refused.text
    assert refused.json()["error"] == error and refused.json()["detail"]
    assert enqueued(stack) == before


def test_an_unknown_job_is_refused_naming_the_known_ones(stack):
    refused = api(stack, "POST", "/v1/jobs", json={"name": "acme.teleport", "params": {}}).json()
    assert refused["field"] == "name" and "immersity.batch" in refused["detail"]
    internal = api(stack, "POST", "/v1/jobs", json={"name": "geoqueue.sweep", "params": {}})
    assert internal.status_code == 422  # internal task


def test_keys_are_hashes_with_scopes_and_no_secret_shows(stack, store):
    reader, reader_entry = new_key("reader", ["read"], app="ci")
    writer, writer_entry = new_key("writer", ["submit"], app="ci")  # keys of one app share its jobs
    [image] = put_images(store, 1)
    body = {"name": "immersity.disparity", "params": {"image": image.uri}}
    with other_api(stack, GEOQUEUE_API_KEYS=f"{reader_entry} {writer_entry}") as url:
        def call(method, path, key, **kw):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return requests.request(method, url + path, headers=headers, timeout=30, **kw)

        assert call("GET", "/v1/jobs", None).status_code == 401
        assert call("GET", "/v1/jobs", "gq_not-a-key").status_code == 401
        assert call("GET", "/v1/jobs", stack.api_key).status_code == 401  # the stack's key is not configured here
        assert call("POST", "/v1/jobs", reader, json=body).status_code == 403
        assert call("GET", "/v1/jobs", writer).status_code == 403
        sent = call("POST", "/v1/jobs", writer, json=body)
        assert sent.status_code == 202
        assert call("DELETE", f"/v1/jobs/{sent.json()['id']}", reader).status_code == 403
        assert call("GET", f"/v1/jobs/{sent.json()['id']}", reader).status_code == 200
        responses = [call("GET", "/v1/jobs", reader).text, call("GET", "/openapi.json", None).text, sent.text]
    logs = "".join(path.read_text() for path in stack.run_dir.glob("api*.log"))
    for secret in (reader, writer, stack.api_key, stack.webhook_secret):
        assert all(secret not in text for text in responses + [logs])
    assert reader_entry.split(":")[2] not in "".join(responses)  # the hash


def test_idempotency_key_names_one_job(stack, store, sandbox):
    [image] = put_images(store, 1)
    body = {"name": "immersity.disparity", "params": {"image": image.uri}}
    key = {"Idempotency-Key": f"order-{image.key}"}
    first = api(stack, "POST", "/v1/jobs", json=body, headers=dict(key))
    again = api(stack, "POST", "/v1/jobs", json=body, headers=dict(key))
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = api(stack, "POST", "/v1/jobs", json={**body, "params": {"image": image.uri, "output": image.uri + ".png"}},
                headers=dict(key))
    assert other.status_code == 409 and other.json()["field"] == "Idempotency-Key"
    sse_events(stack, f"/v1/jobs/{first.json()['id']}/events")
    assert sandbox.counters("immersity").get("disparity", 0) == 1  # the vendor was called once


def test_a_job_id_reused_with_other_parameters_is_409_and_never_runs_again(stack, store, sandbox):
    [image] = put_images(store, 1)
    body = {"name": "immersity.disparity", "params": {"image": image.uri},
            "job_id": "mine-" + image.key.replace('/', '-').replace('.', '-')}
    assert api(stack, "POST", "/v1/jobs", json=body).status_code == 202
    sse_events(stack, f"/v1/jobs/{body['job_id']}/events")
    assert api(stack, "POST", "/v1/jobs", json=body).json()["state"] == "succeeded"  # the same job, not a new run
    conflict = api(stack, "POST", "/v1/jobs", json={**body, "params": {"image": image.uri, "output": "s3://geoqueue/x.png"}})
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "JobConflict" and conflict.json()["field"] == "job_id"
    assert body["job_id"] in conflict.json()["detail"]
    assert sandbox.counters("immersity").get("disparity", 0) == 1


def test_cancel_over_http(stack, store, sandbox):
    refs = put_images(store, 4)
    sandbox.configure("immersity", processing_delay_s=1.0)
    sent = api(stack, "POST", "/v1/jobs", json={"name": "immersity.batch", "params": {
        "prefix": prefix_of(refs), "max_parallel": 1}}).json()
    canceled = api(stack, "DELETE", f"/v1/jobs/{sent['id']}")
    assert canceled.status_code == 200 and canceled.json()["state"] == "canceled"
    again = api(stack, "DELETE", f"/v1/jobs/{sent['id']}")
    assert again.status_code == 409 and "already canceled" in again.json()["detail"]
    assert api(stack, "DELETE", "/v1/jobs/no-such-job").status_code == 404
    assert api(stack, "GET", "/v1/jobs/no-such-job/items").status_code == 404


def test_openapi_has_one_request_schema_per_job_made_from_the_catalog(stack):
    spec = requests.get(stack.api_url + "/openapi.json", timeout=10).json()
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["discriminator"]["mapping"]) == set(CATALOG)
    for name in CATALOG:
        schema = spec["components"]["schemas"][body["discriminator"]["mapping"][name].rsplit("/", 1)[-1]]
        assert schema["properties"]["name"] == {"const": name}
        assert schema["properties"]["params"] == json.loads(json.dumps(CATALOG[name].schema()))
    assert "bearer" in json.dumps(spec["components"]["securitySchemes"]).lower()


def test_events_carry_the_summary_of_each_change(stack, store):
    refs = put_images(store, 3)
    job = api(stack, "POST", "/v1/jobs", json={"name": "immersity.batch", "params": {
        "prefix": prefix_of(refs), "max_parallel": 1}}).json()
    events = sse_events(stack, f"/v1/jobs/{job['id']}/events")
    states = [e["state"] for kind, e in events if kind == "state"]
    assert states[0] in ("queued", "running") and states[-1] == "succeeded" and "running" in states
    dones = [e["done"] for kind, e in events if kind == "progress"]
    assert dones == sorted(dones) and 3 in dones
    assert all(set(e) >= {"id", "state", "phase", "done", "total", "credits"} for _, e in events)
    assert "params" not in json.dumps(events)
