"""The harvest's plan, built from parameters the job catalog (geoqueue.catalog.mapillary) has checked
before enqueue and again on the worker; what only a worker can check is that the destination lies
inside the fleet's output area."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geoqueue.catalog.mapillary import OWNER_FIELDS, capture_time_ms
from geoqueue.s3ref import S3Ref
from services.storage import get_store

IMAGES_FOLDER = "downloaded_images"    # the toolset's image_downloads_folder
DEFAULT_QUALITY = "256"
MISSING_SHOWN = 1000                   # ids of vanished images listed in a result (all are counted)
FAILED_SHOWN = 10                      # failed sequences or images named in an error message (details list all)


def harvest_fields(fields: list[str] | None, url_field: str) -> tuple[str, ...]:
    """The Graph image fields asked for (the toolset's columns by default), without id and sequence:
    those are img_id and seq_id."""
    if fields is None:
        return ("captured_at", "compass_angle", url_field, "width")
    return tuple(f for f in fields if f not in ("id", "sequence"))


@dataclass(frozen=True)
class HarvestPlan:
    owner_field: str                 # organization_id or creator_id, as the tiles name it
    owner_id: str
    bbox: tuple[float, float, float, float]
    destination: S3Ref
    quality: str
    fields: tuple[str, ...]
    captured_since: int | None = None  # epoch ms: an incremental harvest, added to the destination's earlier ones

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> HarvestPlan:
        """The plan of a harvest whose parameters the catalog accepted (exactly one owner, a bbox
        inside web mercator, known fields and quality)."""
        owner = next(f for f in OWNER_FIELDS if params.get(f) is not None)
        quality = str(params.get("quality") or DEFAULT_QUALITY)
        since = params.get("captured_since")
        return cls(owner, str(params[owner]), tuple(float(v) for v in params["bbox"]),
                   get_store().output(params["destination"], "destination", prefix=True), quality,
                   harvest_fields(params.get("fields"), f"thumb_{quality}_url"),
                   None if since is None else capture_time_ms(since))

    @property
    def url_field(self) -> str:
        return f"thumb_{self.quality}_url"

    @property
    def request_fields(self) -> tuple[str, ...]:
        """The fields asked for, plus the thumbnail URL and the capture time (the window and the
        watermark need it even when the CSV leaves it out)."""
        return tuple(dict.fromkeys((*self.fields, self.url_field, "captured_at")))

    @property
    def incremental(self) -> bool:
        return self.captured_since is not None

    def in_window(self, captured_at: int | None) -> bool:
        """Captured at or after captured_since. An image whose capture time is not known is kept:
        nothing says it is old, and the destination skips it by id once it is there."""
        return self.captured_since is None or captured_at is None or captured_at >= self.captured_since

    @property
    def images_prefix(self) -> S3Ref:
        return self.destination.child(f"{IMAGES_FOLDER}/")

    def image_ref(self, image_id: str) -> S3Ref:
        return self.destination.child(f"{IMAGES_FOLDER}/{image_id}_{self.quality}.jpg")

    def dataset_ref(self, name: str) -> S3Ref:
        return self.destination.child(name)

    def owns(self, feature) -> bool:
        return getattr(feature, self.owner_field) == self.owner_id
