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


def immersal_site(count: int, origin: tuple[float, float, float], width: int = 320, height: int = 240,
                  run: int = 0, seed: int = 500):
    """A walk of `count` photos with tracker poses and GPS, as (file name, JPEG bytes) pairs and
    the Immersal manifest (CSV text) describing them; `run` is the tracker session of every row."""
    intrinsics = {"fx": width * 0.9, "fy": width * 0.9, "ox": width / 2, "oy": height / 2}
    photos = [(f"img-{index:03d}.jpg", scene(seed + index, width, height)) for index in range(count)]
    rows = manifest_rows([name for name, _ in photos], run, intrinsics, origin)
    return photos, manifest_csv(rows), intrinsics


def manifest_rows(names: list[str], run: int, intrinsics: dict[str, float],
                  origin: tuple[float, float, float] | None = None) -> list[dict]:
    """An Immersal manifest's rows for photos taken walking along one tracker run, the first an
    anchor; with `origin`, GPS too (a walk north-east from it)."""
    rows = []
    for index, name in enumerate(names):
        row = {"file": name, "run": run, "index": index, "anchor": int(index == 0),
               "px": 0.5 * index, "py": 1.6, "pz": -0.25 * index,
               **{f"r{i}{j}": float(i == j) for i in range(3) for j in range(3)}, **intrinsics}
        if origin:
            row.update(latitude=origin[0] + 1e-5 * index, longitude=origin[1] + 2e-5 * index, altitude=origin[2])
        rows.append(row)
    return rows


def manifest_csv(rows: list[dict]) -> str:
    import csv

    manifest = io.StringIO()
    writer = csv.DictWriter(manifest, fieldnames=MANIFEST_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return manifest.getvalue()


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


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same picture made a distinct file: a COM segment right after the SOI marker."""
    import struct

    comment = text.encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:]


def survey_photos(count: int, picture: bytes | None = None) -> list[tuple[str, bytes]]:
    """A drone survey: `count` distinct JPEGs named as a drone names them."""
    base = picture or scene(0, 64, 48)
    return [(f"DJI_{i:04d}.JPG", with_comment(base, f"DJI_{i:04d}.JPG")) for i in range(count)]


def drive_photos(count: int, start, origin: tuple[float, float] = (35.17, 33.365), seed: int = 900,
                 step_s: float = 2.0) -> list[tuple[str, bytes]]:
    """One drive north: `count` geotagged JPEGs a few metres and `step_s` seconds apart (one sequence)."""
    from datetime import timedelta

    return [(f"{i:03d}.jpg", geotagged(seed + i, origin[0] + 0.00004 * i, origin[1],
                                       start + timedelta(seconds=step_s * i))) for i in range(count)]
