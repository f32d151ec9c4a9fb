"""No secret leaves the workers: not in Redis (every key), results, events or logs."""
from __future__ import annotations

import hashlib

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
