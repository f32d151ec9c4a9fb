"""Task creation with its images streamed as one multipart request, and the partial-upload flow
(an empty task, then upload_image() per image, then commit())."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable

from vendors.dronemapper.connection import DroneMapperConnection, TaskId
from vendors.dronemapper.errors import VENDOR
from vendors.dronemapper.task_fields import Options, form_value, task_fields
from vendors.dronemapper.upload_sources import (
    ImageItem,
    ImageReader,
    ImageSource,
    Progress,
    image_readers,
    measure,
    multipart,
)
from vendors.errors import InputError


class TaskUploads(DroneMapperConnection):
    """A task's images, sent in one request or one by one."""

    def create_task(self, project_id: int, images: Iterable[ImageItem | str | os.PathLike] = (), *,
                    options: Options = None, name: str | None = None, processing_node: int | None = None,
                    auto_processing_node: bool | None = None, partial: bool = False,
                    progress: Progress | None = None) -> dict:
        """Create a task from at least 2 images, streamed as one multipart request.

        Images are (filename, source, size); a source is read only when the upload reaches it,
        so neither the set nor one image is held in memory. With `partial=True` no images are
        sent: add them with upload_image() and start processing with commit()."""
        fields = task_fields(name=name, options=options, processing_node=processing_node,
                             auto_processing_node=auto_processing_node)
        if partial:
            return self._json("POST", f"/api/projects/{int(project_id)}/tasks/", json={"partial": True, **fields},
                              idempotent=False)
        readers = image_readers(images)
        if len(readers) < 2:
            raise InputError(f"{VENDOR}: a task needs at least 2 images, got {len(readers)}",
                             vendor=VENDOR, field="images")
        form = [(k, json.dumps(v) if k == "options" else form_value(v)) for k, v in fields.items()]
        return self._json("POST", f"/api/projects/{int(project_id)}/tasks/", body=multipart(form, readers, progress),
                          idempotent=False)

    def upload_image(self, project_id: int, task_id: TaskId, filename: str, fileobj: ImageSource,
                     size: int | None = None, progress: Progress | None = None) -> dict:
        """Add one image to a partial task: {"success": true, "uploaded": {filename: bytes}}.
        Sending the same filename again replaces it, so a retry is safe."""
        reader = ImageReader(filename, fileobj, size if size is not None else measure(filename, fileobj))
        return self._json("POST", self._task_path(project_id, task_id, "upload/"),
                          body=multipart([], [reader], progress))

    def commit(self, project_id: int, task_id: TaskId) -> dict:
        """Start processing a partial task (needs at least 2 uploaded images). Committing again is harmless."""
        return self._json("POST", self._task_path(project_id, task_id, "commit/"))

    def supports_partial_upload(self) -> bool:
        """Whether the server has WebODM's undocumented upload/commit routes. The probe is a GET,
        which DRF refuses with 405 where the route exists and a server without it answers 404."""
        if self._partial_upload is None:
            response = self._call("GET", self._task_path(0, 0, "upload/"), ok=(404, 405))
            self._partial_upload = response.status_code == 405
        return self._partial_upload
