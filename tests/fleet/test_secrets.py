"""No secret leaves the workers: not in Redis (every key), results, events or logs."""
from __future__ import annotations

import hashlib

import pytest
import redis

from tests.inputs import prefix_of, put_images


def every_value_in(client: redis.Redis):
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        yield key
        if kind == b"string":
            yield client.get(key)
        elif kind == b"hash":
            yield from (v for pair in client.hgetall(key).items() for v in pair)
        elif kind == b"list":
            yield from client.lrange(key, 0, -1)
        elif kind == b"set":
            yield from client.smembers(key)
        elif kind == b"zset":
            yield from client.zrange(key, 0, -1)


def test_no_secret_in_redis_results_or_logs(queue, store, stack, sandbox):
    refs = put_images(store, 3)
    prefix = prefix_of(refs)
    batch = queue.wait(queue.submit("immersity.batch", {"prefix": prefix}), timeout=90)
    single_params = {"image": refs[0].uri, "animation": {"animationType": "gif"}}
    single = queue.wait(queue.submit("immersity.disparity", single_params), timeout=90)
    assert batch.state == single.state == "succeeded"

    issued = sandbox.status("immersity")["tokens_issued"]
    assert issued, "the run should have used at least one access token"
    secrets = [
        stack.env["GEOQUEUE_IMMERSITY_CLIENT_SECRET"], stack.env["GEOQUEUE_S3_SECRET_ACCESS_KEY"],
        stack.flower_password, *issued,
    ]
    leaks = ["X-Amz-Signature", "X-Amz-Credential", "Bearer "]

    client = redis.Redis.from_url(stack.redis_url)
    values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in every_value_in(client)]
    assert len(values) > 20
    for text in values:
        for secret in secrets + leaks:
            assert secret not in text, f"{secret[:6]}... found in Redis"

    for name in ("control", "transfer", "beat"):
        log = stack.logs(name)
        assert "immersity.batch" in log or name == "beat" or "immersity" in log
        for secret in secrets + leaks:
            assert secret not in log, f"{secret[:6]}... found in the {name} log"


def test_no_key_name_carries_anything_derived_from_a_secret(queue, store, stack):
    [image] = put_images(store, 1)
    assert queue.wait(queue.submit("immersity.disparity", {"image": image.uri}), timeout=90).state == "succeeded"
    configured = [v for k, v in stack.env.items() if k.startswith("GEOQUEUE_") and
                  k.endswith(("_PASSWORD", "_SECRET", "_TOKEN", "_SECRET_ACCESS_KEY", "_HASH"))]
    assert len(configured) >= 4
    digests = {hashlib.new(algorithm, secret.encode()).hexdigest()[:8]
               for secret in configured for algorithm in ("sha256", "sha1", "md5")}
    names = [key.decode() for key in redis.Redis.from_url(stack.redis_url).scan_iter(count=1000)]
    assert any(name.startswith("gq:token:") for name in names)
    for name in names:
        assert not any(digest in name for digest in digests), name


def test_the_log_redactor_masks_signatures_tokens_and_secrets_in_any_case():
    from config.redaction import MASK, redact

    line = ("PUT https://s3/b/k?x-amz-signature=abc123&X-Amz-Credential=AKIA%2Fx Authorization: jwt eyJ.a.b "
            "bearer tok-1 {'client_secret': 'shh'} password=pw1 the-configured-secret")
    redacted = redact(line, ["the-configured-secret"])
    for secret in ("abc123", "AKIA%2Fx", "eyJ.a.b", "tok-1", "shh", "pw1", "the-configured-secret"):
        assert secret not in redacted
    assert redacted.count(MASK) == 7
    plain = "[2026-11-30 11:42:41,123: INFO/MainProcess] Task celery.ping[6f1c] received"
    assert redact(plain, ["the-configured-secret"]) == plain


def test_a_vendor_message_quoting_a_presigned_url_reaches_the_job_error_masked():
    """A vendor may quote the URL it could not write to; the job's error keeps the message, not the signature."""
    from config.redaction import MASK
    from runtime.guard import FAIL, verdict
    from vendors.errors import VendorError

    url = "https://bucket.s3.amazonaws.com/out/a.png?X-Amz-Credential=AKIAX%2F1&X-Amz-Signature=f00d"
    refused = VendorError("Immersity rejected the request", vendor="immersity", status=400,
                          vendor_message=f"could not write to {url}")
    kind, error, _ = verdict(refused, "immersity.item")
    assert kind == FAIL
    assert error["vendor_message"] == ("could not write to https://bucket.s3.amazonaws.com/out/a.png?"
                                       f"X-Amz-Credential={MASK}&X-Amz-Signature={MASK}")
    assert (error["type"], error["status"]) == ("VendorError", 400)


