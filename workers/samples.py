"""Sample photos for the demo and the tests: synthetic outdoor scenes, deterministic per seed."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def scene(seed: int, width: int = 320, height: int = 240, fmt: str = "JPEG") -> bytes:
    """Sky, ground and a few boxes at different distances; JPEG or PNG bytes."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    sky = np.array([110, 160, 230]) * (1 - rows) + np.array([200, 220, 250]) * rows
    ground = np.array([70, 110, 60]) + 40 * rng.random((height, width, 1))
    horizon = int(height * rng.uniform(0.35, 0.55))
    pixels = np.where(np.arange(height)[:, None, None] < horizon, sky, ground).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(pixels, (height, width, 3)).copy())
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):
        x, y = int(rng.integers(0, width - 20)), int(rng.integers(horizon - 30, height - 20))
        size = int(rng.integers(10, max(11, width // 4)))
        draw.rectangle([x, y, x + size, y + size // 2], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    out = io.BytesIO()
    img.save(out, format=fmt, quality=90) if fmt == "JPEG" else img.save(out, format=fmt)
    return out.getvalue()
