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


MANIFEST_COLUMNS = ["file", "run", "index", "anchor", "px", "py", "pz",
                    *[f"r{i}{j}" for i in range(3) for j in range(3)],
                    "fx", "fy", "ox", "oy", "latitude", "longitude", "altitude"]


def immersal_site(count: int, origin: tuple[float, float, float], width: int = 320, height: int = 240):
    """A walk of `count` photos with tracker poses and GPS, as (file name, JPEG bytes) pairs and
    the Immersal manifest (CSV text) describing them."""
    import csv

    intrinsics = {"fx": width * 0.9, "fy": width * 0.9, "ox": width / 2, "oy": height / 2}
    photos, rows = [], []
    for index in range(count):
        name = f"img-{index:03d}.jpg"
        photos.append((name, scene(500 + index, width, height)))
        rows.append({"file": name, "run": 0, "index": index, "anchor": int(index == 0),
                     "px": 0.5 * index, "py": 1.6, "pz": -0.25 * index,
                     **{f"r{i}{j}": float(i == j) for i in range(3) for j in range(3)}, **intrinsics,
                     "latitude": origin[0] + 1e-5 * index, "longitude": origin[1] + 2e-5 * index,
                     "altitude": origin[2]})
    manifest = io.StringIO()
    writer = csv.DictWriter(manifest, fieldnames=MANIFEST_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return photos, manifest.getvalue(), intrinsics


def geotagged(seed: int, latitude: float, longitude: float, taken, heading: float = 0.0,
              width: int = 160, height: int = 120) -> bytes:
    """A JPEG with the EXIF an upload to Mapillary needs: GPS position with its refs, heading
    and the time it was taken (DateTimeOriginal)."""
    from PIL import ExifTags

    def dms(value: float) -> tuple:
        value = abs(value)
        degrees, minutes = int(value), int(value * 60) % 60
        return (degrees, minutes, round((value * 3600) % 60, 4))

    img = Image.open(io.BytesIO(scene(seed, width, height)))
    exif = Image.Exif()
    exif[ExifTags.Base.DateTime] = taken.strftime("%Y:%m:%d %H:%M:%S")
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken.strftime("%Y:%m:%d %H:%M:%S")
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({ExifTags.GPS.GPSLatitudeRef: "N" if latitude >= 0 else "S", ExifTags.GPS.GPSLatitude: dms(latitude),
                ExifTags.GPS.GPSLongitudeRef: "E" if longitude >= 0 else "W", ExifTags.GPS.GPSLongitude: dms(longitude),
                ExifTags.GPS.GPSImgDirection: heading})
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=90, exif=exif)
    return out.getvalue()