# A leaked .env, a client's headers and a dict of settings, as a vendor or a traceback may quote them.
CREDENTIALS = ("unknown column(s) 'DB_PASSWORD=hunter2', 'STRIPE_KEY=sk_live_4711' X-Api-Key: key-0815 "
               "{'aws_secret_access_key': 'wJalr/K7MDENG', \"refresh_token\":\"rt-99\"} MY_SERVICE_KEY=msk-1")
CREDENTIAL_VALUES = ("hunter2", "sk_live_4711", "key-0815", "wJalr/K7MDENG", "rt-99", "msk-1")


def test_the_redactor_masks_the_values_of_credential_like_names_and_keeps_the_names():
    from config.redaction import MASK, redact

    redacted = redact(CREDENTIALS, [])
    assert not [value for value in CREDENTIAL_VALUES if value in redacted], redacted
    for name in ("DB_PASSWORD=", "STRIPE_KEY=", "X-Api-Key: ", "'aws_secret_access_key': '", '"refresh_token":"'):
        assert name + MASK in redacted, redacted
    ordinary = "Task immersity.item[6f1c] succeeded in 0.2s: {'key': 'out/a.png', 'bytes': 2048, 'at': '12:30'}"
    assert redact(ordinary, []) == ordinary


def test_a_job_error_is_redacted_in_nested_values_and_credential_like_keys():
    """A DroneMapper failure carries the vendor's last console lines (`console_tail`, a list)."""
    from config.redaction import MASK
    from runtime.guard import FAIL, verdict
    from tasks.dronemapper.records import ProcessingFailed

    url = "https://bucket.s3.amazonaws.com/survey/a.jpg?X-Amz-Credential=AKIAX%2F1&X-Amz-Signature=f00d"
    failed = ProcessingFailed("DroneMapper task 7 failed: Cannot process dataset", vendor="dronemapper",
                              vendor_message="Cannot process dataset", project=3, task="7",
                              console_tail=[f"[INFO]    fetching {url}", f"[ERROR]   {CREDENTIALS}",
                                            "Authorization: Bearer eyJhbGciOi.x.y"],
                              node={"api_token": "nt-1234", "host": "node-odm-1"})
    kind, error, _ = verdict(failed, "dronemapper.poll")
    assert kind == FAIL
    shown = str(error)
    assert not [v for v in (*CREDENTIAL_VALUES, "f00d", "AKIAX", "eyJhbGciOi", "nt-1234") if v in shown], shown
    assert error["console_tail"][0] == ("[INFO]    fetching https://bucket.s3.amazonaws.com/survey/a.jpg?"
                                        f"X-Amz-Credential={MASK}&X-Amz-Signature={MASK}")
    assert error["node"] == {"api_token": MASK, "host": "node-odm-1"}
    assert (error["project"], error["task"]) == (3, "7")


def test_flower_shows_task_values_redacted_however_nested():
    from types import SimpleNamespace

    from workers.flowerconfig import format_task

    task = SimpleNamespace(args="()", kwargs=f"{{'images': 's3://geoqueue/s/', 'note': {CREDENTIALS!r}}}",
                           result={"progress": {"done": 1}, "console_tail": [CREDENTIALS]},
                           exception=f"ProcessingFailed('{CREDENTIALS}')", traceback=None)
    shown = str(vars(format_task(task)))
    assert not [value for value in CREDENTIAL_VALUES if value in shown], shown
    assert "s3://geoqueue/s/" in shown and task.result["progress"] == {"done": 1}


def test_a_failed_survey_keeps_the_vendor_console_redacted(queue, store, stack, sandbox):
    """The vendor's console reaches the job's console and its error's console_tail masked: a vendor
    may print what it was given, or a .env it found."""
    from geoqueue import JobFailed
    from tests.inputs import put_survey

    quoted = f"{CREDENTIALS} S3 secret {stack.env['GEOQUEUE_S3_SECRET_ACCESS_KEY']}"
    sandbox.configure("dronemapper", fail_tasks_named=["leaky"], fail_error=quoted)
    prefix, _ = put_survey(store, 3)
    job_id = queue.submit("dronemapper.process_survey", {"images": prefix, "name": "leaky"})
    with pytest.raises(JobFailed) as failed:
        queue.wait(job_id, timeout=90)
    error = failed.value.job.error
    assert any("STRIPE_KEY=***" in line for line in error["console_tail"]), error["console_tail"]
    secrets = (*CREDENTIAL_VALUES, stack.env["GEOQUEUE_S3_SECRET_ACCESS_KEY"])
    for text in (str(error), "\n".join(queue.console(job_id))):
        assert not [value for value in secrets if value in text], text
