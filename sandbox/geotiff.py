"""Streamed, deterministic GeoTIFFs for the DroneMapper stand-in, and the UTM maths they need.

A baseline TIFF (uncompressed, chunky, in strips) carrying the three GeoTIFF tags GDAL reads:
ModelPixelScale, ModelTiepoint and GeoKeyDirectory. Every size is known before the first pixel
is made, so a file of any size goes out with a Content-Length and never sits in memory.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator

import numpy as np

# TIFF field types
_ASCII, _SHORT, _LONG, _DOUBLE = 2, 3, 4, 12
_TYPE_SIZE = {_ASCII: 1, _SHORT: 2, _LONG: 4, _DOUBLE: 8}
_TYPE_CODE = {_SHORT: "H", _LONG: "I", _DOUBLE: "d"}

STRIP_BYTES = 256 * 1024  # about this much pixel data per strip

# Makes rows [row0, row0 + count) of the image: an array shaped (count, width, bands).
PixelSource = Callable[[int, int], np.ndarray]


class GeoTiff:
    """One georeferenced raster: `size` bytes, produced by `chunks()`.

    `origin` is the (easting, northing) of the upper-left corner in the `epsg` projection,
    `pixel_size` the ground size of a pixel in metres. uint8 with 4 bands is an RGBA
    orthophoto; float32 with 1 band an elevation model (with `nodata`).
    """

    def __init__(self, width: int, height: int, bands: int, dtype: str, origin: tuple[float, float],
                 pixel_size: float, epsg: int, pixels: PixelSource, nodata: float | None = None) -> None:
        self.width, self.height, self.bands = width, height, bands
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.pixels = pixels
        row_bytes = width * bands * self.dtype.itemsize
        self.rows_per_strip = max(1, STRIP_BYTES // row_bytes)
        strips = math.ceil(height / self.rows_per_strip)
        strip_sizes = [min(self.rows_per_strip, height - i * self.rows_per_strip) * row_bytes for i in range(strips)]
        tags = self._tags(origin, pixel_size, epsg, nodata, strip_sizes, offsets=[0] * strips)
        self._head_size = len(_encode(tags))
        offsets = list(np.cumsum([self._head_size] + strip_sizes[:-1]))
        self._head = _encode(self._tags(origin, pixel_size, epsg, nodata, strip_sizes, [int(o) for o in offsets]))
        self.size = self._head_size + sum(strip_sizes)

    def _tags(self, origin, pixel_size, epsg, nodata, strip_sizes, offsets) -> list[tuple[int, int, list]]:
        is_float = self.dtype.kind == "f"
        rgba = self.bands == 4
        tags = [
            (256, _LONG, [self.width]),
            (257, _LONG, [self.height]),
            (258, _SHORT, [self.dtype.itemsize * 8] * self.bands),
            (259, _SHORT, [1]),                     # no compression
            (262, _SHORT, [2 if rgba else 1]),      # RGB, or min-is-black
            (273, _LONG, offsets),
            (277, _SHORT, [self.bands]),
            (278, _LONG, [self.rows_per_strip]),
            (279, _LONG, strip_sizes),
            (284, _SHORT, [1]),                     # chunky
            (339, _SHORT, [3 if is_float else 1] * self.bands),
            (33550, _DOUBLE, [pixel_size, pixel_size, 0.0]),
            (33922, _DOUBLE, [0.0, 0.0, 0.0, origin[0], origin[1], 0.0]),
            # GeoKeys: projected model, pixel-is-area, the EPSG code of the projection.
            (34735, _SHORT, [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg]),
        ]
        if rgba:
            tags.append((338, _SHORT, [2]))         # the 4th band is unassociated alpha
        if nodata is not None:
            tags.append((42113, _ASCII, [f"{nodata:g}"]))  # GDAL_NODATA
        return sorted(tags)

    def chunks(self) -> Iterator[bytes]:
        yield self._head
        for row0 in range(0, self.height, self.rows_per_strip):
            rows = min(self.rows_per_strip, self.height - row0)
            block = np.ascontiguousarray(self.pixels(row0, rows), dtype=self.dtype)
            assert block.shape == (rows, self.width, self.bands), block.shape
            yield block.tobytes()


def _encode(tags: list[tuple[int, int, list]]) -> bytes:
    """Header, one IFD and the values that do not fit in their entry: everything before the pixels."""
    ifd_offset = 8
    extra_offset = ifd_offset + 2 + 12 * len(tags) + 4
    entries, extra = [], b""
    for tag, kind, values in tags:
        if kind == _ASCII:
            data = values[0].encode("ascii") + b"\0"
            count = len(data)
        else:
            data = struct.pack(f"<{len(values)}{_TYPE_CODE[kind]}", *values)
            count = len(values)
        if len(data) <= 4:
            entries.append(struct.pack("<HHI", tag, kind, count) + data.ljust(4, b"\0"))
        else:
            entries.append(struct.pack("<HHII", tag, kind, count, extra_offset + len(extra)))
            extra += data + b"\0" * (len(data) % 2)  # values start on a word boundary
    return (b"II*\0" + struct.pack("<I", ifd_offset) + struct.pack("<H", len(tags))
            + b"".join(entries) + struct.pack("<I", 0) + extra)


# --- UTM (WGS84), after Snyder, "Map Projections: A Working Manual", p. 61 ---

_A = 6378137.0
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
_EP2 = _E2 / (1 - _E2)
_K0 = 0.9996


def utm_epsg(lon: float, lat: float) -> int:
    zone = int((lon + 180) // 6) + 1
    return (32600 if lat >= 0 else 32700) + zone


def _central_meridian(epsg: int) -> float:
    return math.radians((epsg % 100) * 6 - 183)


def _meridian_arc(phi: float) -> float:
    e2, e4, e6 = _E2, _E2 ** 2, _E2 ** 3
    return _A * ((1 - e2 / 4 - 3 * e4 / 64 - 5 * e6 / 256) * phi
                 - (3 * e2 / 8 + 3 * e4 / 32 + 45 * e6 / 1024) * math.sin(2 * phi)
                 + (15 * e4 / 256 + 45 * e6 / 1024) * math.sin(4 * phi)
                 - (35 * e6 / 3072) * math.sin(6 * phi))


def lonlat_to_utm(lon: float, lat: float, epsg: int | None = None) -> tuple[float, float, int]:
    epsg = epsg or utm_epsg(lon, lat)
    phi, lam = math.radians(lat), math.radians(lon) - _central_meridian(epsg)
    n = _A / math.sqrt(1 - _E2 * math.sin(phi) ** 2)
    t, c = math.tan(phi) ** 2, _EP2 * math.cos(phi) ** 2
    a = lam * math.cos(phi)
    x_terms = (a + (1 - t + c) * a ** 3 / 6
               + (5 - 18 * t + t * t + 72 * c - 58 * _EP2) * a ** 5 / 120)
    y_terms = (a * a / 2 + (5 - t + 9 * c + 4 * c * c) * a ** 4 / 24
               + (61 - 58 * t + t * t + 600 * c - 330 * _EP2) * a ** 6 / 720)
    easting = 500000 + _K0 * n * x_terms
    northing = _K0 * (_meridian_arc(phi) + n * math.tan(phi) * y_terms)
    if epsg >= 32700:
        northing += 10_000_000
    return easting, northing, epsg


def utm_to_lonlat(easting: float, northing: float, epsg: int) -> tuple[float, float]:
    if epsg >= 32700:
        northing -= 10_000_000
    mu = northing / _K0 / (_A * (1 - _E2 / 4 - 3 * _E2 ** 2 / 64 - 5 * _E2 ** 3 / 256))
    e1 = (1 - math.sqrt(1 - _E2)) / (1 + math.sqrt(1 - _E2))
    phi1 = (mu + (3 * e1 / 2 - 27 * e1 ** 3 / 32) * math.sin(2 * mu)
            + (21 * e1 ** 2 / 16 - 55 * e1 ** 4 / 32) * math.sin(4 * mu)
            + (151 * e1 ** 3 / 96) * math.sin(6 * mu) + (1097 * e1 ** 4 / 512) * math.sin(8 * mu))
    n1 = _A / math.sqrt(1 - _E2 * math.sin(phi1) ** 2)
    t1, c1 = math.tan(phi1) ** 2, _EP2 * math.cos(phi1) ** 2
    r1 = _A * (1 - _E2) / (1 - _E2 * math.sin(phi1) ** 2) ** 1.5
    d = (easting - 500000) / (n1 * _K0)
    lat_terms = (d * d / 2 - (5 + 3 * t1 + 10 * c1 - 4 * c1 * c1 - 9 * _EP2) * d ** 4 / 24
                 + (61 + 90 * t1 + 298 * c1 + 45 * t1 * t1 - 252 * _EP2 - 3 * c1 * c1) * d ** 6 / 720)
    lon_terms = (d - (1 + 2 * t1 + c1) * d ** 3 / 6
                 + (5 - 2 * c1 + 28 * t1 - 3 * c1 * c1 + 8 * _EP2 + 24 * t1 * t1) * d ** 5 / 120)
    lat = phi1 - (n1 * math.tan(phi1) / r1) * lat_terms
    lon = _central_meridian(epsg) + lon_terms / math.cos(phi1)
    return math.degrees(lon), math.degrees(lat)
