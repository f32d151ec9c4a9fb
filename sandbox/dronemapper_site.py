"""DroneMapper stand-in: the surveyed site behind a task's assets (orthophoto, DSM/DTM, point cloud, tiles)."""
from __future__ import annotations

import io
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

from sandbox import geotiff
from sandbox.dronemapper_processing import Task

# --- the surveyed site: what every asset of a task shows, the same at every request ---

class Site:
    """A patch of farmland under a task: colours, elevations and its place on Earth."""

    def __init__(self, seed: int, lonlat: tuple[float, float], width_px: int, gsd_m: float,
                 options: dict[str, Any]) -> None:
        self.seed, self.options = seed, options
        self.width_px = self.height_px = width_px
        self.gsd_m = gsd_m
        self.extent_m = width_px * gsd_m
        easting, northing, self.epsg = geotiff.lonlat_to_utm(*lonlat)
        self.origin = (round(easting - self.extent_m / 2, 2), round(northing + self.extent_m / 2, 2))

    @classmethod
    def of(cls, task: Task, options: dict[str, Any]) -> Site:
        chosen = {o["name"]: o["value"] for o in task.options}
        try:  # options are taken as sent (see option_checks): a value ODM would refuse reads as the default
            gsd_cm = float(chosen.get("orthophoto-resolution", 5.0))
        except (TypeError, ValueError):
            gsd_cm = 5.0
        gsd_cm = gsd_cm if gsd_cm > 0 else 5.0
        lon, lat = options["site_lonlat"]
        lonlat = (lon + 0.01 * (task.id % 50), lat + 0.005 * (task.id // 50 % 50))  # each task its own field
        return cls(task.id, lonlat, int(options["orthophoto_px"]), gsd_cm / 100.0, options)

    # normalised coordinates u (west->east) and v (north->south) in [0, 1]
    def inside(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        s = u + v  # the flight area is a square with two corners cut off
        return (s > 0.15) & (s < 1.85)

    def colour(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        fields = np.floor(u * 5 + 0.3 * np.sin(v * 7 + self.seed)) + 7 * np.floor(v * 4)
        base = np.stack([60 + 25 * np.sin(fields * 1.7 + self.seed), 110 + 30 * np.cos(fields * 2.3),
                         50 + 20 * np.sin(fields * 0.9)], axis=-1)
        rows = 12 * np.sin(2 * np.pi * (u * 60 + v * 9))[..., None]  # crop rows
        grain = _hash_noise(u, v, self.seed)[..., None] * 14 - 7
        return np.clip(base + rows + grain, 0, 255).astype(np.uint8)

    def elevation(self, u: np.ndarray, v: np.ndarray, ground_only: bool = False) -> np.ndarray:
        ground = 310 + 6 * np.sin(2 * np.pi * (0.7 * u + self.seed * 0.1)) * np.cos(2 * np.pi * 0.5 * v) + 4 * u
        if ground_only:
            return ground.astype(np.float32)
        trees = 9 * np.clip(np.sin(u * 41 + self.seed) * np.sin(v * 37) - 0.85, 0, None) / 0.15
        return (ground + trees).astype(np.float32)

    def _grid(self, row0: int, rows: int, width: int, height: int):
        v = (np.arange(row0, row0 + rows, dtype=np.float64)[:, None] + 0.5) / height
        u = (np.arange(width, dtype=np.float64)[None, :] + 0.5) / width
        return np.broadcast_to(u, (rows, width)), np.broadcast_to(v, (rows, width))

    def orthophoto(self) -> geotiff.GeoTiff:
        w = h = self.width_px

        def pixels(row0: int, rows: int) -> np.ndarray:
            u, v = self._grid(row0, rows, w, h)
            alpha = np.where(self.inside(u, v), 255, 0).astype(np.uint8)[..., None]
            return np.concatenate([self.colour(u, v) * (alpha > 0), alpha], axis=-1)

        return geotiff.GeoTiff(w, h, 4, "uint8", self.origin, self.gsd_m, self.epsg, pixels)

    def elevation_model(self, ground_only: bool = False) -> geotiff.GeoTiff:
        w = h = int(self.options["dsm_px"])

        def pixels(row0: int, rows: int) -> np.ndarray:
            u, v = self._grid(row0, rows, w, h)
            z = np.where(self.inside(u, v), self.elevation(u, v, ground_only), -9999.0)
            return z.astype(np.float32)[..., None]

        return geotiff.GeoTiff(w, h, 1, "float32", self.origin, self.extent_m / w, self.epsg, pixels, nodata=-9999)

    def point_cloud(self) -> PointCloud:
        return PointCloud(self, int(self.options["pointcloud_points"]))

    def bounds(self) -> list[float]:
        corners = [geotiff.utm_to_lonlat(self.origin[0] + dx, self.origin[1] - dy, self.epsg)
                   for dx in (0, self.extent_m) for dy in (0, self.extent_m)]
        lons, lats = [c[0] for c in corners], [c[1] for c in corners]
        return [round(min(lons), 8), round(min(lats), 8), round(max(lons), 8), round(max(lats), 8)]

    def zoom_range(self) -> tuple[int, int]:
        lat = math.radians(self.bounds()[1])
        metres_at_zoom0 = 156543.03392 * math.cos(lat)
        maxzoom = math.ceil(math.log2(metres_at_zoom0 / self.gsd_m))
        return max(0, maxzoom - math.ceil(math.log2(max(1, self.width_px / 256))) - 1), maxzoom

    def tile(self, layer: str, z: int, x: int, y: int) -> bytes | None:
        """A 256 px XYZ tile, or None outside the site."""
        def lonlat(tx: float, ty: float) -> tuple[float, float]:
            n = 2 ** z
            return tx / n * 360 - 180, math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * ty / n))))

        def uv(tx: float, ty: float) -> tuple[float, float]:
            e, n, _ = geotiff.lonlat_to_utm(*lonlat(tx, ty), epsg=self.epsg)
            return (e - self.origin[0]) / self.extent_m, (self.origin[1] - n) / self.extent_m

        (u0, v0), (u1, v1) = uv(x, y), uv(x + 1, y + 1)
        if u1 < 0 or u0 > 1 or v1 < 0 or v0 > 1:
            return None
        t = (np.arange(256) + 0.5) / 256  # a tile is small: map its pixels linearly between the corners
        u = np.broadcast_to(u0 + (u1 - u0) * t[None, :], (256, 256))
        v = np.broadcast_to(v0 + (v1 - v0) * t[:, None], (256, 256))
        visible = self.inside(u, v) & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
        if layer == "orthophoto":
            rgb = self.colour(u, v)
        else:
            z_norm = np.clip((self.elevation(u, v, layer == "dtm") - 300) / 30, 0, 1)[..., None]
            rgb = (np.concatenate([z_norm, 1 - np.abs(z_norm - 0.5) * 2, 1 - z_norm], axis=-1) * 255).astype(np.uint8)
        rgba = np.concatenate([rgb, np.where(visible, 255, 0).astype(np.uint8)[..., None]], axis=-1)
        out = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(out, format="PNG")
        return out.getvalue()


