"""Graph API reads: image metadata (one, or batches of up to 50 that survive deleted ids), the
images of a sequence, image search, the current user and organizations."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from vendors.mapillary.connection import MapillaryConnection
from vendors.mapillary.errors import MapillaryInputError, MapillaryNotFound
from vendors.mapillary.tiles import Bbox

# The toolset's default metadata fields, plus geometry.
DEFAULT_IMAGE_FIELDS = ("id", "sequence", "captured_at", "compass_angle", "geometry",
                        "thumb_256_url", "thumb_original_url", "width", "height")
MAX_IDS_PER_BATCH = 50          # the SDK refuses more; 50 ids keep the URL short


class GraphReads(MapillaryConnection):
    """Graph API reads, with the token in the header."""

    def _graph(self, path: str, what: str, **params: Any) -> Any:
        return self._call("GET", f"{self.graph_url}/{path}", what, params=params).json()

    @staticmethod
    def _fields(fields: Iterable[str]) -> str:
        return ",".join(dict.fromkeys(["id", *fields]))

    def get_image(self, image_id: str, fields: Iterable[str] = DEFAULT_IMAGE_FIELDS) -> dict[str, Any]:
        """An image's metadata; fields the image lacks (e.g. computed_compass_angle) are absent."""
        return self._graph(str(image_id), f"image {image_id}", fields=self._fields(fields))

    def get_images(self, image_ids: Sequence[str],
                   fields: Iterable[str] = DEFAULT_IMAGE_FIELDS) -> dict[str, dict[str, Any]]:
        """Metadata of 1-50 images in one call, keyed by id. One missing id fails the whole
        batch (MapillaryNotFound, with `missing_ids`); see get_images_skipping_missing."""
        ids = [str(i) for i in image_ids]
        if not 1 <= len(ids) <= MAX_IDS_PER_BATCH:
            raise MapillaryInputError(f"mapillary: a batch takes 1 to {MAX_IDS_PER_BATCH} ids, got {len(ids)}")
        return self._graph("", f"batch of {len(ids)} images", ids=",".join(ids), fields=self._fields(fields))

    def get_images_skipping_missing(self, image_ids: Sequence[str], fields: Iterable[str] = DEFAULT_IMAGE_FIELDS
                                    ) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """A batch that survives deleted images: returns (found by id, ids that do not exist)."""
        fields = tuple(fields)
        ids = [str(i) for i in image_ids]
        try:
            return self.get_images(ids, fields), []
        except MapillaryNotFound as error:
            named = [i for i in error.missing_ids if i in ids]
        if named:
            rest = [i for i in ids if i not in named]
            found, missing = self.get_images_skipping_missing(rest, fields) if rest else ({}, [])
            return found, named + missing
        # The vendor did not say which: one call per id, as the toolset falls back to.
        found, missing = {}, []
        for image_id in ids:
            try:
                found[image_id] = self.get_image(image_id, fields)
            except MapillaryNotFound:
                missing.append(image_id)
        return found, missing

    def image_ids_of_sequence(self, sequence_id: str) -> list[str]:
        """The sequence's image ids in capture order."""
        body = self._graph("image_ids", f"image ids of sequence {sequence_id}", sequence_id=sequence_id)
        return [str(item["id"]) for item in body.get("data", [])]

    def search_images(self, bbox: Bbox | None = None, *, fields: Iterable[str] = DEFAULT_IMAGE_FIELDS,
                      limit: int | None = None, **filters: Any) -> list[dict[str, Any]]:
        """GET /images: at most 2000 results (newest first); split the bbox for more.
        Filters: organization_id, creator_id, creator_username, sequence_id, is_pano, make, model,
        start_captured_at / end_captured_at (ISO 8601), lat + lng + radius (<= 50 m)."""
        params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in filters.items() if v is not None}
        if bbox is not None:
            params["bbox"] = ",".join(f"{v:.8f}" for v in bbox)
        if limit is not None:
            params["limit"] = limit
        return self._graph("images", "image search", fields=self._fields(fields), **params).get("data", [])

    def me(self, fields: Iterable[str] = ("id", "username")) -> dict[str, Any]:
        return self._graph("me", "current user", fields=self._fields(fields))

    def get_organization(self, organization_id: str,
                         fields: Iterable[str] = ("slug", "name", "description")) -> dict[str, Any]:
        return self._graph(str(organization_id), f"organization {organization_id}", fields=self._fields(fields))
