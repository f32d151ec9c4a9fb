"""CDN downloads of thumbnails and originals, from signed URLs that expire (no token goes there)."""
from __future__ import annotations

import os
from typing import BinaryIO

from vendors.downloads import body_chunks, save
from vendors.mapillary.errors import VENDOR, ExpiredUrl, MapillaryInputError, MapillaryNotFound, error_from_response
from vendors.mapillary.graph import GraphReads

THUMBNAIL_RESOLUTIONS = ("256", "1024", "2048", "original")


class ImageDownloads(GraphReads):
    """Downloads from the CDN (no token goes there), with fresh URLs from Graph."""

    def download(self, url: str, destination: str | os.PathLike | BinaryIO, *, chunk_size: int = 1024 * 1024) -> int:
        """Stream a thumbnail/original URL to a path (written atomically) or a binary file; returns bytes
        written. A failed try starts again from the beginning of the destination."""
        start = None if isinstance(destination, (str, os.PathLike)) else destination.tell()

        def once() -> int:
            if start is not None:
                destination.seek(start)
                destination.truncate()
            return self._download_once(url, destination, chunk_size)

        return self.retries.run(once)

    def _download_once(self, url: str, destination: str | os.PathLike | BinaryIO, chunk_size: int) -> int:
        response = self._send("GET", url, stream=True)
        with response:
            if response.status_code == 403:
                raise ExpiredUrl(f"mapillary: CDN refused the URL (HTTP 403): {response.text[:200]}",
                                 status=403, vendor_message=response.text[:200])
            if response.status_code != 200:
                raise error_from_response(response, "download")
            return save(body_chunks(response, chunk_size, vendor=VENDOR, what="download"), destination)

    def download_image(self, image_id: str, destination: str | os.PathLike | BinaryIO,
                       resolution: str = "1024") -> int:
        """Resolve a fresh URL (they expire) and download it; one more fresh URL if the CDN refuses."""
        if str(resolution) not in THUMBNAIL_RESOLUTIONS:
            raise MapillaryInputError(f"mapillary: resolution must be one of {', '.join(THUMBNAIL_RESOLUTIONS)}")
        field = f"thumb_{resolution}_url"
        for attempt in (1, 2):
            url = self.get_image(image_id, [field]).get(field)
            if not url:
                raise MapillaryNotFound(f"mapillary: image {image_id} has no {field}", status=200)
            try:
                return self.download(url, destination)
            except ExpiredUrl:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
