"""Object storage: s3://bucket/key references, presigned URLs, streaming reads and writes."""
from __future__ import annotations

import functools
from typing import Iterator

import boto3
from botocore.client import Config
from botocore.exceptions import ClientError

from geoqueue.s3ref import S3Ref
from workers.settings import SEVEN_DAYS, Settings, get_settings


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
    )
    return boto3.client("s3", endpoint_url=endpoint, region_name=settings.s3_region, config=config, **credentials)


class ObjectStore:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.s3 = _client(self.settings, self.settings.s3_endpoint_url)
        # The host is signed into a presigned URL, so URLs for vendors are signed for the public endpoint.
        public = self.settings.s3_public_endpoint_url or self.settings.s3_endpoint_url
        self.public_s3 = self.s3 if public == self.settings.s3_endpoint_url else _client(self.settings, public)

    # --- presigning ---
    def _expires(self, expires: int | None) -> int:
        expires = self.settings.presign_expires if expires is None else expires
        if not 0 < expires <= SEVEN_DAYS:
            raise ValueError(f"presigned URL lifetime {expires}s is outside 1..{SEVEN_DAYS}s (SigV4 maximum)")
        return expires

    def presign_get(self, ref: S3Ref, expires: int | None = None, for_vendor: bool = True) -> str:
        client = self.public_s3 if for_vendor else self.s3
        return client.generate_presigned_url("get_object", Params={"Bucket": ref.bucket, "Key": ref.key},
                                             ExpiresIn=self._expires(expires))

    def presign_put(self, ref: S3Ref, expires: int | None = None) -> str:
        # No ContentType signed: the vendor's PUT header is undocumented, and a signed one must match.
        return self.public_s3.generate_presigned_url("put_object", Params={"Bucket": ref.bucket, "Key": ref.key},
                                                     ExpiresIn=self._expires(expires))

    # --- reading ---
    def size(self, ref: S3Ref) -> int | None:
        """The object's size, or None when it does not exist."""
        try:
            return int(self.s3.head_object(Bucket=ref.bucket, Key=ref.key)["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def head_bytes(self, ref: S3Ref, count: int = 16) -> bytes:
        body = self.s3.get_object(Bucket=ref.bucket, Key=ref.key, Range=f"bytes=0-{count - 1}")["Body"]
        return body.read()

    def read(self, ref: S3Ref) -> bytes:
        return self.s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()

    def open(self, ref: S3Ref):
        """A streaming body: read it in chunks, never whole."""
        return self.s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"]

    def list(self, prefix: S3Ref) -> Iterator[tuple[S3Ref, int]]:
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=prefix.bucket, Prefix=prefix.key):
            for item in page.get("Contents", []):
                yield S3Ref(prefix.bucket, item["Key"]), int(item["Size"])

    # --- writing ---
    def write(self, ref: S3Ref, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.s3.put_object(Bucket=ref.bucket, Key=ref.key, Body=data, ContentType=content_type)

    def upload_stream(self, ref: S3Ref, stream, content_type: str = "application/octet-stream") -> None:
        """Multipart upload from a file-like object, in parts, with bounded memory."""
        self.s3.upload_fileobj(stream, ref.bucket, ref.key, ExtraArgs={"ContentType": content_type})

    def ensure_bucket(self, bucket: str) -> None:
        try:
            self.s3.head_bucket(Bucket=bucket)
        except ClientError:
            kwargs = {}
            if self.settings.s3_region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.s3_region}
            self.s3.create_bucket(Bucket=bucket, **kwargs)


@functools.lru_cache(maxsize=1)
def get_store() -> ObjectStore:
    return ObjectStore()
