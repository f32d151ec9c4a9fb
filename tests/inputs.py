"""What the tests put in S3 for jobs to read, and the images they hand to vendor clients."""
from __future__ import annotations

import hashlib
import io
import uuid

import numpy as np
from PIL import Image

from devstack.samples import manifest_csv, manifest_rows, scene, survey_photos
from geoqueue.s3ref import S3Ref

BUCKET = "geoqueue"
HELSINKI = (60.1699, 24.9384, 25.0)
# The camera of the sites below (64x48 images), as a manifest names it and as a client call takes it.
INTRINSICS = {"fx": 60.0, "fy": 60.0, "ox": 32.0, "oy": 24.0}
CLIENT_INTRINSICS = (120.0, 120.0, 32.0, 24.0)


def noise_jpeg(seed: int, size: tuple[int, int] = (64, 48), quality: int = 90) -> bytes:
    """A JPEG of random pixels: incompressible, so its size is what a photo of that size weighs."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def put_images(store, count: int, prefix: str | None = None, size=(160, 120)) -> list[S3Ref]:
    """`count` distinct JPEGs under a fresh (or the given) prefix."""
    prefix = prefix or f"t/{uuid.uuid4().hex[:8]}/"
    refs = []
    for i in range(count):
        ref = S3Ref(BUCKET, f"{prefix}img-{i:03d}.jpg")
        store.write(ref, scene(i, *size), "image/jpeg")
        refs.append(ref)
    return refs


def prefix_of(refs: list[S3Ref]) -> str:
    """The s3:// prefix that put_images put `refs` under, as a batch job takes it."""
    return refs[0].uri.rsplit("/", 1)[0] + "/"


def put_site(store, count: int, run: int = 0, seed: int = 0, gps: bool = False) -> tuple[str, list[dict]]:
    """An Immersal site: `count` JPEGs and manifest.csv under a fresh prefix; the prefix and the manifest rows."""
    prefix = f"sites/{uuid.uuid4().hex[:8]}/"
    names = [f"img-{index:03d}.jpg" for index in range(count)]
    for index, name in enumerate(names):
        store.write(S3Ref(BUCKET, prefix + name), scene(seed * 1000 + index, 64, 48), "image/jpeg")
    rows = manifest_rows(names, run, INTRINSICS, HELSINKI if gps else None)
    write_manifest(store, prefix, rows)
    return f"s3://{BUCKET}/{prefix}", rows


def write_manifest(store, prefix: str, rows: list[dict]) -> None:
    store.write(S3Ref(BUCKET, prefix + "manifest.csv"), manifest_csv(rows).encode(), "text/csv")


def put_survey(store, count: int, picture: bytes | None = None) -> tuple[str, dict[str, str]]:
    """A drone survey: `count` distinct JPEGs under a fresh prefix; the prefix and each file's sha256."""
    folder = f"surveys/{uuid.uuid4().hex[:8]}/"
    digests = {}
    for name, data in survey_photos(count, picture):
        store.write(S3Ref(BUCKET, folder + name), data, "image/jpeg")
        digests[name] = hashlib.sha256(data).hexdigest()
    return f"s3://{BUCKET}/{folder}", digests


def image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    """A small distinct image for a client call."""
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()
