"""A task's assets: the named ones (orthophoto.tif, all.zip, ...) and any file of its assets folder,
streamed as they arrive or saved to a path or a file-like."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO

from vendors.downloads import body_chunks, save
from vendors.dronemapper.connection import DroneMapperConnection, TaskId
from vendors.dronemapper.errors import VENDOR
from vendors.errors import TransientError

CHUNK = 1 << 20


class AssetDownloads(DroneMapperConnection):
    """The download/ and assets/ routes of a task."""

    def iter_asset(self, project_id: int, task_id: TaskId, asset: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The asset's bytes as they arrive (orthophoto.tif, dsm.tif, pointcloud.ply, all.zip, ...)."""
        return self._iter_download(self._task_path(project_id, task_id, f"download/{asset}"), chunk_size)

    def download_asset(self, project_id: int, task_id: TaskId, asset: str, dest: str | os.PathLike | IO[bytes],
                       chunk_size: int = CHUNK) -> int:
        """Write the asset to a path or a binary file-like; the number of bytes written."""
        return save(self.iter_asset(project_id, task_id, asset, chunk_size), dest)

    def iter_raw_asset(self, project_id: int, task_id: TaskId, path: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """A file of the task's assets folder by its path, e.g. odm_orthophoto/odm_orthophoto.tif."""
        return self._iter_download(self._task_path(project_id, task_id, f"assets/{path.lstrip('/')}"), chunk_size)

    def download_raw_asset(self, project_id: int, task_id: TaskId, path: str, dest: str | os.PathLike | IO[bytes],
                           chunk_size: int = CHUNK) -> int:
        return save(self.iter_raw_asset(project_id, task_id, path, chunk_size), dest)

    def _iter_download(self, path: str, chunk_size: int) -> Iterator[bytes]:
        # identity: Content-Length then counts the bytes we get, so a short read shows
        response = self._call("GET", path, stream=True, headers={"Accept-Encoding": "identity"})
        expected = response.headers.get("Content-Length")
        received = 0
        try:
            for chunk in body_chunks(response, chunk_size, vendor=VENDOR, what=f"download of {path}"):
                received += len(chunk)
                yield chunk
        finally:
            response.close()
        if expected is not None and received != int(expected):
            raise TransientError(f"{VENDOR}: download of {path} ended at {received} of {expected} bytes",
                                 vendor=VENDOR)
