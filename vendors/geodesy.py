"""Immersal map coordinates -> ECEF -> WGS84, with plain numpy.

The 13 values of Immersal's /ecef answer: e[0..2] the ECEF translation, e[3..11] a 3x3 rotation
read row-major, e[12] the scale. A map position (x, y, z) enters as [-y, -x, z], so
    ecef = t + s * R @ [-y, -x, z]
which is what the vendor's own sample (MapPosToEcef, a row vector times a 4x4 matrix) computes.

Functions accept one point or arrays of points (broadcasting, last axis = xyz).
"""
from __future__ import annotations

import numpy as np

WGS84_A = 6378137.0                      # semi-major axis, metres
WGS84_F = 1.0 / 298.257223563            # flattening
WGS84_B = WGS84_A * (1.0 - WGS84_F)      # semi-minor axis
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)     # first eccentricity squared

# Bowring's one step is ~1e-10 deg off near the surface but ~5e-7 deg at orbit heights; iterating fixes both.
_LATITUDE_ITERATIONS = 6


def split_ecef13(ecef13) -> tuple[np.ndarray, np.ndarray, float]:
    """(translation (3,), rotation (3,3), scale) from Immersal's 13-value array."""
    e = np.asarray(ecef13, dtype=float)
    if e.shape != (13,):
        raise ValueError(f"expected 13 values, got shape {e.shape}")
    return e[0:3], e[3:12].reshape(3, 3), float(e[12])


def map_to_ecef(position_xyz, ecef13) -> np.ndarray:
    """ECEF metres of a map position (or of an (N, 3) array of them)."""
    translation, rotation, scale = split_ecef13(ecef13)
    p = np.asarray(position_xyz, dtype=float)
    swapped = np.stack([-p[..., 1], -p[..., 0], p[..., 2]], axis=-1)
    return translation + scale * swapped @ rotation.T


def wgs84_to_ecef(latitude_deg, longitude_deg, altitude_m) -> np.ndarray:
    """ECEF metres (..., 3) of WGS84 latitude/longitude in degrees and ellipsoidal height in metres."""
    lat = np.radians(np.asarray(latitude_deg, dtype=float))
    lon = np.radians(np.asarray(longitude_deg, dtype=float))
    h = np.asarray(altitude_m, dtype=float)
    n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * np.sin(lat) ** 2)   # prime vertical radius
    x = (n + h) * np.cos(lat) * np.cos(lon)
    y = (n + h) * np.cos(lat) * np.sin(lon)
    z = (n * (1.0 - WGS84_E2) + h) * np.sin(lat)
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


def ecef_to_wgs84(x, y, z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latitude deg, longitude deg, ellipsoidal height m) of ECEF metres.

    Bowring's estimate refined by fixed-point iteration on latitude; the height formula
    below stays well conditioned at the poles, where p / cos(lat) would not.
    """
    x, y, z = (np.asarray(v, dtype=float) for v in (x, y, z))
    p = np.hypot(x, y)
    lon = np.arctan2(y, x)
    second_e2 = (WGS84_A ** 2 - WGS84_B ** 2) / WGS84_B ** 2
    theta = np.arctan2(z * WGS84_A, p * WGS84_B)
    lat = np.arctan2(z + second_e2 * WGS84_B * np.sin(theta) ** 3,
                     p - WGS84_E2 * WGS84_A * np.cos(theta) ** 3)
    for _ in range(_LATITUDE_ITERATIONS):
        n = WGS84_A / np.sqrt(1.0 - WGS84_E2 * np.sin(lat) ** 2)
        lat = np.arctan2(z + WGS84_E2 * n * np.sin(lat), p)
    sin_lat, cos_lat = np.sin(lat), np.cos(lat)
    height = p * cos_lat + z * sin_lat - WGS84_A * np.sqrt(1.0 - WGS84_E2 * sin_lat ** 2)
    return np.degrees(lat), np.degrees(lon), height


def map_to_wgs84(position_xyz, ecef13) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latitude deg, longitude deg, height m) of a map position, via the map's /ecef array."""
    ecef = map_to_ecef(position_xyz, ecef13)
    return ecef_to_wgs84(ecef[..., 0], ecef[..., 1], ecef[..., 2])
