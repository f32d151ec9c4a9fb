"""What every job asks of an input image: that it exists, is not empty, and is a JPEG or PNG; and,
where the fleet holds all of it, that it is whole."""
from __future__ import annotations

from geoqueue.s3ref import S3Ref
from runtime.errors import InvalidInput
from services.storage import ObjectStore

JPEG_START, PNG_START = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
IMAGE_MAGIC = (JPEG_START, PNG_START)
# A JPEG's end-of-image marker cannot occur inside its compressed data (0xFF is stuffed there), so
# one in the last bytes means the file reached its end; metadata some cameras append comes after it.
JPEG_END, JPEG_TAIL = b"\xff\xd9", 64 * 1024
PNG_END = b"IEND\xaeB`\x82"   # the IEND chunk's type and its fixed CRC


def looks_like_image(head: bytes) -> bool:
    return head.startswith(IMAGE_MAGIC)


def check_image(store: ObjectStore, ref: S3Ref, field: str) -> None:
    """Exists, is not empty, and starts like a JPEG or PNG."""
    size = store.size(ref, field)
    if not size:
        raise InvalidInput(f"{field}: {ref} {'does not exist' if size is None else 'is empty'}", field=field)
    if not looks_like_image(store.head_bytes(ref, len(PNG_START))):
        raise InvalidInput(f"{field}: {ref} is not a JPEG or PNG image", field=field)


def check_whole_image(data: bytes, ref: S3Ref, field: str) -> None:
    """A JPEG or PNG with its end: a file cut short is refused rather than sent to a vendor, which
    would answer as if the picture showed nothing it knows."""
    if data.startswith(JPEG_START):
        whole, kind = JPEG_END in data[-JPEG_TAIL:], "JPEG"
    elif data.startswith(PNG_START):
        whole, kind = PNG_END in data[-64:], "PNG"
    else:
        raise InvalidInput(f"{field}: {ref} is not a JPEG or PNG image", field=field)
    if not whole:
        raise InvalidInput(f"{field}: {ref} is not a whole {kind} image: it ends before its end marker "
                           f"({len(data)} bytes; cut short?)", field=field)
