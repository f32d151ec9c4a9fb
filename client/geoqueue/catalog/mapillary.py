"""Mapillary jobs: harvesting an owner's imagery in a bounding box as the toolset does; uploading sequences."""
from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from geoqueue.params import Choice, Digits, InvalidParams, JobSpec, ListOf, Number, Param, S3Prefix, Text, Type, Whole

MAX_PARALLEL = 64
MAX_FIELDS = 64   # the image fields are 29; a few subfields of each is plenty
QUALITIES = ("256", "1024", "2048", "original", 256, 1024, 2048)  # as text, or a number
OWNER_FIELDS = ("organization_id", "creator_id")
MERCATOR_LATITUDE = 85.0511
IMAGE_FIELDS = frozenset({
    "id", "altitude", "atomic_scale", "camera_parameters", "camera_type", "captured_at", "compass_angle",
    "computed_altitude", "computed_compass_angle", "computed_geometry", "computed_rotation", "creator", "detections",
    "exif_orientation", "geometry", "height", "is_pano", "make", "merge_cc", "mesh", "model", "quality_score",
    "sequence", "sfm_cluster", "width", "thumb_256_url", "thumb_1024_url", "thumb_2048_url", "thumb_original_url",
})


class ImageField(Type):
    """A Graph image field, or a subfield of one (`creator.username`)."""

    NAME = Text(max_length=200, describe="an image field name")

    def check(self, value: Any, field: str) -> str:
        name = self.NAME.check(value, field)
        if name.split(".", 1)[0] not in IMAGE_FIELDS:
            raise InvalidParams(f"{field}: unknown image field {name!r} (known: {', '.join(sorted(IMAGE_FIELDS))})",
                                field=field)
        return name

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^({'|'.join(sorted(IMAGE_FIELDS))})(\\..+)?$",
                "maxLength": self.NAME.max_length}


def capture_time_ms(value: str) -> int:
    """A CaptureTime as epoch milliseconds, the unit of the Graph API's `captured_at`."""
    moment = datetime.fromisoformat(value)
    return round((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


class CaptureTime(Type):
    """A capture time as the Graph API's `start_captured_at` takes it, ISO 8601: a time with its
    offset (`2025-06-01T00:00:00Z`), or a date, meaning its midnight UTC. A time without an offset
    is refused: whose midnight it means would be a guess."""

    PATTERN = r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2}))?"
    MAX_LENGTH = len("2025-06-01T00:00:00.000000+00:00")     # the longest the pattern admits

    def check(self, value: Any, field: str) -> str:
        try:
            if isinstance(value, str) and len(value) <= self.MAX_LENGTH and re.fullmatch(self.PATTERN, value):
                capture_time_ms(value)
                return value
        except ValueError:
            pass    # a month 13 or a 25th hour
        raise InvalidParams(f"{field}: must be an ISO 8601 time with its offset (2025-06-01T00:00:00Z) "
                            f"or a date (2025-06-01, midnight UTC), got {value!r}", field=field)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{self.PATTERN}$", "maxLength": self.MAX_LENGTH,
                "examples": ["2025-06-01T00:00:00Z"]}


def one_owner_in_bbox(params: dict[str, Any]) -> None:
    if sum(params.get(f) is not None for f in OWNER_FIELDS) != 1:
        raise InvalidParams("give exactly one of organization_id and creator_id", field="organization_id")
    west, south, east, north = params["bbox"]
    if not (west < east and -MERCATOR_LATITUDE <= south < north <= MERCATOR_LATITUDE):
        raise InvalidParams(f"bbox: {params['bbox']!r} is not min_lon < max_lon and min_lat < max_lat with latitudes "
                            f"within ±{MERCATOR_LATITUDE} (web mercator)", field="bbox")


JOBS = (
    JobSpec("mapillary.harvest", "An owner's sequences with images in a bbox: ids, metadata, thumbnails and the "
                                 "toolset's three CSVs.", {
        "organization_id": Param(Digits(), "the organization whose imagery to harvest"),
        "creator_id": Param(Digits(), "or the creator whose imagery to harvest"),
        "bbox": Param(ListOf(Number(-180, 180), 4, 4), "[min_lon, min_lat, max_lon, max_lat], latitudes within "
                                                       f"±{MERCATOR_LATITUDE} (web mercator)", required=True),
        "destination": Param(S3Prefix(output=True), "where the CSVs and images go", required=True),
        "fields": Param(ListOf(ImageField(), 1, MAX_FIELDS, unique=True),
                        f"up to {MAX_FIELDS} Graph image fields, default captured_at, compass_angle, the thumbnail "
                        "URL and width"),
        "quality": Param(Choice(QUALITIES), "thumbnail size, default 256"),
        "max_parallel": Param(Whole(1, MAX_PARALLEL), "sequences at once (default GEOQUEUE_MAPILLARY_MAX_PARALLEL)"),
        "captured_since": Param(CaptureTime(), "only images captured at or after this time, added to the "
                                               "destination's earlier harvest: its CSVs appended, images "
                                               "already there skipped by id"),
    }, rule=one_owner_in_bbox, rule_doc="Give exactly one of `organization_id` and `creator_id`."),
    JobSpec("mapillary.upload_sequence", "Images with GPS EXIF, split into sequences and uploaded, each image once.", {
        "images": Param(S3Prefix(), "the JPEGs", required=True),
        "organization_id": Param(Digits(), "the organization to upload for"),
        "max_parallel": Param(Whole(1, MAX_PARALLEL), "images at once (default GEOQUEUE_MAPILLARY_MAX_PARALLEL)"),
    }),
)
