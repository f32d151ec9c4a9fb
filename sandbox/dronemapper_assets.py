"""DroneMapper stand-in: assets (downloads, raw paths, all.zip) and map tiles of a completed task."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response
from zipstream import ZIP_STORED, ZipStream

from sandbox.dronemapper_api import _json, not_found
from sandbox.dronemapper_processing import Task
from sandbox.dronemapper_site import Site

# Raw paths under a task's assets/ folder, and which downloadable asset each one is.
RAW_PATHS = {
    "odm_orthophoto/odm_orthophoto.tif": "orthophoto.tif",
    "odm_dem/dsm.tif": "dsm.tif",
    "odm_dem/dtm.tif": "dtm.tif",
    "odm_georeferencing/odm_georeferenced_model.ply": "pointcloud.ply",
}
CONTENT_TYPES = {".tif": "image/tiff", ".zip": "application/zip", ".png": "image/png"}


class AssetRoutes:
    """Downloads, raw asset paths and TMS tiles."""

    def _completed_task(self, user: str | None, pid: int, tid: int, asset: str) -> Task:
        with self.lock:
            task = self._task(user, pid, tid)
            if asset not in task.available_assets:
                raise not_found("Asset does not exist")
            return task

    def _download(self, user: str | None, pid: int, tid: int, asset: str) -> Response:
        asset = self.options["asset_aliases"].get(asset, asset)
        task = self._completed_task(user, pid, tid, asset)
        self.calls.add("asset_download", f"{tid}/{asset}")
        return self._stream(self._make_asset(task, asset), asset, "attachment")

    def _raw_asset(self, user: str | None, pid: int, tid: int, path: str) -> Response:
        asset = "all.zip" if path == "all.zip" else RAW_PATHS.get(path)
        if asset is None:
            with self.lock:
                self._task(user, pid, tid)
            raise not_found("Asset does not exist")
        task = self._completed_task(user, pid, tid, asset)
        self.calls.add("asset_download", f"{tid}/{path}")
        return self._stream(self._make_asset(task, asset), path.rsplit("/", 1)[-1], "inline")

    def _make_asset(self, task: Task, asset: str):
        site = Site.of(task, self.options)
        if asset == "orthophoto.tif":
            return site.orthophoto()
        if asset in ("dsm.tif", "dtm.tif"):
            return site.elevation_model(ground_only=asset == "dtm.tif")
        if asset == "pointcloud.ply":
            return site.point_cloud()
        if asset == "all.zip":
            members = [(path, self._make_asset(task, a)) for path, a in RAW_PATHS.items() if a in task.available_assets]
            return stored_zip(members)
        raise not_found("Asset does not exist")

    def _stream(self, body, filename: str, disposition: str) -> Response:
        chunks = body.chunks()
        with self.lock:
            short = self.options["short_download_next"] > 0
            if short:
                self.options["short_download_next"] -= 1
        if short:
            self.calls.add("download_cut", filename)
            chunks = _cut_after(chunks, body.size // 2)
        suffix = filename[filename.rfind("."):].lower()
        return Response(chunks, direct_passthrough=True, headers={
            "Content-Length": str(body.size),
            # mimetypes knows no .ply: WebODM falls back to application/zip for it
            "Content-Type": CONTENT_TYPES.get(suffix, "application/zip"),
            "Content-Disposition": f"{disposition}; filename={filename}",
        })

    # --- tiles ---

    def _tiles_json(self, user: str | None, pid: int, tid: int, layer: str) -> Response:
        task = self._tiled_task(user, pid, tid, layer)
        site = Site.of(task, self.options)
        minzoom, maxzoom = site.zoom_range()
        self.calls.add("tiles_json", f"{tid}/{layer}")
        return _json({"tilejson": "2.1.0", "name": task.name, "version": "1.0.0", "scheme": "xyz",
                      "tiles": [f"/api/projects/{pid}/tasks/{tid}/{layer}/tiles/{{z}}/{{x}}/{{y}}.png"],
                      "minzoom": minzoom, "maxzoom": maxzoom, "bounds": site.bounds()})

    def _tile(self, user: str | None, pid: int, tid: int, layer: str, z: int, x: int, y: int) -> Response:
        task = self._tiled_task(user, pid, tid, layer)
        png = Site.of(task, self.options).tile(layer, z, x, y)
        if png is None:
            raise not_found("Outside of bounds")
        return Response(png, mimetype="image/png")

    def _tiled_task(self, user, pid, tid, layer) -> Task:
        with self.lock:
            task = self._task(user, pid, tid)
            if layer not in ("orthophoto", "dsm", "dtm") or f"{layer}.tif" not in task.available_assets:
                raise not_found()
            return task


def _cut_after(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """Send `limit` bytes of a body announced whole; the server then closes: a short read for the client."""
    sent = 0
    for chunk in chunks:
        chunk = chunk[: limit - sent]
        sent += len(chunk)
        yield chunk
        if sent >= limit:
            break


def stored_zip(members: list[tuple[str, Any]]) -> SizedZip:
    """A zip of (name, member) pairs, uncompressed and streamed, its size known before any member
    is made: what WebODM serves for all.zip (zipstream-ng, sized)."""
    stream = ZipStream(compress_type=ZIP_STORED, sized=True)
    for name, member in members:
        stream.add(member.chunks(), name, size=member.size)
    return SizedZip(stream)


class SizedZip:
    """A ZipStream with the size/chunks() face the other assets have."""

    def __init__(self, stream: ZipStream) -> None:
        self.stream, self.size = stream, len(stream)

    def chunks(self) -> Iterator[bytes]:
        return iter(self.stream)
