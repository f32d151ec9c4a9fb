"""Geotagged images into upload sequences, with mapillary_tools' rules (docs/vendors/mapillary.md#sequences):
sort by capture time, cut where more than 60 s or 100 m separate two images, drop an image
taken within 0.1 m and 5 degrees of the previous one kept, and keep sequences to 1,000 images
(staff "never recommend sequences bigger than 1k images")."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.mapillary.exif import Geotag

MAX_SEQUENCE_LENGTH = 1000
CUTOFF_TIME_S = 60.0
CUTOFF_DISTANCE_M = 100.0
DUPLICATE_DISTANCE_M = 0.1
DUPLICATE_ANGLE_DEG = 5.0
EARTH_RADIUS_M = 6_371_008.8

@dataclass(frozen=True)
class Placed:
    """An image (known by its name, e.g. an S3 key) and where and when it was taken."""
    name: str
    geotag: Geotag


@dataclass
class Split:
    sequences: list[list[Placed]]
    duplicates: dict[str, str]         # dropped image -> the image it duplicates


def distance_m(a: Geotag, b: Geotag) -> float:
    """Great-circle distance (haversine)."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat, dlon = lat2 - lat1, math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def angle_between(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def is_duplicate(kept: Geotag, candidate: Geotag) -> bool:
    """Same place and same heading; without a heading on either side, the place decides."""
    if distance_m(kept, candidate) > DUPLICATE_DISTANCE_M:
        return False
    if kept.heading is None or candidate.heading is None:
        return True
    return angle_between(kept.heading, candidate.heading) <= DUPLICATE_ANGLE_DEG


def split_sequences(images: Sequence[Placed], max_length: int = MAX_SEQUENCE_LENGTH) -> Split:
    """Sequences in capture order (ties broken by name, so the split is the same every time)."""
    ordered = sorted(images, key=lambda image: (image.geotag.captured_at, image.name))
    split: Split = Split([], {})
    for run in _runs(ordered):
        kept = _without_duplicates(run, split.duplicates)
        split.sequences.extend(kept[i:i + max_length] for i in range(0, len(kept), max_length))
    return split


def _runs(ordered: list[Placed]) -> list[list[Placed]]:
    """Cut wherever the time or distance gap to the previous image is too large."""
    runs: list[list[Placed]] = []
    for image in ordered:
        if runs:
            previous = runs[-1][-1].geotag
            gap_s = image.geotag.captured_at - previous.captured_at
            if gap_s <= CUTOFF_TIME_S and distance_m(previous, image.geotag) <= CUTOFF_DISTANCE_M:
                runs[-1].append(image)
                continue
        runs.append([image])
    return runs


def _without_duplicates(run: list[Placed], duplicates: dict[str, str]) -> list[Placed]:
    kept: list[Placed] = []
    for image in run:
        if kept and is_duplicate(kept[-1].geotag, image.geotag):
            duplicates[image.name] = kept[-1].name
        else:
            kept.append(image)
    return kept
