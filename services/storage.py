"""Object storage: presigned URLs, streaming reads and writes, and the fleet's output area.

Every output goes inside the output area (GEOQUEUE_S3_BUCKET under GEOQUEUE_S3_OUTPUT_PREFIX):
a caller-chosen name never leaves it. Every read and write of the fleet's store goes through here,
and while a task works for a job (services/app_context.py, set by the runtime for each task), each
is checked against the job's app (config/apps.py): only its own part of the output area is written,
and only what the app may read is read or presigned for a vendor. Storage errors come out typed: a missing
object or bucket, or a refusal, is an InvalidInput naming the reference; a dropped connection or an
S3 5xx is a TransientError worth another try.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import boto3
from botocore.client import Config
from botocore.exceptions import BotoCoreError, ClientError

from config.apps import AppAccess, get_access
from config.settings import SEVEN_DAYS, Settings, get_settings
from geoqueue.job_record import app_of, own_id
from geoqueue.s3ref import BadReference, S3Ref, parse_prefix, parse_ref
from runtime.errors import InvalidInput
from services.app_context import current_app
from vendors.errors import TransientError

MISSING = ("404", "NoSuchKey", "NotFound")
PROBLEMS = {"NoSuchBucket": "the bucket does not exist", "NoSuchKey": "it does not exist", "404": "it does not exist",
            "AccessDenied": "access is denied", "403": "access is denied",
            "InvalidBucketName": "the bucket name is invalid"}


def s3_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "error"))


@contextlib.contextmanager
def typed_errors(ref: S3Ref, field: str | None = None):
    """S3's errors as the job sees them: the reference and what is wrong with it, or a retry."""
    try:
        yield
    except ClientError as exc:
        code = s3_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status >= 500 or code in ("SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"):
            raise TransientError(f"S3: {ref}: {code}", vendor="s3", status=status or None) from exc
        what = PROBLEMS.get(code, code)
        raise InvalidInput(f"{field + ': ' if field else ''}{ref}: {what}", field=field, s3_error=code) from exc
    except BotoCoreError as exc:
        raise TransientError(f"S3: {ref}: {type(exc).__name__}", vendor="s3") from exc


def object_ref(value: object, field: str) -> S3Ref:
    try:
        return parse_ref(value, field)
    except BadReference as exc:
        raise InvalidInput(str(exc), field=field) from exc


def prefix_ref(value: object, field: str) -> S3Ref:
    try:
        return parse_prefix(value, field)
    except BadReference as exc:
        raise InvalidInput(str(exc), field=field) from exc


def pool_size(settings: Settings) -> int:
    """Connections the S3 client keeps: one per thread that may use it at once (a process shares
    one client, get_store). A transfer worker runs its task threads, and a harvest's calls write
    from up to max_parallel x calls per sequence threads; past the pool, urllib3 opens a connection
    for each request and drops it after ("Connection pool is full, discarding connection")."""
    return max(64, settings.transfer_concurrency,
               settings.mapillary_max_parallel * settings.mapillary_calls_per_sequence)


def _client(settings: Settings, endpoint: str | None):
    credentials = {}
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        credentials = {
            "aws_access_key_id": settings.s3_access_key_id.get_secret_value(),
            "aws_secret_access_key": settings.s3_secret_access_key.get_secret_value(),
        }
    config = Config(
        signature_version="s3v4",  # botocore would presign SigV2 in us-east-1 otherwise
        s3={"addressing_style": "path" if endpoint else "auto"},
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=pool_size(settings),
    )
    return boto3.client("s3", endpoint_url=endpoint, region_name=settings.s3_region, config=config, **credentials)


