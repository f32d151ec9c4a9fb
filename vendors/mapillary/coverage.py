"""Coverage over HTTP: fetching vector tiles and drilling down to the z14 images of a bbox,
only into tiles that hold the organization."""
from __future__ import annotations

from collections.abc import Iterator

from vendors.mapillary.connection import MapillaryConnection
from vendors.mapillary.tiles import (
    IMAGE_ZOOM,
    SEQUENCE_MIN_ZOOM,
    Bbox,
    CoverageTile,
    TileImage,
    bbox_intersects,
    child_tiles,
    decode_coverage_tile,
    in_bbox,
    tile_bounds,
    tiles_covering_bbox,
)


class CoverageReads(MapillaryConnection):
    """Coverage tiles of the configured tileset, fetched and walked."""

    def get_tile(self, z: int, x: int, y: int) -> bytes:
        url = f"{self.tiles_url}/maps/vtp/{self.tileset}/2/{z}/{x}/{y}"
        return self._call("GET", url, f"tile {z}/{x}/{y}").content

    def coverage_tile(self, z: int, x: int, y: int) -> CoverageTile:
        return decode_coverage_tile(self.get_tile(z, x, y), z, x, y)

    def walk_coverage(self, bbox: Bbox, organization_id: str | None = None, *, start_zoom: int = 12,
                      target_zoom: int = IMAGE_ZOOM) -> Iterator[CoverageTile]:
        """The target-zoom tiles over bbox, reached by drilling down from start_zoom and only into
        tiles whose sequence layer holds the organization (the overview layer has no organization,
        so start_zoom must be 6 or more when filtering)."""
        if organization_id is not None and start_zoom < SEQUENCE_MIN_ZOOM:
            raise ValueError("the overview layer (z0-5) has no organization_id: start at z6 or deeper")
        pending = tiles_covering_bbox(bbox, start_zoom)
        while pending:
            z, x, y = pending.pop(0)
            tile = self.coverage_tile(z, x, y)
            if organization_id is not None and not tile.has_organization(organization_id):
                continue
            if z >= target_zoom:
                yield tile
            else:
                pending.extend(c for c in child_tiles(z, x, y) if bbox_intersects(tile_bounds(*c), bbox))

    def images_in_bbox(self, bbox: Bbox, organization_id: str | None = None, *,
                       start_zoom: int = 12) -> list[TileImage]:
        """The z14 image points in bbox (of one organization), each once."""
        seen: dict[str, TileImage] = {}
        for tile in self.walk_coverage(bbox, organization_id, start_zoom=start_zoom):
            for image in tile.images:
                if in_bbox(image.lon, image.lat, bbox) and \
                        (organization_id is None or image.organization_id == str(organization_id)):
                    seen.setdefault(image.id, image)
        return list(seen.values())

    def sequences_in_bbox(self, bbox: Bbox, organization_id: str | None = None, *, start_zoom: int = 12) -> list[str]:
        """Ids of the sequences with images in bbox (of one organization): the toolset's seq_dataset."""
        return sorted({i.sequence_id for i in self.images_in_bbox(bbox, organization_id, start_zoom=start_zoom)})
