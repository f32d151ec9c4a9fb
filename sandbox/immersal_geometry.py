"""Immersal stand-in: the geometry the vendor does server-side (map to ECEF, quaternions, distances),
independent of vendors/geodesy on purpose."""
from __future__ import annotations

import math

from sandbox.immersal_state import StoredImage

WGS84_A, WGS84_E2 = 6378137.0, (1 / 298.257223563) * (2 - 1 / 298.257223563)


def wgs84_to_ecef(lat_deg: float, lon_deg: float, alt: float) -> list[float]:
    lat, lon = math.radians(lat_deg), math.radians(lon_deg)
    n = WGS84_A / math.sqrt(1 - WGS84_E2 * math.sin(lat) ** 2)
    return [(n + alt) * math.cos(lat) * math.cos(lon), (n + alt) * math.cos(lat) * math.sin(lon),
            (n * (1 - WGS84_E2) + alt) * math.sin(lat)]


def map_rotation(lat_deg: float, lon_deg: float) -> list[list[float]]:
    """Rows of R, built from the local east/north/up vectors so that, with ecef = t + R @ [-y, -x, z],
    map +X points east, +Y up and +Z north. Its first column is -up, as in the vendor doc's sample matrix."""
    lat, lon = math.radians(lat_deg), math.radians(lon_deg)
    east = [-math.sin(lon), math.cos(lon), 0.0]
    north = [-math.sin(lat) * math.cos(lon), -math.sin(lat) * math.sin(lon), math.cos(lat)]
    up = [math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)]
    return [[-up[i], -east[i], north[i]] for i in range(3)]


def map_to_ecef_array(images: list[StoredImage]) -> tuple[tuple[float, float, float], list[float]] | None:
    """(mean GPS, the 13 /ecef values) for a map whose images carry GPS; None without GPS.

    The map frame is the images' tracker frame (Y up), oriented east/up/north and placed so that
    the images' mean position lands on their mean GPS position; scale 1."""
    located = [img for img in images if img.gps is not None]
    if not located:
        return None
    count = len(located)
    gps = tuple(sum(img.gps[k] for img in located) / count for k in range(3))
    mean = [sum(img.position[k] for img in located) / count for k in range(3)]
    rotation = map_rotation(gps[0], gps[1])
    local = [-mean[1], -mean[0], mean[2]]
    centre = wgs84_to_ecef(*gps)
    translation = [centre[i] - sum(rotation[i][j] * local[j] for j in range(3)) for i in range(3)]
    return gps, translation + [v for row in rotation for v in row] + [1.0]


def rotation_to_quaternion(m: list[list[float]]) -> tuple[float, float, float, float]:
    """(w, x, y, z) of a proper rotation matrix."""
    trace = m[0][0] + m[1][1] + m[2][2]
    if trace > 0:
        s = 2 * math.sqrt(1 + trace)
        return s / 4, (m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s
    i = max(range(3), key=lambda k: m[k][k])
    j, k = (i + 1) % 3, (i + 2) % 3
    s = 2 * math.sqrt(1 + m[i][i] - m[j][j] - m[k][k])
    q = [0.0, 0.0, 0.0]
    q[i], q[j], q[k] = s / 4, (m[j][i] + m[i][j]) / s, (m[k][i] + m[i][k]) / s
    return (m[k][j] - m[j][k]) / s, q[0], q[1], q[2]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on the mean Earth sphere (enough for a radius filter)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(min(1.0, math.sqrt(h)))
