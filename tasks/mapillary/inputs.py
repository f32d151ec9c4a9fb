"""Mapillary job parameters, checked before any vendor call, and the harvest's plan."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from geoqueue.s3ref import S3Ref
from vendors.mapillary import THUMBNAIL_RESOLUTIONS
from workers.errors import InvalidInput
from workers.settings import get_settings
from workers.storage import prefix_ref

IMAGE_FIELDS = frozenset({
    "id", "altitude", "atomic_scale", "camera_parameters", "camera_type", "captured_at", "compass_angle",
    "computed_altitude", "computed_compass_angle", "computed_geometry", "computed_rotation", "creator", "detections",
    "exif_orientation", "geometry", "height", "is_pano", "make", "merge_cc", "mesh", "model", "quality_score",
    "sequence", "sfm_cluster", "width", "thumb_256_url", "thumb_1024_url", "thumb_2048_url", "thumb_original_url",
})
OWNER_FIELDS = ("organization_id", "creator_id")


IMAGES_FOLDER = "downloaded_images"    # the toolset's image_downloads_folder


MAX_PARALLEL = 64
MISSING_SHOWN = 1000                   # ids of vanished images listed in a result (all are counted)
FAILED_SHOWN = 10                      # failed sequences or images named in an error message (details list all)


def check_id(value: Any, field: str) -> str:
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    if not text.isdigit():
        raise InvalidInput(f"{field}: must be a numeric Mapillary id, got {value!r}", field=field)
    return text


def check_bbox(value: Any) -> tuple[float, float, float, float]:
    numbers = value if isinstance(value, (list, tuple)) else ()
    if len(numbers) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                    for v in numbers):
        raise InvalidInput(f"bbox: must be [min_lon, min_lat, max_lon, max_lat], got {value!r}", field="bbox")
    west, south, east, north = (float(v) for v in numbers)
    if not (-180 <= west < east <= 180 and -85.0511 <= south < north <= 85.0511):
        raise InvalidInput(f"bbox: {value!r} is not min_lon < max_lon within ±180 and min_lat < max_lat "
                           "within ±85.0511 (web mercator)", field="bbox")
    return west, south, east, north


def check_fields(value: Any, url_field: str) -> tuple[str, ...]:
    """The Graph image fields asked for; the toolset's columns by default."""
    if value is None:
        return ("captured_at", "compass_angle", url_field, "width")
    if not isinstance(value, (list, tuple)) or not all(isinstance(f, str) and f for f in value):
        raise InvalidInput(f"fields: must be a list of image field names, got {value!r}", field="fields")
    unknown = sorted({f for f in value if f.split(".", 1)[0] not in IMAGE_FIELDS})
    if unknown:
        raise InvalidInput(f"fields: unknown image field(s) {', '.join(unknown)} (known: {', '.join(sorted(IMAGE_FIELDS))})",
                           field="fields")
    return tuple(f for f in dict.fromkeys(value) if f not in ("id", "sequence"))   # those are img_id and seq_id


def check_parallel(value: Any) -> int:
    if value is None:
        return get_settings().mapillary_max_parallel
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARALLEL:
        raise InvalidInput(f"max_parallel: must be a whole number from 1 to {MAX_PARALLEL}, got {value!r}",
                           field="max_parallel")
    return value


@dataclass(frozen=True)
class HarvestPlan:
    owner_field: str                 # organization_id or creator_id, as the tiles name it
    owner_id: str
    bbox: tuple[float, float, float, float]
    destination: S3Ref
    quality: str
    fields: tuple[str, ...]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "HarvestPlan":
        owners = [f for f in OWNER_FIELDS if params.get(f) is not None]
        if len(owners) != 1:
            raise InvalidInput("give exactly one of organization_id and creator_id", field="organization_id")
        quality = str(params.get("quality", "256"))
        if quality not in THUMBNAIL_RESOLUTIONS:
            raise InvalidInput(f"quality: must be one of {', '.join(THUMBNAIL_RESOLUTIONS)}, got {quality!r}",
                               field="quality")
        return cls(owners[0], check_id(params[owners[0]], owners[0]), check_bbox(params.get("bbox")),
                   prefix_ref(params.get("destination"), "destination"), quality,
                   check_fields(params.get("fields"), f"thumb_{quality}_url"))

    @property
    def url_field(self) -> str:
        return f"thumb_{self.quality}_url"

    @property
    def request_fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.fields, self.url_field)))

    @property
    def images_prefix(self) -> S3Ref:
        return self.destination.child(f"{IMAGES_FOLDER}/")

    def image_ref(self, image_id: str) -> S3Ref:
        return self.destination.child(f"{IMAGES_FOLDER}/{image_id}_{self.quality}.jpg")

    def dataset_ref(self, name: str) -> S3Ref:
        return self.destination.child(name)

    def owns(self, feature) -> bool:
        return getattr(feature, self.owner_field) == self.owner_id
