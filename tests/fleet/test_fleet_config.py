"""The fleet's settings: reliability invariants, presigning rules, the README table."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from config.settings import Settings, markdown_table
from geoqueue.s3ref import BadReference, S3Ref, parse_ref
from services.storage import ObjectStore
from workers.celery_app import create_app


def test_visibility_timeout_is_set_in_all_three_places_and_bounds_every_limit():
    settings = Settings(visibility_timeout=900, task_time_limit=800, retry_backoff_max=120, immersity_timeout=300)
    conf = create_app(settings).conf
    assert conf.broker_transport_options["visibility_timeout"] == 900
    assert conf.result_backend_transport_options["visibility_timeout"] == 900
    assert conf.visibility_timeout == 900
    assert conf.task_time_limit < 900 and conf.task_soft_time_limit < conf.task_time_limit
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.worker_send_task_events


@pytest.mark.parametrize("bad", [
    {"visibility_timeout": 600, "task_time_limit": 600},
    {"visibility_timeout": 600, "task_time_limit": 500, "retry_backoff_max": 700},
    {"task_time_limit": 200, "immersity_timeout": 300},
    {"presign_expires": 8 * 24 * 3600},
])
def test_settings_that_would_run_tasks_twice_are_refused(bad):
    with pytest.raises(ValidationError):
        Settings(**bad)


def test_every_setting_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for line in markdown_table().splitlines()[2:]:
        variable = line.split("|")[1].strip()
        assert variable in readme, f"{variable} is missing from README's settings table"


def test_presigned_urls_are_sigv4_path_style_on_the_public_endpoint():
    settings = Settings(s3_endpoint_url="http://minio.internal:9000", s3_public_endpoint_url="https://files.example.com",
                        s3_access_key_id="AKIDEXAMPLE", s3_secret_access_key="secret-example", s3_region="us-east-1")
    store = ObjectStore(settings)
    url = store.presign_put(S3Ref("bucket", "a/b.png"))
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.netloc == "files.example.com" and parts.path == "/bucket/a/b.png"
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["3600"]
    assert query["X-Amz-SignedHeaders"] == ["host"]  # no Content-Type the vendor would have to match
    assert urlsplit(store.presign_get(S3Ref("bucket", "k"), for_vendor=False)).netloc == "minio.internal:9000"
    with pytest.raises(ValueError):
        store.presign_get(S3Ref("bucket", "k"), expires=7 * 24 * 3600 + 1)


@pytest.mark.parametrize("value", ["http://x/y", "s3://", "s3://Bad_Bucket/k", "s3://bucket/", 42])
def test_malformed_references_name_the_field(value):
    with pytest.raises(BadReference, match="image"):
        parse_ref(value, "image")


def test_prefix_references_may_end_in_a_slash():
    assert parse_ref("s3://bucket/photos/", prefix=True) == S3Ref("bucket", "photos/")


def test_a_worker_on_glibc_can_keep_its_malloc_arenas_down():
    import platform

    from workers.malloc import limit_arenas

    assert limit_arenas(2) == (platform.libc_ver()[0] == "glibc")
