"""What only a worker can check of an Immersity job's inputs: that the images exist and are images."""
from __future__ import annotations

from geoqueue.s3ref import S3Ref
from runtime import InvalidInput
from services.storage import get_store

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


def check_image(ref: S3Ref, field: str) -> None:
    """Exists, is not empty, and starts like a JPEG or PNG."""
    size = get_store().size(ref, field)
    if not size:
        raise InvalidInput(f"{field}: {ref} {'does not exist' if size is None else 'is empty'}", field=field)
    if not get_store().head_bytes(ref, 8).startswith(IMAGE_MAGIC):
        raise InvalidInput(f"{field}: {ref} is not a JPEG or PNG image", field=field)
