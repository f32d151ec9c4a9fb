"""Mapillary coverage tiles without HTTP: Web Mercator slippy-map tile maths and the decoding of
mly1_public vector tiles into image points and sequence lines."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mapbox_vector_tile

COVERAGE_TILESET = "mly1_public"
OVERVIEW_MAX_ZOOM = 5           # overview: z0-5, no organization_id
SEQUENCE_MIN_ZOOM = 6           # sequence: z6-14
IMAGE_ZOOM = 14                 # image: z14 only
MAX_LATITUDE = 85.0511287798

Bbox = tuple[float, float, float, float]       # min_lon, min_lat, max_lon, max_lat


# --- tile math (Web Mercator slippy-map tiles) ---

def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The x, y of the tile at zoom z that holds a point."""
    n = 2 ** z
    lat = max(-MAX_LATITUDE, min(MAX_LATITUDE, lat))
    x = (lon + 180.0) / 360.0 * n
    y = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n
    return min(n - 1, max(0, int(x))), min(n - 1, max(0, int(y)))


def tile_bounds(z: int, x: int, y: int) -> Bbox:
    """A tile's (west, south, east, north) in degrees."""
    west, north = tile_local_to_lonlat(0, 0, z, x, y)
    east, south = tile_local_to_lonlat(1, 1, z, x, y, extent=1)
    return west, south, east, north


def tile_local_to_lonlat(px: float, py: float, z: int, x: int, y: int, extent: int = 4096) -> tuple[float, float]:
    """A tile-local MVT coordinate (origin top-left, y down, 0..extent) as lon/lat."""
    n = 2 ** z
    gx, gy = (x + px / extent) / n, (y + py / extent) / n
    return gx * 360.0 - 180.0, math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * gy))))


def tiles_covering_bbox(bbox: Bbox, z: int) -> list[tuple[int, int, int]]:
    """Every z/x/y tile at zoom z that intersects bbox, row by row."""
    west, south, east, north = bbox
    if west > east or south > north:
        raise ValueError(f"bbox must be (min_lon, min_lat, max_lon, max_lat), got {bbox}")
    x0, y0 = lonlat_to_tile(west, north, z)
    x1, y1 = lonlat_to_tile(east, south, z)
    return [(z, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def child_tiles(z: int, x: int, y: int) -> list[tuple[int, int, int]]:
    return [(z + 1, 2 * x + dx, 2 * y + dy) for dy in (0, 1) for dx in (0, 1)]


def bbox_intersects(a: Bbox, b: Bbox) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def in_bbox(lon: float, lat: float, bbox: Bbox) -> bool:
    return bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]


# --- decoded coverage ---

def _id(value: Any) -> str | None:
    """Tiles carry ids as integers, Graph as strings: harvest with strings throughout."""
    return None if value is None else str(value)


@dataclass(frozen=True, kw_only=True)
class TileFeature:
    """What every feature of a coverage tile carries."""
    id: str
    captured_at: int
    is_pano: bool
    organization_id: str | None = None
    creator_id: str | None = None

    @staticmethod
    def common(properties: dict) -> dict:
        """Those fields, from a feature's properties."""
        return {"id": _id(properties["id"]), "captured_at": int(properties.get("captured_at", 0)),
                "is_pano": bool(properties.get("is_pano", False)),
                "organization_id": _id(properties.get("organization_id")),
                "creator_id": _id(properties.get("creator_id"))}


@dataclass(frozen=True, kw_only=True)
class TileImage(TileFeature):
    """An image point from the `image` layer (z14) or the `overview` layer (z0-5)."""
    sequence_id: str
    lon: float
    lat: float
    compass_angle: float | None = None


@dataclass(frozen=True, kw_only=True)
class TileSequence(TileFeature):
    """A sequence line from the `sequence` layer (z6-14), clipped to the tile (so possibly in parts)."""
    image_id: str
    lines: tuple[tuple[tuple[float, float], ...], ...]


@dataclass(frozen=True)
class CoverageTile:
    z: int
    x: int
    y: int
    overview: tuple[TileImage, ...]
    sequences: tuple[TileSequence, ...]
    images: tuple[TileImage, ...]

    @property
    def bounds(self) -> Bbox:
        return tile_bounds(self.z, self.x, self.y)

    def has_organization(self, organization_id: str) -> bool:
        wanted = str(organization_id)
        return any(s.organization_id == wanted for s in self.sequences) or \
            any(i.organization_id == wanted for i in self.images)


def decode_coverage_tile(data: bytes, z: int, x: int, y: int) -> CoverageTile:
    """Decode mly1_public MVT bytes with mapbox_vector_tile; geometry comes back as lon/lat."""
    layers = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True}) if data else {}

    def lonlat(point, extent):
        return tile_local_to_lonlat(point[0], point[1], z, x, y, extent)

    def points(name: str) -> tuple[TileImage, ...]:
        layer = layers.get(name, {"features": [], "extent": 4096})
        found = []
        for feature in layer["features"]:
            p, geometry = feature["properties"], feature["geometry"]
            coords = [geometry["coordinates"]] if geometry["type"] == "Point" else geometry["coordinates"]
            for point in coords:
                lon, lat = lonlat(point, layer["extent"])
                found.append(TileImage(**TileFeature.common(p), sequence_id=_id(p.get("sequence_id")), lon=lon, lat=lat,
                                       compass_angle=p.get("compass_angle")))
        return tuple(found)

    sequences = []
    layer = layers.get("sequence", {"features": [], "extent": 4096})
    for feature in layer["features"]:
        p, geometry = feature["properties"], feature["geometry"]
        parts = [geometry["coordinates"]] if geometry["type"] == "LineString" else geometry["coordinates"]
        lines = tuple(tuple(lonlat(pt, layer["extent"]) for pt in part) for part in parts)
        sequences.append(TileSequence(**TileFeature.common(p), image_id=_id(p.get("image_id")), lines=lines))
    return CoverageTile(z, x, y, points("overview"), tuple(sequences), points("image"))

