"""Mapillary stand-in: coverage vector tiles."""
from __future__ import annotations

import functools

from flask import Response

from sandbox import mapillary_views as views
from sandbox import mapillary_world as mw
from sandbox.mapillary_api import graph_error

TILESETS = {"mly1_public": False, "mly1_computed_public": True}   # name -> uses computed geometry


@functools.lru_cache(maxsize=256)
def _cached_tile(world: mw.World, computed: bool, z: int, x: int, y: int) -> bytes:
    return views.coverage_tile(world, z, x, y, computed=computed)


class TileRoutes:
    """GET /maps/vtp/{tileset}/2/{z}/{x}/{y}."""

    def _tile(self, tileset: str, z: int, x: int, y: int) -> Response:
        refused = self._guard_read("tiles")
        if refused:
            return refused
        if tileset not in TILESETS:
            return graph_error(404, f"Unknown tileset {tileset}", 100)
        if not (0 <= z <= views.IMAGE_ZOOM and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
            return graph_error(404, f"Tile {z}/{x}/{y} is outside the tile pyramid (z0-14)", 100)
        body = _cached_tile(self.world, TILESETS[tileset], z, x, y)
        self.calls.add("tile", f"{z}/{x}/{y}")
        return Response(body, mimetype="application/x-protobuf")