def _hash_noise(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic per-position noise in [0, 1): an integer hash of the position."""
    xi = (u * 1e5).astype(np.int64).astype(np.uint32)
    yi = (v * 1e5).astype(np.int64).astype(np.uint32)
    h = xi * np.uint32(73856093) ^ yi * np.uint32(19349663) ^ np.uint32(seed * 83492791 & 0xFFFFFFFF)
    h ^= h >> np.uint32(13)
    return (h & np.uint32(0xFFFF)).astype(np.float64) / 65536.0


class PointCloud:
    """A binary little-endian PLY of the site's surface, made in blocks."""

    BLOCK = 65536
    VERTEX = np.dtype([("x", "<f8"), ("y", "<f8"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])

    def __init__(self, site: Site, points: int) -> None:
        self.site, self.points = site, points
        self.header = (
            "ply\nformat binary_little_endian 1.0\ncomment generated by the geoqueue DroneMapper sandbox\n"
            f"comment crs EPSG:{site.epsg}\nelement vertex {points}\nproperty double x\nproperty double y\n"
            "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n").encode()
        self.size = len(self.header) + points * self.VERTEX.itemsize

    def chunks(self) -> Iterator[bytes]:
        yield self.header
        site = self.site
        for block, start in enumerate(range(0, self.points, self.BLOCK)):
            count = min(self.BLOCK, self.points - start)
            rng = np.random.default_rng([site.seed, block])
            u, v = rng.random(count), rng.random(count)
            shift = np.where(u + v < 0.15, 0.5, np.where(u + v > 1.85, -0.5, 0.0))  # fold cut corners inside
            u, v = u + shift, v + shift
            vertices = np.empty(count, self.VERTEX)
            vertices["x"] = site.origin[0] + u * site.extent_m
            vertices["y"] = site.origin[1] - v * site.extent_m
            vertices["z"] = site.elevation(u, v)
            rgb = site.colour(u, v)
            vertices["red"], vertices["green"], vertices["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
            yield vertices.tobytes()
