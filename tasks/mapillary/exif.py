"""What an image must carry to be uploaded to Mapillary, read from its EXIF with exifread.

The legacy upload notes (docs/vendors/mapillary.md#exif) name the fields: GPSLatitude,
GPSLongitude and their refs, and a time from DateTime, DateTimeOriginal (IFD0 or the Exif IFD),
DateTimeDigitized or GPSDateStamp. We prefer the capture time as mapillary_tools does
(DateTimeOriginal, then DateTimeDigitized, then the file's DateTime, then the GPS stamp).
The heading (GPSImgDirection, else GPSTrack) is optional; it tells near-duplicates apart.
"""
from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import exifread

from services.snippets import snippet

JPEG_MAGIC = b"\xff\xd8\xff"
# EXIF lives in the APP1 segment at the start of the file, which cannot exceed 64 KiB.
EXIF_HEAD_BYTES = 128 * 1024

# exifread's tag name -> the name users know from exiv2 (and the legacy notes), in order of preference.
CAPTURE_TIME_TAGS = (
    ("EXIF DateTimeOriginal", "EXIF SubSecTimeOriginal", "Exif.Photo.DateTimeOriginal"),
    ("Image DateTimeOriginal", None, "Exif.Image.DateTimeOriginal"),
    ("EXIF DateTimeDigitized", "EXIF SubSecTimeDigitized", "Exif.Photo.DateTimeDigitized"),
    ("Image DateTime", "EXIF SubSecTime", "Exif.Image.DateTime"),
)
# EXIF writes "YYYY:MM:DD HH:MM:SS"; exifread's builtin types turn the date part into YYYY-MM-DD.
EXIF_TIME = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})$")
EXIF_DATE = re.compile(r"(\d{4})[:-](\d{2})[:-](\d{2})$")

logging.getLogger("exifread").setLevel(logging.ERROR)   # it warns about every oddity it skips


class Rejected(ValueError):
    """The image cannot be uploaded; the message says why, in words a user can act on."""


@dataclass(frozen=True)
class Geotag:
    latitude: float
    longitude: float
    captured_at: float               # seconds since the epoch; EXIF times without an offset are taken as UTC
    heading: float | None = None     # degrees clockwise from north


def read_geotag(head: bytes) -> Geotag:
    """The position, capture time and heading of a JPEG from its first bytes, or Rejected."""
    if not head.startswith(JPEG_MAGIC):
        raise Rejected("not a JPEG image")
    if _exif_cut_short(head):
        raise Rejected("EXIF segment cut short (truncated file)")
    try:
        tags = exifread.process_file(io.BytesIO(head), details=False, extract_thumbnail=False, builtin_types=True)
    except Exception as exc:   # exifread raises whatever its parser hits on a broken segment
        raise Rejected(f"unreadable EXIF ({type(exc).__name__})") from exc
    if not tags:
        raise Rejected("no EXIF metadata")
    latitude = _coordinate(tags, "Latitude", ("N", "S"), 90.0)
    longitude = _coordinate(tags, "Longitude", ("E", "W"), 180.0)
    if latitude == 0.0 and longitude == 0.0:
        raise Rejected("GPS position is 0,0 (no fix)")
    return Geotag(latitude, longitude, _capture_time(tags), _heading(tags))


def _exif_cut_short(head: bytes) -> bool:
    """Whether the APP1 Exif segment runs past the bytes we have: exifread would read zeros there
    and report a wrong position instead of failing."""
    position = 2
    while position + 4 <= len(head) and head[position] == 0xFF:
        marker, length = head[position + 1], int.from_bytes(head[position + 2:position + 4], "big")
        if marker == 0xDA:      # start of scan: the image data, no metadata after it
            return False
        if marker == 0xE1 and head[position + 4:position + 10] == b"Exif\x00\x00":
            return position + 2 + length > len(head)
        position += 2 + length
    return False


def _coordinate(tags: dict[str, Any], axis: str, refs: tuple[str, str], bound: float) -> float:
    value, ref = tags.get(f"GPS GPS{axis}"), tags.get(f"GPS GPS{axis}Ref")
    if value is None:
        raise Rejected(f"no GPS {axis.lower()} (Exif.GPSInfo.GPS{axis})")
    if not isinstance(ref, str) or ref.strip().upper() not in refs:
        raise Rejected(f"no GPS {axis.lower()} reference {'/'.join(refs)} (Exif.GPSInfo.GPS{axis}Ref)")
    degrees = _degrees(value)
    if degrees is None or degrees > bound:
        raise Rejected(f"GPS {axis.lower()} {snippet(value)} is not a valid angle")
    return -degrees if ref.strip().upper() == refs[1] else degrees


def _degrees(value: Any) -> float | None:
    """[degrees, minutes, seconds] (or a single number) as decimal degrees."""
    parts = value if isinstance(value, list) else [value]
    if not 1 <= len(parts) <= 3 or not all(isinstance(p, (int, float)) and p >= 0 for p in parts):
        return None
    return sum(float(p) / 60 ** i for i, p in enumerate(parts))


def _capture_time(tags: dict[str, Any]) -> float:
    for tag, subsec_tag, name in CAPTURE_TIME_TAGS:
        if tag in tags:
            return _parse_time(tags[tag], tags.get(subsec_tag) if subsec_tag else None, name)
    if "GPS GPSDate" in tags and "GPS GPSTimeStamp" in tags:
        return _gps_time(tags["GPS GPSDate"], tags["GPS GPSTimeStamp"])
    raise Rejected("no capture time (Exif.Photo.DateTimeOriginal, Exif.Image.DateTimeOriginal, "
                   "Exif.Photo.DateTimeDigitized, Exif.Image.DateTime or Exif.GPSInfo.GPSDateStamp)")


def _parse_time(value: Any, subsec: Any, name: str) -> float:
    match = EXIF_TIME.match(str(value).strip())
    try:
        moment = datetime(*map(int, match.groups()), tzinfo=UTC)
    except (AttributeError, ValueError):
        raise Rejected(f"capture time {snippet(value)} in {name} is not YYYY:MM:DD HH:MM:SS") from None
    digits = str(subsec or "").strip()
    fraction = float(f"0.{digits}") if digits.isdigit() else 0.0
    return moment.timestamp() + fraction


def _gps_time(date: Any, stamp: Any) -> float:
    match = EXIF_DATE.match(str(date).strip())
    try:
        day = datetime(*map(int, match.groups()), tzinfo=UTC)
        hours, minutes, seconds = (float(part) for part in stamp)
    except (AttributeError, ValueError, TypeError):
        raise Rejected(f"GPS date {snippet(date)} and time {snippet(stamp)} (Exif.GPSInfo.GPSDateStamp) are not "
                       "readable") from None
    return (day + timedelta(hours=hours, minutes=minutes, seconds=seconds)).timestamp()


def _heading(tags: dict[str, Any]) -> float | None:
    for tag in ("GPS GPSImgDirection", "GPS GPSTrack"):
        value = tags.get(tag)
        if isinstance(value, (int, float)) and 0 <= value <= 360:
            return float(value) % 360.0
    return None
