"""Immersal stand-in: what it stores (workspace images and maps), and a map's status read off the clock."""
from __future__ import annotations

import io
import lzma
from dataclasses import dataclass, field
from typing import Any

from PIL import Image as PILImage

# Share of construct_seconds after which a map leaves pending, and reaches sparse.
PENDING_SHARE, PROCESSING_SHARE = 0.1, 0.6
ROTATION_FIELDS = tuple(f"r{i}{j}" for i in range(3) for j in range(3))


@dataclass(frozen=True)
class StoredImage:
    run: int
    index: int
    anchor: bool
    position: tuple[float, float, float]
    rotation: tuple[float, ...]              # r00, r01, ... r22
    gps: tuple[float, float, float] | None   # latitude, longitude, altitude
    data: bytes
    sha256: str
    readable: bool                           # Pillow could open it; unreadable images do not build


@dataclass
class StoredMap:
    id: int
    owner: str
    bank: int
    name: str
    kind: int                                # 0 construction, 1 stitch (the vendor's type)
    images: list[StoredImage]
    size: int
    created: float
    fails: bool
    options: dict[str, Any] = field(default_factory=dict)   # construct options as received
    privacy: int = 0
    content: bytes = b""
    gps: tuple[float, float, float] | None = None
    ecef: list[float] | None = None

    def status(self, now: float, seconds: float) -> str:
        share = (now - self.created) / seconds if seconds > 0 else 1.0
        if share < PENDING_SHARE:
            return "pending"
        if share < PROCESSING_SHARE:
            return "processing"
        if self.fails:
            return "failed"
        return "sparse" if share < 1.0 else "done"

    def modified(self, now: float, seconds: float) -> float:
        """When the status last changed."""
        share = (now - self.created) / seconds if seconds > 0 else 1.0
        reached = max((s for s in (0.0, PENDING_SHARE, PROCESSING_SHARE, 1.0) if s <= share), default=0.0)
        if self.fails:
            reached = min(reached, PROCESSING_SHARE)
        return self.created + reached * max(seconds, 0.0)


def map_bytes(images: list[StoredImage]) -> bytes:
    """A deterministic .bytes file derived from the images; LZMA-alone like the vendor's (b64 'XQAAA...')."""
    lines = [b"geoqueue sandbox immersal map 1"]
    for img in images:
        pose = " ".join(repr(v) for v in (*img.position, *img.rotation))
        lines.append(f"{img.run} {img.index} {img.sha256} {pose}".encode())
    return lzma.compress(b"\n".join(lines), format=lzma.FORMAT_ALONE)


def readable_image(data: bytes) -> bool:
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            img.verify()
        return True
    except Exception:  # Pillow raises many types for undecodable input
        return False
