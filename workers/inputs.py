"""The inputs every vendor's jobs take: s3 references, refused with an error naming the field."""
from __future__ import annotations

from typing import Any

from geoqueue.s3ref import BadReference, S3Ref, parse_ref
from workers.jobtask import InvalidInput


def object_ref(value: Any, field: str) -> S3Ref:
    try:
        return parse_ref(value, field)
    except BadReference as exc:
        raise InvalidInput(str(exc), field=field) from exc


def prefix_ref(value: Any, field: str) -> S3Ref:
    """A prefix always ends in '/', so that s3://b/site never takes in s3://b/site2/..."""
    try:
        ref = parse_ref(value, field, prefix=True)
    except BadReference as exc:
        raise InvalidInput(str(exc), field=field) from exc
    return ref if not ref.key or ref.key.endswith("/") else S3Ref(ref.bucket, ref.key + "/")