class ObjectStore:
    """S3 for the fleet. With `outputs` set, nothing is written outside that prefix; with `access`,
    a task working for an app reads and writes only where that app may."""

    def __init__(self, settings: Settings | None = None, outputs: S3Ref | None = None,
                 access: AppAccess | None = None) -> None:
        self.settings = settings or get_settings()
        self.outputs = outputs
        self.access = access
        self.s3 = _client(self.settings, self.settings.s3_endpoint_url)
        # The host is signed into a presigned URL, so URLs for vendors are signed for the public endpoint.
        public = self.settings.s3_public_endpoint_url or self.settings.s3_endpoint_url
        self.public_s3 = self.s3 if public == self.settings.s3_endpoint_url else _client(self.settings, public)

    # --- the output area ---
    def output(self, value: object, field: str, prefix: bool = False) -> S3Ref:
        """A caller-chosen output, refused unless it lies inside the output area."""
        ref = prefix_ref(value, field) if prefix else object_ref(value, field)
        self._writable(ref, field)
        return ref

    def _writable(self, ref: S3Ref, field: str | None = None) -> None:
        if self.outputs is not None and not ref.within(self.outputs):
            raise InvalidInput(f"{field + ': ' if field else ''}{ref} is outside the fleet's output area "
                               f"{self.outputs} (GEOQUEUE_S3_BUCKET, GEOQUEUE_S3_OUTPUT_PREFIX)", field=field)
        self._allowed(ref, field, output=True)

    def _readable(self, ref: S3Ref, field: str | None = None) -> None:
        self._allowed(ref, field, output=False)

    def _allowed(self, ref: S3Ref, field: str | None, output: bool) -> None:
        app = current_app()
        if self.access is not None and app is not None:
            problem = self.access.refusal(app, field, ref, output)
            if problem:
                raise InvalidInput(problem, field=field)

    # --- presigning ---
    def _expires(self, expires: int | None) -> int:
        expires = self.settings.presign_expires if expires is None else expires
        if not 0 < expires <= SEVEN_DAYS:
            raise ValueError(f"presigned URL lifetime {expires}s is outside 1..{SEVEN_DAYS}s (SigV4 maximum)")
        return expires

    def presign_get(self, ref: S3Ref, expires: int | None = None, for_vendor: bool = True) -> str:
        self._readable(ref)
        client = self.public_s3 if for_vendor else self.s3
        return client.generate_presigned_url("get_object", Params={"Bucket": ref.bucket, "Key": ref.key},
                                             ExpiresIn=self._expires(expires))

    def presign_put(self, ref: S3Ref, expires: int | None = None) -> str:
        self._writable(ref)
        # No ContentType signed: the vendor's PUT header is undocumented, and a signed one must match.
        return self.public_s3.generate_presigned_url("put_object", Params={"Bucket": ref.bucket, "Key": ref.key},
                                                     ExpiresIn=self._expires(expires))

    # --- reading ---
    def size(self, ref: S3Ref, field: str | None = None) -> int | None:
        """The object's size, or None when it does not exist (its bucket must)."""
        self._readable(ref, field)
        try:
            with typed_errors(ref, field):
                return int(self.s3.head_object(Bucket=ref.bucket, Key=ref.key)["ContentLength"])
        except InvalidInput as exc:
            if exc.details.get("s3_error") not in MISSING:
                raise
            if self.bucket_exists(ref.bucket):
                return None
            # HEAD answers a bare 404 either way: say which is missing.
            raise InvalidInput(f"{field + ': ' if field else ''}{ref}: {PROBLEMS['NoSuchBucket']}", field=field,
                               s3_error="NoSuchBucket") from exc

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self.s3.head_bucket(Bucket=bucket)
            return True
        except ClientError:
            return False

    def head_bytes(self, ref: S3Ref, count: int = 16) -> bytes:
        self._readable(ref)
        with typed_errors(ref):
            return self.s3.get_object(Bucket=ref.bucket, Key=ref.key, Range=f"bytes=0-{count - 1}")["Body"].read()

    def read(self, ref: S3Ref, field: str | None = None) -> bytes:
        self._readable(ref, field)
        with typed_errors(ref, field):
            return self.s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()

    def open(self, ref: S3Ref, field: str | None = None):
        """A streaming body: read it in chunks, never whole."""
        self._readable(ref, field)
        with typed_errors(ref, field):
            return self.s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"]

    def list(self, prefix: S3Ref, field: str | None = None) -> Iterator[tuple[S3Ref, int]]:
        self._readable(prefix, field)
        paginator = self.s3.get_paginator("list_objects_v2")
        with typed_errors(prefix, field):
            for page in paginator.paginate(Bucket=prefix.bucket, Prefix=prefix.key):
                for item in page.get("Contents", []):
                    yield S3Ref(prefix.bucket, item["Key"]), int(item["Size"])

    # --- writing ---
    def write(self, ref: S3Ref, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._writable(ref)
        with typed_errors(ref):
            self.s3.put_object(Bucket=ref.bucket, Key=ref.key, Body=data, ContentType=content_type)

    def upload_stream(self, ref: S3Ref, stream, content_type: str = "application/octet-stream") -> None:
        """Multipart upload from a file-like object, in parts, with bounded memory."""
        self._writable(ref)
        with typed_errors(ref):
            self.s3.upload_fileobj(stream, ref.bucket, ref.key, ExtraArgs={"ContentType": content_type})

    def ensure_bucket(self, bucket: str) -> None:
        if not self.bucket_exists(bucket):
            kwargs = {}
            if self.settings.s3_region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.s3_region}
            self.s3.create_bucket(Bucket=bucket, **kwargs)


def output_area(settings: Settings) -> S3Ref:
    return parse_prefix(f"s3://{settings.s3_bucket}/{settings.s3_output_prefix}", "GEOQUEUE_S3_OUTPUT_PREFIX")


def default_outputs(job_id: str, vendor: str) -> S3Ref:
    """Where a job's outputs go when it names none: `<its app's part>/<vendor>/<its app's id>/`."""
    return get_access().default_output(app_of(job_id), vendor).child(f"{own_id(job_id)}/")


@functools.lru_cache(maxsize=1)
def get_store() -> ObjectStore:
    """The fleet's store: writes only inside the output area, and each app only in its part."""
    return ObjectStore(outputs=output_area(get_settings()), access=get_access())
