"""s3://bucket/key references: how jobs name their inputs and outputs (never bytes in messages)."""
from __future__ import annotations

import re
from dataclasses import dataclass

_BUCKET_RULE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class BadReference(ValueError):
    """An s3:// reference that cannot be right; the message names the field and the value."""


@dataclass(frozen=True)
class S3Ref:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    def child(self, name: str) -> S3Ref:
        return S3Ref(self.bucket, f"{self.key.rstrip('/')}/{name}" if self.key else name)

    def within(self, prefix: S3Ref) -> bool:
        """True when this object or prefix lies under `prefix` (a prefix ends in '/' or is the bucket)."""
        return self.bucket == prefix.bucket and self.key.startswith(prefix.key)

    def __str__(self) -> str:
        return self.uri


def parse_ref(value: object, field: str = "uri", prefix: bool = False) -> S3Ref:
    """Parse `s3://bucket/key`; with prefix=True the key may be empty or end in '/'."""
    if not isinstance(value, str) or not value.startswith("s3://"):
        raise BadReference(f"{field}: {value!r} is not an s3://bucket/key reference")
    bucket, _, key = value[len("s3://"):].partition("/")
    if not _BUCKET_RULE.match(bucket):
        raise BadReference(f"{field}: {value!r} has no valid bucket name")
    if not prefix and (not key or key.endswith("/")):
        raise BadReference(f"{field}: {value!r} names no object (the key is empty or ends in '/')")
    if key and any(part in (".", "..") for part in key.split("/")):
        # An HTTP client resolves these in a (presigned) URL, leaving the bucket or the prefix.
        raise BadReference(f"{field}: {value!r} has a '.' or '..' path segment")
    return S3Ref(bucket, key)


def parse_prefix(value: object, field: str = "prefix") -> S3Ref:
    """A prefix always ends in '/', so that s3://b/site never takes in s3://b/site2/..."""
    ref = parse_ref(value, field, prefix=True)
    return ref if not ref.key or ref.key.endswith("/") else S3Ref(ref.bucket, ref.key + "/")
