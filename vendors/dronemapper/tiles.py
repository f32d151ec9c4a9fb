"""A task's map tiles: the TileJSON of its orthophoto, dsm or dtm layer, and the tile URL in it."""
from __future__ import annotations

from vendors.dronemapper.connection import DroneMapperConnection, TaskId
from vendors.dronemapper.errors import VENDOR
from vendors.errors import InputError


class TileLayers(DroneMapperConnection):
    """The {layer}/tiles.json route of a task."""

    def tiles_json(self, project_id: int, task_id: TaskId, layer: str = "orthophoto") -> dict:
        """TileJSON of the orthophoto or dsm layer; see tile_url_template() for its URL."""
        if layer not in ("orthophoto", "dsm", "dtm"):
            raise InputError(f"{VENDOR}: no tile layer {layer!r}", vendor=VENDOR, field="layer")
        return self._json("GET", self._task_path(project_id, task_id, f"{layer}/tiles.json"))

    def tile_url_template(self, tilejson: dict) -> str:
        """The absolute {z}/{x}/{y} URL of a TileJSON; it needs the token (header or ?jwt=)."""
        url = tilejson["tiles"][0]
        return self.base_url + url if url.startswith("/") else url
